"""POST /v1/chat/completions: the OpenAI-compatible subset, answering with retrieval.

An existing OpenAI client works by pointing its base URL at this service. The last user
message is the question; the reply carries the cited sources after the answer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from api.deps import ServiceState, require_api_key, state
from api.problems import redact
from api.routers.ask import ERRORS
from api.schemas import EVENT_STREAM, ChatRequest
from api.serving import detached_stream
from rag.chain import Answer, Pipeline
from rag.errors import InputError, RagError

router = APIRouter(tags=["openai"], dependencies=[Depends(require_api_key)])
State = Annotated[ServiceState, Depends(state)]


def question_of(body: ChatRequest) -> str:
    for message in reversed(body.messages):
        if message.role == "user" and message.content.strip():
            return message.content
    raise InputError("messages hold no user message with content")


def sources_line(sources: list[dict[str, Any]]) -> str:
    cited = [s for s in sources if s["cited"]] or sources[:1]
    if not cited:
        return ""
    return "\n\nSources: " + "; ".join(f"[{s['number']}] {s['doc_id']}" for s in cited)


def options(body: ChatRequest, service: ServiceState) -> dict[str, Any]:
    return {
        "max_new_tokens": body.max_tokens,
        "temperature": body.temperature,
        "max_time": service.settings.generation_timeout,
    }


@router.post("/v1/chat/completions", responses=ERRORS | EVENT_STREAM)
def chat_completions(body: ChatRequest, service: State):
    """OpenAI chat completion (or chunk stream), answered by the retrieval chain."""
    pipeline = service.index(None).current()
    question = pipeline.check_question(question_of(body))
    model = body.model or pipeline.index.name
    if body.stream:
        service.queue.acquire()
        chunks = detached_stream(
            lambda: stream_chunks(pipeline, question, model, body, service),
            lambda exc: "data: [DONE]\n\n",
            service.queue.release,
        )
        return StreamingResponse(chunks, media_type="text/event-stream")
    with service.queue.slot():
        answer: Answer = pipeline.ask(question, **options(body, service))
    data = answer.as_dict()
    content = answer.answer + sources_line(data["sources"])
    generator = pipeline.generator
    completion = generator.count_text_tokens(content) if generator else 0
    prompt = generator.count_text_tokens(question) if generator else 0
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": pipeline.index.version,  # the index version that answered
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "sources": data["sources"],
        "abstained": answer.abstained,
    }


def stream_chunks(
    pipeline: Pipeline, question: str, model: str, body: ChatRequest, service: ServiceState
) -> Iterator[str]:
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        payload = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": pipeline.index.version,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        sent = False
        for event in pipeline.stream(question, **options(body, service)):
            if event["event"] == "token" and event["data"]:
                sent = True
                yield chunk({"content": event["data"]})
            elif event["event"] == "answer":
                answer = event["data"]
                tail = sources_line(answer["sources"])
                if answer["abstained"]:
                    tail = ("\n\n" if sent else "") + answer["answer"]
                yield chunk({"content": tail})
        yield chunk({}, "stop")
    except RagError as exc:
        yield chunk({"content": f"\n\n[error: {redact(str(exc))}]"}, "stop")
    yield "data: [DONE]\n\n"
