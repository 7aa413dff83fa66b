"""Stateless replicas: two `rag serve` processes (fake models, real app and uvicorn) with empty
index roots serve one index from PostgreSQL; a writer publishes three times under a steady
/search load. No request fails, every replica serves each new version within 2 s, and when one
replica is killed the other keeps answering."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import httpx
import pytest

from rag.documents import load_corpus
from rag.indexing import sync_index
from rag.store.postgres import PostgresStore

from ..conftest import FakeEmbedder
from ..unit.test_store import chunker
from .conftest import TINY, serving

pytestmark = pytest.mark.slow
SEARCH = {"question": "goats named after planets", "k": 2}


@pytest.fixture(scope="module")
def dsn():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        pgserver = pytest.importorskip("pgserver")
        server = pgserver.get_server(tempfile.mkdtemp(prefix="rag-pg-"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def load(base: str, stop: threading.Event, seen: list, errors: list) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            try:
                response = client.post("/search", json=SEARCH)
                seen.append((time.monotonic(), response.status_code, response.json()["version"]))
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                errors.append((time.monotonic(), base, f"{type(exc).__name__}: {exc}"))
            time.sleep(0.01)


def test_two_replicas_follow_three_publishes(dsn: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in TINY.items():
        (corpus / name).write_text(text)
    store, embedder = PostgresStore(dsn), FakeEmbedder()

    def publish() -> str:
        report = sync_index(
            load_corpus(corpus), store, "tiny", embedder, chunker(embedder), show_progress=False
        )
        return report.version

    publish()
    command = [sys.executable, "-m", "tests.reliability.fake_server", "--index", "tiny"]
    env = {"RAG_VECTOR_STORE": "postgres", "RAG_PG_DSN": dsn}
    with contextlib.ExitStack() as stack:
        replicas = [
            stack.enter_context(
                serving(
                    command,
                    env | {"RAG_INDEX_ROOT": str(tmp_path / f"root-{n}")},
                    tmp_path / f"replica-{n}.log",
                    wait=120,
                )
            )
            for n in range(2)
        ]
        stop, errors = threading.Event(), []
        seen: list[list] = [[], []]
        threads = [
            threading.Thread(target=load, args=(r.base, stop, seen[n], errors))
            for n, r in enumerate(replicas)
        ]
        for thread in threads:
            thread.start()
        lags = []
        try:
            for n in range(3):
                time.sleep(0.5)
                (corpus / f"new{n}.txt").write_text(f"Goat number {n} is named after Pluto.\n")
                version = publish()
                published = time.monotonic()
                for replica in replicas:
                    while True:
                        (served,) = httpx.get(f"{replica.base}/indexes", timeout=10).json()
                        if served["version"] == version:
                            lags.append(time.monotonic() - published)
                            break
                        assert time.monotonic() - published < 2, "a replica lagged over 2 s"
                        time.sleep(0.02)
            killed_at = time.monotonic()
            replicas[0].process.kill()  # one replica dies: the other keeps serving
            replicas[0].process.wait()
            survivor = len(seen[1])
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        answered = seen[1][survivor:]
        expected = [e for e in errors if e[1] == replicas[0].base and e[0] >= killed_at]
        assert [e for e in errors if e not in expected] == []
        assert answered and all(status == 200 for _, status, _ in answered)
        statuses = {status for log in seen for _, status, _ in log}
        assert statuses == {200}, statuses
        assert sum(len(log) for log in seen) > 50
        assert max(lags) < 2
        print(
            f"\n{sum(len(s) for s in seen)} searches, 0 failed; lag after publish: "
            f"max {max(lags):.3f} s, {[round(x, 3) for x in lags]}"
        )
