"""The OpenAI-compatible backend against scripted servers (httpx.MockTransport): every answer,
retry and failure of the bad-input list, with no model and no socket.

The same backend against a real server is tests/integration/test_model_server.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rag.cli import app
from rag.config import Settings
from rag.errors import GenerationTimeout, ModelLoadError
from rag.generators import GenerationQueue, GeneratorUnavailable, load_generator
from rag.generators.openai_server import OpenAIServerGenerator, load_openai

URL = "http://models.test/v1"
MODEL = "smol"
CHAT = [{"role": "user", "content": "Where is Paris?"}]
Handler = Callable[[httpx.Request], httpx.Response]


def settings(**overrides) -> Settings:
    values = {"generator_backend": "openai", "generator_url": URL, "generator_model": MODEL}
    return Settings(**(values | overrides))


def completion(text: str, reason: str = "stop", made: int = 5) -> dict:
    return {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": made, "total_tokens": 11 + made},
    }


def sse(*chunks: dict | str) -> bytes:
    lines = [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks]
    return "".join(lines).encode()


def delta(text: str, reason: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": reason}]}


class Server:
    """A scripted model server: /models lists MODEL; chats are answered by `chat`."""

    def __init__(self, chat: Handler, models: list[str] | None = None) -> None:
        self.chat, self.models = chat, [MODEL] if models is None else models
        self.requests: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": m} for m in self.models]})
        if request.url.path == "/tokenize":
            return httpx.Response(404, json={"detail": "Not Found"})
        self.requests.append(json.loads(request.content))
        return self.chat(request)


def generator_for(chat: Handler, **overrides) -> tuple[OpenAIServerGenerator, Server]:
    server = Server(chat)
    return load_openai(settings(**overrides), httpx.MockTransport(server)), server


def test_complete_sends_a_greedy_bounded_chat_and_reads_usage() -> None:
    generator, server = generator_for(lambda r: httpx.Response(200, json=completion("Paris.")))
    result = generator.complete(CHAT, max_new_tokens=12)
    assert (result.text, result.prompt_tokens, result.completion_tokens) == ("Paris.", 11, 5)
    assert result.finish_reason == "stop"
    sent = server.requests[0]
    assert sent["model"] == MODEL and sent["messages"] == CHAT
    assert sent["max_tokens"] == 12 and sent["temperature"] == 0.0 and sent["stop"] == ["\n\n"]
    assert generator.backend == "openai" and generator.name == f"{MODEL} at {URL}"


def test_a_reply_is_cut_at_the_stop_string_and_length_is_reported() -> None:
    replies = iter([completion("One.\n\nTwo.", "length", 8), completion("On and on", "length", 8)])
    generator, _ = generator_for(lambda r: httpx.Response(200, json=next(replies)))
    assert generator.complete(CHAT, max_new_tokens=8).text == "One."
    assert generator.complete(CHAT, max_new_tokens=8).finish_reason == "length"


def test_stream_yields_pieces_up_to_the_stop_string() -> None:
    body = sse(delta("Paris "), delta("is in\n"), delta("\nFrance"), delta("", "stop"), "[DONE]")
    generator, server = generator_for(lambda r: httpx.Response(200, content=body))
    assert "".join(generator.stream(CHAT)) == "Paris is in\n"
    assert server.requests[0]["stream"] is True


def test_the_model_defaults_to_the_only_one_served_and_must_be_served() -> None:
    server = Server(lambda r: httpx.Response(200, json=completion("x")), models=["only-one"])
    generator = load_openai(settings(generator_model=None), httpx.MockTransport(server))
    assert generator.model == "only-one"
    with pytest.raises(ModelLoadError, match=r"does not serve the model 'smol'.*only-one"):
        load_openai(settings(), httpx.MockTransport(server))
    several = Server(lambda r: httpx.Response(500), models=["a", "b"])
    with pytest.raises(ModelLoadError, match="serves 2 models"):
        load_openai(settings(generator_model=None), httpx.MockTransport(several))


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "refused the key"), (404, "URL usually ends in /v1"), (500, "answered GET /models")],
)
def test_start_up_errors_name_the_url_and_the_model(status: int, message: str) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(status, json={"error": "no"}))
    with pytest.raises(ModelLoadError, match=message) as caught:
        load_openai(settings(), transport)
    assert URL in str(caught.value) and "'smol'" in str(caught.value)


def test_a_url_that_does_not_answer_is_a_load_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(ModelLoadError, match=rf"{URL} does not answer.*'smol'"):
        load_openai(settings(), httpx.MockTransport(refuse))


def test_429_and_503_are_retried_with_backoff_then_answered() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0.2"}, json={"error": "slow down"}),
            httpx.Response(503, json={"error": {"message": "warming up"}}),
            httpx.Response(200, json=completion("Paris.")),
        ]
    )
    generator, server = generator_for(lambda r: next(answers), generator_retries=2)
    started = time.monotonic()
    assert generator.generate(CHAT) == "Paris."
    assert len(server.requests) == 3
    assert time.monotonic() - started >= 0.2 + 0.5  # Retry-After, then the doubling backoff


def test_retries_are_bounded_and_the_error_names_server_and_model() -> None:
    generator, server = generator_for(
        lambda r: httpx.Response(503, headers={"Retry-After": "0"}), generator_retries=2
    )
    with pytest.raises(GeneratorUnavailable, match=rf"{URL} \(model 'smol'\) failed \(503"):
        generator.complete(CHAT)
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "refused the key"), (404, "does not know the model"), (500, "failed \\(500: boom")],
)
def test_other_errors_are_not_retried(status: int, message: str) -> None:
    generator, server = generator_for(lambda r: httpx.Response(status, json={"error": "boom"}))
    with pytest.raises(GeneratorUnavailable, match=message):
        generator.complete(CHAT)
    assert len(server.requests) == 1


def test_a_reply_over_the_token_bound_is_refused() -> None:
    generator, _ = generator_for(lambda r: httpx.Response(200, json=completion("x " * 99, made=99)))
    with pytest.raises(GeneratorUnavailable, match="99 tokens, over the bound of 10"):
        generator.complete(CHAT, max_new_tokens=10)


def cut_stream(pieces: list[bytes]) -> Iterator[bytes]:
    yield from pieces
    raise httpx.RemoteProtocolError("peer closed connection without sending complete message")


def test_a_stream_cut_in_the_middle_raises_after_what_came() -> None:
    generator, _ = generator_for(
        lambda r: httpx.Response(200, content=cut_stream([sse(delta("Paris "), delta("is"))]))
    )
    got: list[str] = []
    with pytest.raises(GeneratorUnavailable, match="broke off the answer"):
        got.extend(generator.stream(CHAT))
    assert "".join(got) == "Paris is"  # the caller knows it is not the whole answer


def test_a_stream_that_ends_without_a_finish_reason_is_incomplete() -> None:
    generator, _ = generator_for(lambda r: httpx.Response(200, content=sse(delta("Paris"))))
    with pytest.raises(GeneratorUnavailable, match="before the answer was finished"):
        list(generator.stream(CHAT))


def test_an_error_event_mid_stream_is_raised() -> None:
    body = sse(delta("Par"), {"error": {"message": "out of memory"}})
    generator, _ = generator_for(lambda r: httpx.Response(200, content=body))
    with pytest.raises(GeneratorUnavailable, match="out of memory"):
        list(generator.stream(CHAT))


def test_a_reply_without_a_finish_reason_is_incomplete() -> None:
    generator, _ = generator_for(lambda r: httpx.Response(200, json=completion("Par", None)))
    with pytest.raises(GeneratorUnavailable, match="without a finish reason"):
        generator.complete(CHAT)


def test_the_deadline_is_a_generation_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    generator, _ = generator_for(slow)
    with pytest.raises(GenerationTimeout, match=r"within 0\.5 s"):
        generator.complete(CHAT, max_time=0.5)


def test_a_batch_runs_concurrently_bounded_by_the_setting() -> None:
    lock, running, peak = threading.Lock(), [0], [0]

    def answer(request: httpx.Request) -> httpx.Response:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        question = json.loads(request.content)["messages"][0]["content"]
        return httpx.Response(200, json=completion(f"re: {question}"))

    generator, _ = generator_for(answer, generator_concurrency=3)
    chats = [[{"role": "user", "content": f"q{i}"}] for i in range(7)]
    assert generator.generate_batch(chats) == [f"re: q{i}" for i in range(7)]
    assert peak[0] == 3


def test_token_counts_fall_back_to_an_estimate_and_say_so(monkeypatch) -> None:
    from rag.generators import openai_server

    def no_tokenizer(settings):
        raise OSError("no tokenizer here")

    monkeypatch.setattr(openai_server, "load_local_tokenizer", no_tokenizer)
    generator, _ = generator_for(lambda r: httpx.Response(200, json=completion("x")))
    assert generator.count_text_tokens("twelve chars") == 3
    assert "estimate" in generator.token_counts


def test_token_counts_use_the_servers_tokenize_when_it_has_one() -> None:
    def tokenize(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"count": 42, "tokens": []})
        return Server(lambda r: httpx.Response(500))(request)

    generator = load_openai(settings(), httpx.MockTransport(tokenize))
    assert generator.count_tokens(CHAT) == 42 and generator.count_text_tokens("hi") == 42
    assert "/tokenize" in generator.token_counts


def test_the_key_is_a_secret_sent_as_a_bearer_token() -> None:
    seen: list[str | None] = []

    def check(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return Server(lambda r: httpx.Response(200, json=completion("ok")))(request)

    s = settings(generator_api_key="sk-123")
    assert "sk-123" not in repr(s)
    load_openai(s, httpx.MockTransport(check)).generate(CHAT)
    assert seen == ["Bearer sk-123", "Bearer sk-123"]


def test_settings_need_a_url_and_the_factory_loads_no_weights() -> None:
    with pytest.raises(ValueError, match="needs RAG_GENERATOR_URL"):
        Settings(generator_backend="openai")
    with pytest.raises(ModelLoadError, match="not an http"):
        load_generator(settings(generator_url="models.test/v1"))


def test_the_serving_queue_admits_the_servers_concurrency() -> None:
    queue = GenerationQueue(waiting=2, running=4)
    for _ in range(6):
        queue.acquire()
    with pytest.raises(Exception, match="already being answered"):
        queue.acquire()


def closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


@pytest.mark.parametrize("command", [["ask", "What?", "--index", "tiny"], ["serve", "-i", "tiny"]])
def test_cli_exits_2_at_start_up_naming_the_url(
    command: list[str], tiny_corpus: Path, tmp_path: Path, fake_embedder, monkeypatch
) -> None:
    from rag.documents import load_corpus
    from rag.indexing import sync_index
    from tests.unit.test_store import chunker

    root = tmp_path / "indexes"
    sync_index(load_corpus(tiny_corpus), root, "tiny", fake_embedder, chunker(fake_embedder))
    url = closed_port_url()
    monkeypatch.setenv("RAG_INDEX_ROOT", str(root))
    monkeypatch.setenv("RAG_GENERATOR_BACKEND", "openai")
    monkeypatch.setenv("RAG_GENERATOR_URL", url)
    monkeypatch.setenv("RAG_GENERATOR_MODEL", "smol")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert f"the model server {url} does not answer" in result.output
    assert "'smol'" in result.output and "Traceback" not in result.output


def test_cli_exits_2_when_the_url_is_missing(monkeypatch) -> None:
    monkeypatch.setenv("RAG_GENERATOR_BACKEND", "openai")
    monkeypatch.delenv("RAG_GENERATOR_URL", raising=False)
    result = CliRunner().invoke(app, ["serve", "-i", "tiny"])
    assert result.exit_code == 2 and "needs RAG_GENERATOR_URL" in result.output


# -- rag serve answering through the backend -----------------------------------------------

ASK = {"question": "How many goats does beta station keep?", "k": 2}


def serve_through(setup, chat: Handler, models: list[str] | None = None, **overrides):
    from tests.unit.test_api import make_client

    server = Server(chat, models)
    generator = load_openai(settings(**overrides), httpx.MockTransport(server))
    remote = {"generator_backend": "openai", "generator_url": URL} | overrides
    return make_client(setup, generator, **remote), server


@pytest.fixture
def setup(tiny_corpus: Path, tmp_path: Path, fake_embedder):
    from tests.unit.test_api import setup as api_setup

    return api_setup.__wrapped__(tiny_corpus, tmp_path, fake_embedder)


def test_serve_answers_through_the_server_and_admits_its_concurrency(setup) -> None:
    reply = "Beta station keeps seventeen goats named after planets. [1]"
    client, _ = serve_through(
        setup, lambda r: httpx.Response(200, json=completion(reply)), generator_concurrency=3
    )
    with client:
        body = client.post("/ask", json=ASK).json()
        assert body["answer"] == reply and not body["abstained"]
        assert client.app.state.service.queue.limit == 3 + 4  # running + RAG_MAX_QUEUE
        ready = client.get("/readyz").json()
        assert ready["generator"] == {"name": f"{MODEL} at {URL}", "backend": "openai"}


def test_a_failing_server_is_a_503_problem_and_a_slow_one_504(setup) -> None:
    client, _ = serve_through(setup, lambda r: httpx.Response(500, json={"error": "boom"}))
    with client:
        response = client.post("/ask", json=ASK)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["title"] == "Generator unavailable"
        assert URL in problem["detail"] and "'smol'" in problem["detail"]

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client, _ = serve_through(setup, slow)
    with client:
        response = client.post("/ask", json=ASK)
        assert response.status_code == 504 and response.json()["title"] == "Generation timed out"


def test_readyz_is_503_while_the_server_does_not_serve_the_model(setup) -> None:
    client, server = serve_through(setup, lambda r: httpx.Response(200, json=completion("x")))
    with client:
        assert client.get("/readyz").status_code == 200
        server.models = ["another-model"]
        response = client.get("/readyz")
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert "does not serve the model 'smol'" in response.json()["detail"]


def test_a_stream_cut_mid_answer_ends_in_an_error_event_not_done(setup) -> None:
    cut = [sse(delta("Beta "), delta("station"))]
    client, _ = serve_through(setup, lambda r: httpx.Response(200, content=cut_stream(cut)))
    with client:
        chat = {"messages": [{"role": "user", "content": ASK["question"]}], "stream": True}
        text = client.post("/v1/chat/completions", json=chat).text
        assert '"error"' in text.splitlines()[-2] and "broke off the answer" in text
        assert "[DONE]" not in text
        events = client.post("/ask", json=ASK | {"stream": True}).text
        assert "event: error" in events and "event: answer" not in events
