"""Request and response bodies, so the OpenAPI schema documents the service."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from rag.chain import Source
from rag.config import RetrievalMode


def _json_number(value: Any) -> Any:
    """JSON numbers only: pydantic's lax mode would also take "4" or true for 4."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON number")
    return value


# A character that str.strip() keeps. JSON Schema's \S follows ECMA-262, whose whitespace is not
# Python's (\x1c-\x1f and \x85 are text there), so "\x1f" passed the schema and then failed
# the server's strip() check. This class names Python's whitespace exactly.
NOT_BLANK = r"[^\t\n\x0b\x0c\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

# Strictly typed JSON, as the OpenAPI schema says ("stream": 0 is not a boolean); numbers go
# through _json_number, so 2.0 is an integer as in JSON Schema.
Flag = Annotated[bool, Field(strict=True)]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(
        min_length=1, max_length=2000, pattern=NOT_BLANK, examples=["What is the station cat?"]
    )
    k: Annotated[int, Field(ge=1, le=20), BeforeValidator(_json_number)] | None = Field(
        None, description="passages; default RAG_K (4)"
    )
    index: str | None = Field(None, max_length=64, description="defaults to the first served")
    mode: RetrievalMode | None = None
    filter: dict[Literal["doc_id", "title"], str] | None = Field(
        None, description="keep passages whose metadata equals these values (doc_id, title)"
    )
    stream: Flag = False


class Timings(BaseModel):
    retrieve_ms: float
    generate_ms: float
    prompt_ms: float = 0.0
    total_ms: float = 0.0


class AskResponse(BaseModel):
    answer: str
    abstained: bool
    reason: str | None
    sources: list[Source]
    timings: Timings
    index: str
    version: str


class SearchResponse(BaseModel):
    sources: list[Source]
    index: str
    version: str


class IndexInfo(BaseModel):
    name: str
    version: str
    documents: int
    chunks: int
    embedder: str
    generator: str | None
    generator_backend: str | None = None  # transformers or onnx: never a silent fallback
    updated_at: str | None
    last_error: str | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str = Field(max_length=2000)


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat completions request that this service honours."""

    model: str | None = None
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=64,
        description="the last user message with text is the question",
        json_schema_extra={
            "contains": {
                "type": "object",
                "properties": {"role": {"const": "user"}, "content": {"pattern": NOT_BLANK}},
                "required": ["role", "content"],
            }
        },
    )
    max_tokens: Annotated[int, Field(ge=1, le=512), BeforeValidator(_json_number)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2), BeforeValidator(_json_number)] | None = None
    stream: Flag = False

    @field_validator("messages")
    @classmethod
    def _has_a_question(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.content.strip() for m in messages):
            raise ValueError("messages hold no user message with content")
        return messages


class Problem(BaseModel):
    """RFC 9457 problem document; every non-2xx response has this shape."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses, served as application/problem+json."""
    schema = Problem.model_json_schema()
    return {
        code: {
            "description": HTTPStatus(code).phrase,
            "content": {"application/problem+json": {"schema": schema}},
        }
        for code in codes
    }


SSE_EVENT = {  # one Server-Sent Event: its name and its data (JSON text, or [DONE])
    "type": "object",
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
    "required": ["data"],
}
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}
}
