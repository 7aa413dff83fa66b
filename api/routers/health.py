"""Liveness, readiness and what is served."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.deps import ServiceState, require_api_key, state
from api.problems import redact
from api.schemas import IndexInfo, problem_responses
from rag.errors import RagError

router = APIRouter(tags=["health"])
State = Annotated[ServiceState, Depends(state)]


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (models may still be loading)."""
    return {"status": "ok"}


@router.get(
    "/readyz", dependencies=[Depends(require_api_key)], responses=problem_responses(401, 503)
)
def readyz(service: State) -> JSONResponse:
    """Models and indexes are loaded (and a remote model server answers, serving the model);
    503 until then, or while an index cannot be loaded."""
    if not service.ready:
        return not_ready(service.load_error or "loading models and indexes")
    generator = next((s.generator for s in service.served.values() if s.generator), None)
    check = getattr(generator, "check", None)  # backends that depend on a server have one
    if check is not None:
        try:
            check()
        except RagError as exc:
            return not_ready(redact(str(exc)))
    errors = {name: redact(s.last_error) for name, s in service.served.items() if s.last_error}
    versions = {name: s.current().index.version for name, s in service.served.items()}
    running = {"name": generator.name, "backend": generator.backend} if generator else None
    return JSONResponse(
        {"status": "ready", "versions": versions, "errors": errors, "generator": running}
    )


def not_ready(detail: str) -> JSONResponse:
    body = {"type": "about:blank", "title": "Not ready", "status": 503, "detail": detail}
    return JSONResponse(body, 503, {"Retry-After": "5"}, "application/problem+json")


@router.get(
    "/indexes", dependencies=[Depends(require_api_key)], responses=problem_responses(401, 503)
)
def indexes(service: State) -> list[IndexInfo]:
    """The indexes this process serves, with their counts and models."""
    out = []
    for name in service.served:
        pipeline = service.index(name).current()
        manifest = pipeline.index.manifest
        out.append(
            IndexInfo(
                name=name,
                version=pipeline.index.version,
                documents=manifest["counts"]["documents"],
                chunks=manifest["counts"]["chunks"],
                embedder=manifest["embedder"]["name"],
                generator=pipeline.generator.name if pipeline.generator else None,
                generator_backend=pipeline.generator.backend if pipeline.generator else None,
                refusal=pipeline.gate.describe(),
                answer_steps=pipeline.describe_steps(),
                updated_at=manifest.get("updated_at"),
                last_error=redact(service.served[name].last_error or "") or None,
            )
        )
    return out
