"""Host-header allow-list and opt-in CORS: both off unless the operator configures them."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api.limits import send_problem


class AllowedHosts:
    """Refuse requests whose Host header is not listed (DNS rebinding, host-header tricks)."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app, self.hosts = app, {h.lower() for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allowed(scope):
            await send_problem(send, 400, "Unknown host", "this Host header is not served here")
            return
        await self.app(scope, receive, send)

    def allowed(self, scope: Scope) -> bool:
        raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
        host = raw.rsplit(":", 1)[0] if not raw.endswith("]") else raw
        return "*" in self.hosts or host in self.hosts or raw in self.hosts


def install(app: FastAPI, allowed_hosts: list[str], cors_origins: list[str]) -> None:
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-api-key"],
        )
    if allowed_hosts:
        app.add_middleware(AllowedHosts, hosts=allowed_hosts)
