"""Every route and error of the HTTP service, through TestClient, with a fake generator.

The real server with the real models is exercised in tests/integration/test_server.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import ServiceState
from api.serving import ServedIndex
from rag.config import Settings
from rag.documents import load_corpus
from rag.errors import GenerationTimeout
from rag.indexing import sync_index
from tests.conftest import FakeGeneration

from .test_store import chunker


class FakeTokenizer:
    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": text.split()}


class FakeGenerator(FakeGeneration):
    """Answers with the first sentence of passage [1], after `delay` seconds."""

    name = "fake-generator"
    backend = "fake"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.tokenizer = FakeTokenizer()
        self.lock = threading.Lock()

    def generate(self, messages, max_new_tokens=None, temperature=None, max_time=None) -> str:
        with self.lock:
            if max_time is not None and self.delay > max_time:
                time.sleep(max_time)
                raise GenerationTimeout(f"generation ran past its {max_time} s deadline")
            time.sleep(self.delay)
            passage = re.search(r"<<<\n(.*?)\n>>>", messages[-1]["content"], re.S)
            return passage.group(1).split(".")[0] + ". [1]" if passage else "I don't know."

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def stream(self, messages, **options):
        yield from re.findall(r"\S+\s*", self.generate(messages, **options))


@pytest.fixture
def setup(tiny_corpus: Path, tmp_path: Path, fake_embedder):
    root = tmp_path / "indexes"
    sync_index(
        load_corpus(tiny_corpus),
        root,
        "tiny",
        fake_embedder,
        chunker(fake_embedder),
        show_progress=False,
    )
    return root, fake_embedder


def make_client(setup, generator=None, **overrides) -> TestClient:
    root, embedder = setup
    settings = Settings(
        index_root=root, embedder="fake-bow", min_score=0.3, min_sentence_score=0.0, **overrides
    )
    generator = generator or FakeGenerator()

    def loader(service: ServiceState) -> None:
        service.served["tiny"] = ServedIndex(service.settings, "tiny", embedder, generator)

    return TestClient(create_app(settings, ["tiny"], loader=loader, background=False))


@pytest.fixture
def client(setup):
    with make_client(setup) as client:
        yield client


ASK = {"question": "How many goats does beta station keep?", "k": 2}


def test_ask_answers_with_cited_sources_and_timings(client: TestClient) -> None:
    response = client.post("/ask", json=ASK)
    assert response.status_code == 200
    body = response.json()
    assert body["answer"] == "Beta station keeps seventeen goats named after planets. [1]"
    assert body["abstained"] is False
    assert body["sources"][0]["doc_id"] == "beta.txt" and body["sources"][0]["cited"]
    assert len(body["sources"]) == 2
    assert set(body["timings"]) >= {"retrieve_ms", "generate_ms"}
    assert body["index"] == "tiny" and body["version"].startswith("v-")


def test_unrelated_question_abstains(client: TestClient) -> None:
    body = client.post("/ask", json={"question": "zebra quantum xylophone"}).json()
    assert body["abstained"] and body["answer"] == "I don't know."


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"question": ""}, "question"),
        ({"question": "x" * 2001}, "question"),
        ({"question": "ok", "k": 0}, "k"),
        ({"question": "ok", "k": 21}, "k"),
        ({"question": "ok", "mode": "fuzzy"}, "mode"),
        ({"k": 3}, "question"),
        ({"question": "ok", "surprise": 1}, "surprise"),
        ({"question": "\x1f \x85"}, "question"),  # blank to Python, text to ECMA-262's \S
    ],
)
def test_validation_errors_are_422_naming_the_field(client: TestClient, payload, field) -> None:
    response = client.post("/ask", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["status"] == 422 and body["title"] and field in body["detail"]
    assert field in [e["field"] for e in body["errors"]]


def test_bad_filter_field_is_422_and_good_filter_restricts(client: TestClient) -> None:
    response = client.post("/ask", json={**ASK, "filter": {"colour": "red"}})
    assert response.status_code == 422 and "colour" in response.json()["detail"]
    only = client.post("/search", json={**ASK, "filter": {"doc_id": "g-2"}}).json()
    assert [s["doc_id"] for s in only["sources"]] == ["g-2"]


def test_k_defaults_to_the_configured_setting(setup) -> None:
    with make_client(setup, k=1) as configured:
        for route in ("/ask", "/search"):
            body = configured.post(route, json={"question": "Where is the station?"}).json()
            assert len(body["sources"]) == 1, (route, body)
        asked = configured.post("/search", json={"question": "Where is the station?", "k": 3})
        assert len(asked.json()["sources"]) == 3


def test_the_schema_pattern_for_text_is_pythons_idea_of_not_blank() -> None:
    """The OpenAPI pattern and the server's strip() must agree, or valid requests get 422."""
    import sys

    from api.schemas import NOT_BLANK

    pattern = re.compile(NOT_BLANK)
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code < 0xE000:
            continue  # surrogates are not characters of a JSON string
        char = chr(code)
        assert (pattern.search(char) is None) == char.isspace(), hex(code)


