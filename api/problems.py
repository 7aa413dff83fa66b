"""Every error as an RFC 9457 problem document; never a stack trace or a file path."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.serving import QueueFull
from rag.errors import (
    CorruptIndexError,
    GenerationTimeout,
    IndexFormatError,
    IndexNotFoundError,
    InputError,
    RagError,
)

log = logging.getLogger(__name__)
PATH = re.compile(r"(/[\w.+-]+){2,}")


def redact(text: str) -> str:
    """Keep a file's name, drop its directories: those are for the operator's log."""
    return PATH.sub(lambda match: match.group(0).rsplit("/", 1)[1], text)


def problem(
    status: int,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def rag_error_status(exc: RagError) -> tuple[int, str]:
    if isinstance(exc, IndexNotFoundError):
        return 404, "Index not found"
    if isinstance(exc, QueueFull):
        return 503, "Too many questions waiting"
    if isinstance(exc, GenerationTimeout):
        return 504, "Generation timed out"
    if isinstance(exc, CorruptIndexError | IndexFormatError):
        return 503, "Index unavailable"
    if isinstance(exc, InputError):
        return 422, "Invalid input"
    return 500, "Internal error"


def install(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def on_rag_error(request: Request, exc: RagError) -> JSONResponse:
        status, title = rag_error_status(exc)
        headers = {"Retry-After": "2"} if status == 503 else None
        detail = redact(str(exc))
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return problem(status, title, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
            for e in exc.errors()
        ]
        fields = ", ".join(e["field"] or "body" for e in errors)
        return problem(422, "Invalid request", f"invalid field(s): {fields}", errors=errors)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        return problem(exc.status_code, _title(exc.status_code), redact(str(exc.detail)), headers)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "the server failed to answer; see its log")


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
