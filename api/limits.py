"""Request body limit as plain ASGI middleware: counts bytes, with or without Content-Length."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPENAI_PREFIX = "/v1/"


def is_openai(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


class BodyLimit:
    """Read the whole (small) body first; past `limit` bytes answer 413 and read no further."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._too_large(send, scope["path"])
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._too_large(send, scope["path"])
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, path: str) -> None:
        detail = f"the body exceeds {self.limit} bytes"
        await send_problem(send, 413, "Request body too large", detail, openai=is_openai(path))


async def send_problem(
    send: Send, status: int, title: str, detail: str, *, openai: bool = False
) -> None:
    """An RFC 9457 problem response (OpenAI's error shape under /v1/) from plain ASGI
    middleware; the connection is closed."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if openai:
        error = {"message": detail, "type": "invalid_request_error", "param": None, "code": None}
        body = {"error": error}
    payload = json.dumps(body).encode()
    content_type = b"application/json" if openai else b"application/problem+json"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
