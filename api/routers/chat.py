"""POST /v1/chat/completions: the OpenAI-compatible subset, answering with retrieval.

An existing OpenAI client works by pointing its base URL at this service. The last user
message is the question, read in the light of the earlier turns (rag/conversation.py); the
reply carries the cited sources after the answer. The model is the served index.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from api.deps import ServiceState, require_api_key, state
from api.problems import ModelNotFound, redact
from api.schemas import EVENT_STREAM, ChatRequest, openai_error_responses
from api.serving import detached_stream
from rag.chain import Answer, Pipeline
from rag.conversation import Turn, recent_turns, standalone_question
from rag.errors import InputError, RagError

router = APIRouter(tags=["openai"], dependencies=[Depends(require_api_key)])
State = Annotated[ServiceState, Depends(state)]
ERRORS = openai_error_responses(400, 401, 404, 413, 503, 504)
SOURCES_LINE = re.compile(r"\n\nSources: .*\Z", re.S)


def conversation_of(body: ChatRequest, max_message_chars: int) -> tuple[str, list[Turn]]:
    """(the question, the earlier turns): the last user message with text, and the user and
    assistant messages before it; system messages only count against the size bound."""
    for number, message in enumerate(body.messages):
        if len(message.text) > max_message_chars:
            raise InputError(
                f"messages.{number} has {len(message.text)} characters; the limit is "
                f"{max_message_chars} (RAG_MAX_MESSAGE_CHARS)"
            )
    last = max(i for i, m in enumerate(body.messages) if m.role == "user" and m.text.strip())
    turns: list[Turn] = []
    for message in body.messages[:last]:
        if message.role == "user" and message.text.strip():
            turns.append(Turn(message.text.strip()))
        elif message.role == "assistant" and turns and message.text.strip():
            answer = SOURCES_LINE.sub("", message.text).strip()
            turns[-1] = Turn(turns[-1].question, answer)
    return body.messages[last].text, turns


def sources_line(sources: list[dict[str, Any]]) -> str:
    cited = [s for s in sources if s["cited"]] or sources[:1]
    if not cited:
        return ""
    return "\n\nSources: " + "; ".join(f"[{s['number']}] {s['doc_id']}" for s in cited)


def options(body: ChatRequest, service: ServiceState) -> dict[str, Any]:
    return {
        "max_new_tokens": body.new_tokens,
        "temperature": body.temperature,
        "max_time": service.settings.generation_timeout,
    }


def served_model(body: ChatRequest, service: ServiceState) -> str:
    """The index a request names as its model (the first served when it names none)."""
    if body.model is None:
        return service.names[0]
    if body.model not in service.names:
        raise ModelNotFound(
            f"The model {body.model!r} does not exist here; served: {', '.join(service.names)}"
        )
    return body.model


def count_tokens(pipeline: Pipeline, text: str) -> int:
    generator = pipeline.generator
    return generator.count_text_tokens(text) if generator else 0


def finish_reason(counted: dict[str, Any] | None) -> str:
    """ "length" when the model ran out of new tokens before it stopped, as OpenAI says it."""
    return counted["finish_reason"] if counted else "stop"


def usage(
    pipeline: Pipeline, question: str, content: str, counted: dict[str, Any] | None
) -> dict[str, int]:
    """Token counts: the prompt the model read (passages included) and the reply sent.

    `counted` is the Answer's usage; without one (the gate refused, nothing was generated)
    the prompt is the question alone.
    """
    prompt = counted["prompt_tokens"] if counted else count_tokens(pipeline, question)
    completion = count_tokens(pipeline, content)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def error_event(message: str) -> str:
    """An error in the middle of a stream, as OpenAI sends it; no [DONE] follows it."""
    error = {"message": message, "type": "server_error", "param": None, "code": None}
    return f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n"


@router.post("/v1/chat/completions", responses=ERRORS | EVENT_STREAM)
def chat_completions(body: ChatRequest, service: State):
    """OpenAI chat completion (or chunk stream), answered by the retrieval chain."""
    model = served_model(body, service)
    pipeline = service.index(model).current()
    question, history = conversation_of(body, service.settings.max_message_chars)
    question = pipeline.check_question(question)
    history = recent_turns(history, service.settings)  # clients resend whole conversations
    if body.stream:
        service.queue.acquire()
        chunks = detached_stream(
            lambda: stream_chunks(pipeline, question, history, model, body, service),
            lambda exc: error_event("the answer failed; see the server's log"),
            service.queue.release,
        )
        return StreamingResponse(chunks, media_type="text/event-stream")
    with service.queue.slot():
        standalone = rewrite(pipeline, question, history, service)
        answer: Answer = pipeline.ask(standalone, **options(body, service))
    data = answer.as_dict()
    content = answer.answer + sources_line(data["sources"])
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": pipeline.index.version,  # the index version that answered
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": finish_reason(answer.usage),
                "logprobs": None,
            }
        ],
        "usage": usage(pipeline, standalone, content, answer.usage),
        "sources": data["sources"],
        "abstained": answer.abstained,
        "standalone_question": standalone,
    }


def rewrite(pipeline: Pipeline, question: str, history: list[Turn], service: ServiceState) -> str:
    strategy = service.settings.rewrite_follow_ups
    return standalone_question(
        question,
        history,
        strategy=strategy,
        generator=pipeline.generator,
        max_chars=service.settings.max_question_chars,
    )


def stream_chunks(
    pipeline: Pipeline,
    question: str,
    history: list[Turn],
    model: str,
    body: ChatRequest,
    service: ServiceState,
) -> Iterator[str]:
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    with_usage = body.stream_options is not None and body.stream_options.include_usage

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        payload: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": pipeline.index.version,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if with_usage:
            payload["usage"] = None
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    sent: list[str] = []
    standalone = question
    counted: dict[str, Any] | None = None
    finish = "stop"
    try:
        yield chunk({"role": "assistant", "content": ""})
        standalone = rewrite(pipeline, question, history, service)
        for event in pipeline.stream(standalone, **options(body, service)):
            if event["event"] == "token" and event["data"]:
                sent.append(event["data"])
                yield chunk({"content": event["data"]})
            elif event["event"] == "answer":
                answer = event["data"]
                counted, finish = answer["usage"], finish_reason(answer["usage"])
                tail = sources_line(answer["sources"])
                if answer["abstained"]:
                    tail = ("\n\n" if sent else "") + answer["answer"]
                elif answer["quoted"]:  # the streamed draft was not backed: say what is
                    lead = "\n\nNot backed by the passages. They say: " if sent else ""
                    tail = lead + answer["answer"] + tail
                sent.append(tail)
                yield chunk({"content": tail})
        yield chunk({}, finish)
    except RagError as exc:  # OpenAI's error event: clients raise it, none takes it for the end
        yield error_event(redact(str(exc)))
        return
    if with_usage:
        final = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": pipeline.index.version,
            "choices": [],
            "usage": usage(pipeline, standalone, "".join(sent), counted),
        }
        yield f"data: {json.dumps(final, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"
