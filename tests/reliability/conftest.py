"""Helpers for the reliability promises (docs/reliability.md).

Budgets scale with RAG_RELIABILITY_BUDGET (default 1): `make reliability` raises it to run the
crash loop, the load-while-reindexing run and the fuzzers longer than CI does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rag.documents import load_corpus
from rag.store import CURRENT, MANIFEST, load_index, sha256_file

from ..conftest import REPO

FAKE_RAG = [sys.executable, "-m", "tests.reliability.fake_cli"]
WORDS = (
    "harbour station reactor goat lighthouse tide beacon archive ledger copper winter signal "
    "ferry kelvin orbit granite meadow lantern compass anchor quarry glacier thistle falcon"
).split()


def budget() -> float:
    """How much longer than the CI default to run (RAG_RELIABILITY_BUDGET, default 1)."""
    return max(float(os.environ.get("RAG_RELIABILITY_BUDGET", "1")), 0.1)


def scaled(n: int) -> int:
    return max(1, round(n * budget()))


def fake_env(root: Path) -> dict[str, str]:
    """Environment for a `fake_cli` subprocess writing under `root`."""
    return {**os.environ, "RAG_INDEX_ROOT": str(root), "RAG_EMBEDDER": "fake-bow"}


def fake_rag(*args: str, root: Path, **popen) -> subprocess.Popen:
    """Start the real `rag` CLI (with the fake embedder) as a separate process."""
    return subprocess.Popen([*FAKE_RAG, *args], cwd=REPO, env=fake_env(root), **popen)


def run_fake_rag(*args: str, root: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FAKE_RAG, *args],
        cwd=REPO,
        env=fake_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def document_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + f" marker{rng.randrange(10**9)}"


def write_corpus(root: Path, documents: int, words: int, seed: int = 0) -> Path:
    """`documents` text files of `words` words each (deterministic for a seed)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(documents):
        (root / f"doc{n:05d}.txt").write_text(document_text(rng, words))
    return root


def corpus_state(corpus: Path) -> dict[str, str]:
    """{document id: content hash}, what a complete index of this corpus records."""
    return {doc.id: doc.hash for doc in load_corpus(corpus).documents}


def verify_index(root: Path, name: str) -> dict[str, str]:
    """Load the live version (checksums verified) and check it against itself in depth.

    Returns {document id: hash} from its manifest, for comparing with the corpus states the
    index may legitimately hold.
    """
    index = load_index(root, name)
    try:
        for filename, expected in index.manifest["files"].items():
            assert sha256_file(index.path / filename) == expected, filename
        listed = {*index.manifest["files"], MANIFEST}
        assert {p.name for p in index.path.iterdir()} == listed
        stored = {r[0] for r in index.db.execute("SELECT DISTINCT doc_id FROM chunks")}
        assert stored == set(index.manifest["documents"])
        (fts,) = index.db.execute("SELECT count(*) FROM chunks_fts").fetchone()
        assert fts == index.size == index.manifest["counts"]["chunks"]
        return {d: meta["hash"] for d, meta in index.manifest["documents"].items()}
    finally:
        index.close()


def leftovers(directory: Path) -> list[str]:
    """Entries beyond the lock, the pointer and the live version."""
    live = (directory / CURRENT).read_text().strip()
    return sorted(p.name for p in directory.iterdir() if p.name not in {".lock", CURRENT, live})


def fingerprint(state: dict[str, str]) -> str:
    return hashlib.sha256(repr(sorted(state.items())).encode()).hexdigest()[:10]


@pytest.fixture
def rng(request) -> random.Random:
    """Seeded per test; RAG_RELIABILITY_SEED replays a failing run."""
    seed = int(os.environ.get("RAG_RELIABILITY_SEED", random.randrange(10**6)))
    print(f"{request.node.name}: RAG_RELIABILITY_SEED={seed}")
    return random.Random(seed)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


class Server:
    def __init__(self, base: str, process: subprocess.Popen, log: Path) -> None:
        self.base, self.process, self.log = base, process, log

    @property
    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], log: Path, wait: float = 300):
    """Start a server on a free loopback port, wait until /readyz is 200, stop it after."""
    port = free_port()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + wait
            while True:
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.time() < deadline, "not ready in time"
                try:
                    key = {"x-api-key": env["RAG_API_KEY"]} if "RAG_API_KEY" in env else {}
                    if httpx.get(f"{base}/readyz", headers=key, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
            yield Server(base, process, log)
        finally:
            process.terminate()
            process.wait(timeout=30)


TINY = {
    "alpha.md": "# Alpha\n\nThe alpha reactor runs at 451 kelvin every night.\n",
    "beta.txt": "Beta station keeps seventeen goats named after planets.\n",
    "gamma.txt": "Gamma tower is painted ultramarine since 1987.\n",
}


@contextlib.contextmanager
def fake_server_at(base: Path, **env: str):
    """The real app under uvicorn with fake models (tests/reliability/fake_server.py)."""
    from rag.indexing import sync_index

    from ..conftest import FakeEmbedder
    from ..unit.test_store import chunker

    (base / "corpus").mkdir(parents=True)
    for name, text in TINY.items():
        (base / "corpus" / name).write_text(text)
    embedder = FakeEmbedder()
    corpus = load_corpus(base / "corpus")
    sync_index(corpus, base / "indexes", "tiny", embedder, chunker(embedder), show_progress=False)
    env = {
        "RAG_INDEX_ROOT": str(base / "indexes"),
        "RAG_MAX_QUEUE": "2",
        "RAG_GENERATION_TIMEOUT": "1.5",
        "RAG_TEST_PEAK_FILE": str(base / "peak"),
        **env,
    }
    command = [sys.executable, "-m", "tests.reliability.fake_server", "--index", "tiny"]
    with serving(command, env, base / "server.log", wait=120) as server:
        server.peak_file = base / "peak"
        yield server


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory):
    with fake_server_at(tmp_path_factory.mktemp("fake-server")) as server:
        yield server
