"""POST /ask (optionally streamed as Server-Sent Events) and POST /search."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from api.deps import ServiceState, require_api_key, state
from api.problems import redact
from api.schemas import (
    EVENT_STREAM,
    AskRequest,
    AskResponse,
    SearchResponse,
    problem_responses,
)
from api.serving import detached_stream
from rag.chain import Pipeline
from rag.conversation import RewriteStrategy, Turn, check_history, standalone_question
from rag.errors import RagError

router = APIRouter(tags=["ask"], dependencies=[Depends(require_api_key)])
State = Annotated[ServiceState, Depends(state)]
ERRORS = problem_responses(400, 401, 404, 413, 422, 503, 504)  # 400: a body that is not text


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


@router.post("/ask", response_model=AskResponse, responses=ERRORS | EVENT_STREAM)
def ask(body: AskRequest, service: State):
    """Answer from the index with cited sources; `stream: true` gives Server-Sent Events."""
    if body.stream:
        return stream_answer(body, service)
    pipeline = service.index(body.index).current()
    check_history(history_of(body), service.settings)
    with service.queue.slot():
        answer = pipeline.ask(
            question_of(body, pipeline, service),
            k=body.k,
            mode=body.mode,
            where=body.filter,
            max_time=service.settings.generation_timeout,
        )
    return answer.as_dict()


@router.post("/ask/stream", response_class=EventStream, responses=ERRORS | EVENT_STREAM)
def ask_stream(body: AskRequest, service: State) -> StreamingResponse:
    """Server-Sent Events: `sources` first, then `token`s, then `answer` (or `error`)."""
    return stream_answer(body, service)


def stream_answer(body: AskRequest, service: ServiceState) -> StreamingResponse:
    pipeline = service.index(body.index).current()
    pipeline.check_question(body.question)
    check_history(history_of(body), service.settings)
    service.queue.acquire()  # 503 now, before the stream starts, when the queue is full

    def events() -> Iterator[str]:
        for event in pipeline.stream(
            question_of(body, pipeline, service),
            k=body.k,
            mode=body.mode,
            where=body.filter,
            max_time=service.settings.generation_timeout,
        ):
            yield sse(event["event"], event["data"])

    def on_error(exc: Exception) -> str:
        detail = redact(str(exc)) if isinstance(exc, RagError) else "the answer failed; see the log"
        return sse("error", {"detail": detail})

    stream = detached_stream(events, on_error, service.queue.release)
    return EventStream(stream)


def history_of(body: AskRequest) -> list[Turn]:
    return [Turn(t.question, t.answer) for t in body.history]


def question_of(
    body: AskRequest,
    pipeline: Pipeline,
    service: ServiceState,
    strategy: RewriteStrategy | None = None,
) -> str:
    """The question made standalone from the conversation's earlier turns, if any."""
    if not body.history:
        return body.question
    return standalone_question(
        pipeline.check_question(body.question),
        history_of(body),
        strategy=strategy or service.settings.rewrite_follow_ups,
        generator=pipeline.generator,
        max_chars=service.settings.max_question_chars,
    )


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
def search(body: AskRequest, service: State):
    """Retrieval only: never waits for the generator."""
    pipeline = service.index(body.index).current()
    check_history(history_of(body), service.settings)
    question = question_of(body, pipeline, service, strategy="rules")  # never waits on the model
    sources = pipeline.search(question, k=body.k, mode=body.mode, where=body.filter)
    return {
        "sources": [s.__dict__ for s in sources],
        "index": pipeline.index.name,
        "version": pipeline.index.version,
    }
