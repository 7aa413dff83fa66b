"""The real server in a subprocess on a loopback port, with the real models.

Queried with httpx and with the official `openai` client; schemathesis fuzzes its OpenAPI
schema; a rebuilt index is picked up while serving.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import REPO, SAMPLE
from .conftest import run_rag
from .openai_clients import check_llm_cli, check_openai_sdk

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, base: str, process: subprocess.Popen, env: dict[str, str], corpus: Path):
        self.base, self.process, self.env, self.corpus = base, process, env, corpus


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("served")
    corpus = Path(shutil.copytree(SAMPLE, root / "sample"))
    env = {"RAG_INDEX_ROOT": str(root / "indexes"), "RAG_GENERATION_TIMEOUT": "60"}
    assert run_rag("index", str(corpus), "--index", "sample", env=env).returncode == 0
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed in the finalizer
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--index", "sample", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            assert process.poll() is None, (root / "server.log").read_text()[-3000:]
            assert time.time() < deadline, "not ready in time"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield Server(base, process, env, corpus)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_ask_over_http(server: Server) -> None:
    response = httpx.post(
        f"{server.base}/ask",
        json={"question": "What is the station's postal box number?", "k": 3},
        timeout=120,
    )
    assert response.status_code == 200
    body = response.json()
    assert "LH-4471" in body["answer"]
    assert [s["doc_id"] for s in body["sources"] if s["cited"]] == ["faq-003"]
    assert body["timings"]["generate_ms"] > 0


def test_stream_over_http(server: Server) -> None:
    events = []
    with httpx.stream(
        "POST",
        f"{server.base}/ask/stream",
        json={"question": "Who is the director of Lumen Harbor Research Station?"},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append(line[7:])
    assert events[0] == "sources" and events[-1] == "answer"
    assert events.count("token") > 3


def test_openai_client(server: Server) -> None:
    check_openai_sdk(server.base)


def test_errors_over_http(server: Server) -> None:
    bad = httpx.post(f"{server.base}/ask", json={"question": "", "k": 50}, timeout=30)
    assert bad.status_code == 422 and {e["field"] for e in bad.json()["errors"]} == {
        "question",
        "k",
    }
    missing = httpx.post(f"{server.base}/ask", json={"question": "x", "index": "nope"}, timeout=30)
    assert missing.status_code == 404
    huge = httpx.post(f"{server.base}/ask", content=b"x" * 10_000_000, timeout=30)
    assert huge.status_code == 413


def test_schemathesis_finds_no_server_errors(server: Server) -> None:
    """Generated requests against /openapi.json: no 5xx other than the designed 503/504."""
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis, "schemathesis is installed by `make install`"
    result = subprocess.run(
        [
            schemathesis,
            "run",
            f"{server.base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--request-timeout",
            "120",
            "--exclude-path",
            "/v1/chat/completions",
            "--exclude-path",
            "/ask/stream",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    failures = result.stdout[result.stdout.find("FAILURES") :][:8000]
    assert result.returncode == 0, failures or result.stdout[-4000:] + result.stderr[-2000:]


def test_rebuilt_index_is_served_without_restart(server: Server) -> None:
    before = httpx.get(f"{server.base}/readyz", timeout=10).json()["versions"]["sample"]
    (server.corpus / "bell.md").write_text("# Bell\n\nThe harbour bell is named Old Tamsin.\n")
    assert run_rag("index", str(server.corpus), "--index", "sample", env=server.env).returncode == 0
    found = httpx.post(
        f"{server.base}/search", json={"question": "harbour bell named", "k": 2}, timeout=30
    ).json()
    assert found["version"] != before
    assert found["sources"][0]["doc_id"] == "bell.md"
    listed = httpx.get(f"{server.base}/indexes", timeout=10).json()
    assert listed[0]["documents"] == 10 and json.dumps(listed)


def test_openai_sdk_models_conversation_usage_and_refusals(server: Server) -> None:
    """The official SDK, as a model picker and a chat UI use it."""
    import openai

    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", timeout=120)
    assert [m.id for m in client.models.list()] == ["sample"]
    assert client.models.retrieve("sample").owned_by == "rag"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi?"}]
        )
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="sample", n=2, messages=[{"role": "user", "content": "Hi?"}]
        )
    assert "n > 1" in refused.value.message and refused.value.param == "n"

    first = "What is the name of the station cat?"
    answer = client.chat.completions.create(
        model="sample", messages=[{"role": "user", "content": first}]
    )
    messages = [
        {"role": "system", "content": "You are a careful assistant. " * 100},
        {"role": "user", "content": [{"type": "text", "text": first}]},
        {"role": "assistant", "content": answer.choices[0].message.content},
        {"role": "user", "content": [{"type": "text", "text": "What colour is it?"}]},
    ]
    stream = client.chat.completions.create(
        model="sample",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        max_completion_tokens=60,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "grey" in text.lower() and "faq-005" in text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_langchain_chat_openai(server: Server) -> None:
    """LangChain's ChatOpenAI sends max_completion_tokens and reads OpenAI's shapes."""
    chat_openai = pytest.importorskip("langchain_openai").ChatOpenAI
    model = chat_openai(
        base_url=f"{server.base}/v1", api_key="unused", model="sample", max_completion_tokens=60
    )
    reply = model.invoke("What is the station's postal box number?")
    assert "LH-4471" in reply.content and "faq-003" in reply.content
    streamed = "".join(str(c.content) for c in model.stream("What is the name of the station cat?"))
    assert "Biscuit Admiral" in streamed


def test_llm_cli_through_extra_openai_models(server: Server, tmp_path: Path) -> None:
    """simonw's `llm` CLI with the service as an OpenAI-compatible model."""
    pytest.importorskip("llm")
    check_llm_cli(server.base, tmp_path, "rag-sample")
