"""Request and response bodies, so the OpenAPI schema documents the service."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from rag.chain import Source
from rag.config import RetrievalMode, Settings


def _json_number(value: Any) -> Any:
    """JSON numbers only: pydantic's lax mode would also take "4" or true for 4."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON number")
    return value


def _json_bool(value: Any) -> Any:
    """JSON booleans only: 0 is not false."""
    if not isinstance(value, bool):
        raise ValueError("must be a JSON boolean")
    return value


# A character that str.strip() keeps. JSON Schema's \S follows ECMA-262, whose whitespace is not
# Python's (\x1c-\x1f and \x85 are text there), so "\x1f" passed the schema and then failed
# the server's strip() check. This class names Python's whitespace exactly.
NOT_BLANK = r"[^\t\n\x0b\x0c\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

# Strictly typed JSON, as the OpenAPI schema says ("stream": 0 is not a boolean); numbers go
# through _json_number, so 2.0 is an integer as in JSON Schema.
Flag = Annotated[bool, Field(strict=True)]


# The schema's bounds are the settings' defaults, so that what it admits the service answers.
HISTORY_TURNS = Settings.model_fields["max_history_turns"].default
MESSAGE_CHARS = Settings.model_fields["max_message_chars"].default
QUESTION_CHARS = Settings.model_fields["max_question_chars"].default


class HistoryTurn(BaseModel):
    """An earlier question of the conversation and the answer it got."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(max_length=2000)
    answer: str | None = Field(None, max_length=2000)


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
    history: list[HistoryTurn] = Field(
        default_factory=list,
        max_length=HISTORY_TURNS,
        description="earlier turns, oldest first; the question is read in their light "
        "(bounded by RAG_MAX_HISTORY_TURNS and RAG_MAX_HISTORY_CHARS)",
    )


class Timings(BaseModel):
    retrieve_ms: float
    generate_ms: float
    prompt_ms: float = 0.0
    total_ms: float = 0.0


class AskResponse(BaseModel):
    question: str = Field(description="the question answered; standalone when history was sent")
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
    # how this version refuses: the calibrated gate and its figures, or which fallback and why
    refusal: dict[str, Any] | None = None
    answer_steps: dict[str, Any] | None = Field(
        None, description="the answer steps in force for the served generator, and why"
    )


class ContentPart(BaseModel):
    """One part of a message's content; only text parts are understood."""

    type: Literal["text"] = Field(description="image, audio and file parts are refused")
    text: str = Field(max_length=MESSAGE_CHARS)


class QuestionPart(ContentPart):
    text: str = Field(max_length=QUESTION_CHARS)


class _Message(BaseModel):
    content: Any = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class UserMessage(_Message):
    """A user turn: the last one with text is the question, bounded like /ask's."""

    role: Literal["user"]
    content: Annotated[str, Field(max_length=QUESTION_CHARS)] | list[QuestionPart] | None = Field(
        None, description="text, a list of text parts, or null"
    )


class OtherMessage(_Message):
    """System and developer prompts (accepted, not used), earlier answers, tool output."""

    role: Literal["system", "assistant", "tool", "developer"]
    content: Annotated[str, Field(max_length=MESSAGE_CHARS)] | list[ContentPart] | None = Field(
        None, description="text, a list of text parts, or null (an assistant turn)"
    )


ChatMessage = Annotated[UserMessage | OtherMessage, Field(discriminator="role")]


class ResponseFormat(BaseModel):
    type: Literal["text"] = Field(description="json_object and json_schema are refused")


class StreamOptions(BaseModel):
    include_usage: Flag = False


Bounded = Annotated[int, Field(ge=1, le=512), BeforeValidator(_json_number)]
# Fields of OpenAI's request that this service does not implement, and why: a request that
# sets one gets a 400 naming it instead of an answer that silently ignores it.
UNSUPPORTED = {
    "n": "n > 1 is not supported: one choice is returned",
    "tools": "tools are not supported: answers come from the retrieved passages",
    "tool_choice": "tool_choice other than 'none' is not supported",
    "functions": "functions are not supported: answers come from the retrieved passages",
    "function_call": "function_call other than 'none' is not supported",
    "response_format": "only response_format {'type': 'text'} is supported",
    "logprobs": "logprobs are not supported",
    "top_logprobs": "top_logprobs are not supported",
}


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat completions request that this service honours.

    The last user message is the question; earlier user and assistant messages are the
    conversation it is read in; system messages are accepted and not used (the service has
    its own grounding prompt). Unknown fields are ignored, as OpenAI's own API does.
    """

    model: str | None = Field(None, description="a served index (GET /v1/models)")
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=64,
        description="the last user message with text is the question",
        json_schema_extra={
            "contains": {
                "type": "object",
                "properties": {
                    "role": {"const": "user"},
                    "content": {"type": "string", "pattern": NOT_BLANK},
                },
                "required": ["role", "content"],
            }
        },
    )
    max_tokens: Bounded | None = None
    max_completion_tokens: Bounded | None = Field(None, description="wins over max_tokens")
    temperature: Annotated[float, Field(ge=0, le=2), BeforeValidator(_json_number)] | None = None
    stream: Flag = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=1), BeforeValidator(_json_number)] | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=0)
    tool_choice: Literal["none"] | None = None
    functions: list[dict[str, Any]] | None = Field(None, max_length=0)
    function_call: Literal["none"] | None = None
    response_format: ResponseFormat | None = None
    logprobs: Annotated[Literal[False], BeforeValidator(_json_bool)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=0), BeforeValidator(_json_number)] | None = None

    @field_validator("messages")
    @classmethod
    def _has_a_question(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.text.strip() for m in messages):
            raise ValueError("messages hold no user message with content")
        return messages

    @property
    def new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ModelCard(BaseModel):
    """A served index, as OpenAI lists models."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}
# OpenAI's error shape, used on /v1/* (the other routes answer problem documents). Written out:
# a pydantic model's nested $defs reference would no longer resolve inside a response.
OPENAI_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": NULLABLE_STRING,
                "code": NULLABLE_STRING,
            },
        }
    },
}


def openai_error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    schema = OPENAI_ERROR_SCHEMA
    return {
        code: {
            "description": HTTPStatus(code).phrase,
            "content": {"application/json": {"schema": schema}},
        }
        for code in codes
    }


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
