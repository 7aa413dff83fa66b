"""Every error as an RFC 9457 problem document; never a stack trace or a file path.

Under /v1/ (the OpenAI-compatible routes) errors take OpenAI's shape instead,
{"error": {"message", "type", "param", "code"}}, because that is what OpenAI clients read.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.limits import is_openai
from api.schemas import UNSUPPORTED
from api.serving import QueueFull
from rag.errors import (
    CorruptIndexError,
    GenerationTimeout,
    IndexFormatError,
    IndexNotFoundError,
    InputError,
    RagError,
)
from rag.generators import GeneratorUnavailable

log = logging.getLogger(__name__)
PATH = re.compile(r"(?<![\w:/])(/[\w.+-]+){2,}")  # not a URL's path: it names a server


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


class ModelNotFound(IndexNotFoundError):
    """A /v1 request named a model (index) that is not served."""


def openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """OpenAI's error body; 422s become 400s there, as OpenAI answers invalid requests."""
    status = 400 if status == 422 else status
    kind = {401: "authentication_error", 404: "invalid_request_error", 429: "rate_limit_error"}
    error_type = kind.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


MESSAGE_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict"})


def openai_param(loc: tuple) -> str:
    """A field's path as OpenAI names it ("messages.0.content"): pydantic's union member and
    discriminator names ("user", "constrained-str", "list[QuestionPart]") left out."""
    kept = [
        str(part)
        for part in loc
        if part != "body"
        and part not in MESSAGE_ROLES | TYPE_NAMES
        and (isinstance(part, int) or str(part).isidentifier())
    ]
    return ".".join(kept)


def rag_error_status(exc: RagError) -> tuple[int, str]:
    if isinstance(exc, IndexNotFoundError):
        return 404, "Index not found"
    if isinstance(exc, QueueFull):
        return 503, "Too many questions waiting"
    if isinstance(exc, GeneratorUnavailable):
        return 503, "Generator unavailable"
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
        if is_openai(request.url.path):
            code = "model_not_found" if isinstance(exc, ModelNotFound) else None
            param = "model" if code else None
            return openai_error(status, detail, param=param, code=code, headers=headers)
        return problem(status, title, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
            for e in exc.errors()
        ]
        fields = ", ".join(e["field"] or "body" for e in errors)
        if is_openai(request.url.path):
            first = exc.errors()[0]
            param = openai_param(first["loc"])
            reason = first["msg"].removeprefix("Value error, ")
            message = UNSUPPORTED.get(param.split(".")[0]) or f"invalid {param or 'body'}: {reason}"
            return openai_error(400, message, param=param or None)
        return problem(422, "Invalid request", f"invalid field(s): {fields}", errors=errors)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        detail = redact(str(exc.detail))
        if is_openai(request.url.path):
            code = "invalid_api_key" if exc.status_code == 401 else None
            return openai_error(exc.status_code, detail, code=code, headers=headers)
        return problem(exc.status_code, _title(exc.status_code), detail, headers)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        if is_openai(request.url.path):
            return openai_error(500, "the server failed to answer; see its log")
        return problem(500, "Internal error", "the server failed to answer; see its log")


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