def test_unknown_index_is_404_listing_served(client: TestClient) -> None:
    response = client.post("/ask", json={**ASK, "index": "nope"})
    assert response.status_code == 404
    assert "served: tiny" in response.json()["detail"]


def test_malformed_json_is_422_without_traces(client: TestClient) -> None:
    response = client.post(
        "/ask", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "Traceback" not in response.text and "/work" not in response.text


@pytest.mark.parametrize("chunked", [False, True])
def test_large_bodies_are_413(client: TestClient, chunked: bool) -> None:
    payload = json.dumps({"question": "x" * 200_000}).encode()
    content = (
        iter([payload[i : i + 8192] for i in range(0, len(payload), 8192)]) if chunked else payload
    )
    response = client.post("/ask", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["status"] == 413


def test_full_queue_is_503_with_retry_after_but_search_still_works(client: TestClient) -> None:
    queue = client.app.state.service.queue
    for _ in range(queue.limit):
        queue.acquire()
    try:
        response = client.post("/ask", json=ASK)
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert client.post("/ask/stream", json=ASK).status_code == 503
        assert client.post("/search", json=ASK).status_code == 200
    finally:
        for _ in range(queue.limit):
            queue.release()
    assert client.post("/ask", json=ASK).status_code == 200


def test_generation_deadline_is_504_and_frees_the_slot(setup) -> None:
    with make_client(setup, FakeGenerator(delay=0.5), generation_timeout=0.1) as client:
        response = client.post("/ask", json=ASK)
        assert response.status_code == 504
        assert "deadline" in response.json()["detail"]
        assert client.app.state.service.queue.active == 0


def test_stream_sends_sources_then_tokens_then_answer(client: TestClient) -> None:
    response = client.post("/ask/stream", json=ASK)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = re.findall(r"event: (\w+)\ndata: (.*)\n\n", response.text)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "answer" and "token" in names
    assert json.loads(events[-1][1])["answer"].startswith("Beta station keeps")
    same = client.post("/ask", json={**ASK, "stream": True})
    assert re.findall(r"event: (\w+)", same.text) == names


def test_openai_compatible_completion(client: TestClient) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": ASK["question"]}]}
    reply = client.post("/v1/chat/completions", json=body).json()
    assert reply["object"] == "chat.completion"
    content = reply["choices"][0]["message"]["content"]
    assert content.startswith("Beta station keeps") and "Sources: [1] beta.txt" in content
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"]["total_tokens"] == sum(
        reply["usage"][k] for k in ("prompt_tokens", "completion_tokens")
    )
    streamed = client.post("/v1/chat/completions", json={**body, "stream": True}).text
    assert streamed.rstrip().endswith("data: [DONE]")
    chunks = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.startswith("Beta station keeps") and "beta.txt" in text
    no_user = {"messages": [{"role": "system", "content": "hi"}]}
    refused = client.post("/v1/chat/completions", json=no_user)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "messages"


def test_health_ready_indexes_and_page(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["versions"]["tiny"].startswith("v-")
    assert ready["generator"] == {"name": "fake-generator", "backend": "fake"}
    (info,) = client.get("/indexes").json()
    assert (
        info["name"] == "tiny" and info["documents"] == 4 and info["generator"] == "fake-generator"
    )
    assert info["generator_backend"] == "fake"
    page = client.get("/")
    assert page.status_code == 200 and 'id="question"' in page.text
    assert "/ask" in client.get("/openapi.json").json()["paths"]


def test_not_ready_until_loaded(setup) -> None:
    release = threading.Event()

    def slow_loader(service: ServiceState) -> None:
        release.wait(10)

    root, _ = setup
    app = create_app(Settings(index_root=root, embedder="fake-bow"), ["tiny"], loader=slow_loader)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.headers["retry-after"]
        assert client.post("/ask", json=ASK).status_code == 503
        release.set()


def test_api_key_guards_everything_but_healthz(setup) -> None:
    with make_client(setup, api_key="s3cret") as client:
        assert client.get("/healthz").status_code == 200
        for method, path in [("post", "/ask"), ("get", "/indexes"), ("get", "/readyz")]:
            response = getattr(client, method)(path, **({"json": ASK} if method == "post" else {}))
            assert response.status_code == 401, path
            assert response.json()["status"] == 401
        ok = client.post("/ask", json=ASK, headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert client.post("/ask", json=ASK, headers={"x-api-key": "s3cret"}).status_code == 200
        assert client.post("/ask", json=ASK, headers={"x-api-key": "wrong"}).status_code == 401


def test_rebuilt_index_is_served_without_restart(client: TestClient, setup, tiny_corpus) -> None:
    root, embedder = setup
    before = client.post("/search", json=ASK).json()["version"]
    (tiny_corpus / "beta.txt").write_text("Beta station keeps forty goats now.\n")
    report = sync_index(
        load_corpus(tiny_corpus), root, "tiny", embedder, chunker(embedder), show_progress=False
    )
    after = client.post("/ask", json=ASK).json()
    assert after["version"] == report.version != before
    assert after["answer"].startswith("Beta station keeps forty goats")


def test_broken_new_version_keeps_the_last_good_one(client: TestClient, setup, tiny_corpus):
    root, embedder = setup
    good = client.post("/search", json=ASK).json()["version"]
    (tiny_corpus / "beta.txt").write_text("Beta station keeps forty goats now.\n")
    report = sync_index(
        load_corpus(tiny_corpus), root, "tiny", embedder, chunker(embedder), show_progress=False
    )
    (root / "tiny" / report.version / "vectors.faiss").write_bytes(b"garbage")
    response = client.post("/search", json=ASK)
    assert response.status_code == 200 and response.json()["version"] == good
    ready = client.get("/readyz").json()
    assert "vectors.faiss" in ready["errors"]["tiny"]


def test_abandoned_stream_frees_its_slot(client: TestClient) -> None:
    """A client that goes away before reading the stream must not keep a queue slot.

    (Found by schemathesis: slots leaked this way turned every later /ask into a 503.)
    """
    from api.routers.ask import stream_answer
    from api.schemas import AskRequest

    service = client.app.state.service
    for _ in range(service.queue.limit):
        stream_answer(AskRequest(**ASK), service)  # the response is never iterated
    deadline = time.time() + 10
    while service.queue.active and time.time() < deadline:
        time.sleep(0.05)
    assert service.queue.active == 0
    assert client.post("/ask", json=ASK).status_code == 200


class CutShortGenerator(FakeGenerator):
    """Runs out of new tokens: what `max_tokens` too small does to a real model."""

    def complete(self, messages, **options):
        from rag.generators import Generation

        text = self.generate(messages, **options)
        return Generation(text, self.count_tokens(messages), 2, "length")


def test_chat_reports_a_cut_answer_and_the_whole_prompts_tokens(setup) -> None:
    with make_client(setup, generator=CutShortGenerator()) as client:
        body = {"messages": [{"role": "user", "content": ASK["question"]}], "max_tokens": 2}
        reply = client.post("/v1/chat/completions", json=body).json()
    assert reply["choices"][0]["finish_reason"] == "length"
    question_tokens = len(ASK["question"].split())
    assert reply["usage"]["prompt_tokens"] > question_tokens, "the passages count too"
