"""Request and response bodies, so the OpenAPI schema documents the service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.chain import Source
from rag.config import RetrievalMode


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000, examples=["What is the station cat?"])
    k: int = Field(4, ge=1, le=20)
    index: str | None = Field(None, max_length=64, description="defaults to the first served")
    mode: RetrievalMode | None = None
    filter: dict[str, str] | None = Field(
        None, description="keep passages whose metadata equals these values (doc_id, title)"
    )
    stream: bool = False


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
    updated_at: str | None
    last_error: str | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str = Field(max_length=8000)


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat completions request that this service honours."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    max_tokens: int | None = Field(None, ge=1, le=512)
    temperature: float | None = Field(None, ge=0, le=2)
    stream: bool = False


class Problem(BaseModel):
    """RFC 9457 problem document; every non-2xx response has this shape."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None
