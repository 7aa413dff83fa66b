"""Shared dependencies: the served state and the optional API key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.serving import GenerationQueue, ServedIndex
from rag.config import Settings
from rag.errors import IndexNotFoundError


@dataclass
class ServiceState:
    """Everything loaded once per process; `ready` turns true when models and indexes are in."""

    settings: Settings
    names: list[str]
    queue: GenerationQueue
    served: dict[str, ServedIndex] = field(default_factory=dict)
    ready: bool = False
    load_error: str | None = None

    def index(self, name: str | None) -> ServedIndex:
        if not self.ready:
            raise HTTPException(
                503,
                self.load_error or "still loading models and indexes",
                headers={"Retry-After": "5"},
            )
        name = name or self.names[0]
        if name not in self.served:
            raise IndexNotFoundError(
                f"index {name!r} is not served here; served: {', '.join(self.served)}"
            )
        return self.served[name]


def state(request: Request) -> ServiceState:
    return request.app.state.service


bearer = HTTPBearer(auto_error=False)
key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(key_header)],
) -> None:
    """When RAG_API_KEY is set, require it as a Bearer token or X-API-Key (constant time).

    Every credential presented must be the key: a right X-API-Key beside a wrong Bearer token
    is refused, so no proxy or client mix-up can pass a wrong credential through.
    """
    expected = request.app.state.service.settings.api_key
    if expected is None:
        return
    key = expected.get_secret_value().encode()
    authorization = request.headers.get("authorization")  # any scheme counts, not only Bearer
    bearer_key = credentials.credentials if credentials else authorization
    given = [c for c in (header_key, bearer_key) if c is not None]
    matches = [secrets.compare_digest(c.encode(), key) for c in given or [""]]
    if not all(matches):
        raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})
