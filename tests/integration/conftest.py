"""Real models, loaded once per test session (the generator takes ~15-30 s to dequantize).

Indexes are built and searched once per store (`index_settings`): folders (SQLite + FAISS), and
the whole index in PostgreSQL + pgvector on a server these fixtures start (pgserver ships one
with pgvector).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator

import pytest

from rag.chain import Pipeline
from rag.config import Settings
from rag.embeddings import Embedder, load_embedder
from rag.generators import ChatGenerator, load_generator
from rag.indexing import index_corpus
from rag.store import load_index

from ..conftest import REPO, SAMPLE

pytestmark = pytest.mark.slow
RAG = [sys.executable, "-m", "rag.cli"]


def sample_questions() -> list[tuple[str, str, str]]:
    """(question, expected answer, gold document id) from corpora/sample-questions.md."""
    rows = []
    for line in (REPO / "corpora" / "sample-questions.md").read_text().splitlines():
        if re.match(r"\|\s*\d+\s*\|", line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.append((cells[1], cells[2], cells[3].strip("`")))
    assert len(rows) >= 8
    return rows


def run_rag(*args: str, env: dict[str, str] | None = None, timeout: int = 300):
    """Run the real CLI in a subprocess, as a user would."""
    return subprocess.run(
        [*RAG, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Terminate a server the test started, killing it when it does not exit in `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@pytest.fixture(scope="session", autouse=True)
def shared_model_cache(tmp_path_factory) -> Iterator[None]:
    """One dequantized-generator cache for the session, its `rag` subprocesses included:
    the first load fills it, every later process reads it instead of dequantizing again."""
    if "RAG_CACHE_DIR" in os.environ:
        yield
        return
    os.environ["RAG_CACHE_DIR"] = str(tmp_path_factory.mktemp("model-cache"))
    try:
        yield
    finally:
        del os.environ["RAG_CACHE_DIR"]


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    return Settings(index_root=tmp_path_factory.mktemp("indexes"))


BACKENDS = ["faiss", "pgvector"]


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A PostgreSQL server with pgvector for this session, deleted afterwards.

    Run as root, pgserver creates a system user `pgserver` and runs postgres as it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # it uses /tmp instead
        try:
            import pgserver
        except ImportError:
            pytest.skip("pgserver is not installed: pip install -e '.[test]'")
        server = pgserver.get_server(tempfile.mkdtemp(prefix="rag-pg-"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def index_settings(backend: str, settings: Settings, request, tmp_path_factory) -> Settings:
    """Settings for building and loading indexes on one vector store backend."""
    if backend == "faiss":
        return settings
    return settings.model_copy(
        update={
            "index_root": tmp_path_factory.mktemp("indexes-pgvector"),
            "vector_store": "pgvector",
            "pg_dsn": request.getfixturevalue("pg_dsn"),
        }
    )


def fresh_database(dsn: str) -> str:
    """A new, empty database on the same server: indexes in PostgreSQL are named, not placed,
    so tests that reuse an index name need a database of their own."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    before, _, after = dsn.partition("?")
    return before.rsplit("/", 1)[0] + "/" + name + ("?" + after if after else "")


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a `rag` subprocess needs to see the same indexes."""
    env = {"RAG_INDEX_ROOT": str(settings.index_root), "RAG_VECTOR_STORE": settings.vector_store}
    return env | ({"RAG_PG_DSN": settings.pg_dsn} if settings.pg_dsn else {})


@pytest.fixture(scope="session")
def embedder(settings: Settings) -> Embedder:
    return load_embedder(settings)


@pytest.fixture(scope="session")
def generator(settings: Settings) -> ChatGenerator:
    return load_generator(settings)


@pytest.fixture(scope="session")
def sample_index(index_settings: Settings, embedder: Embedder, tmp_path_factory) -> str:
    corpus = tmp_path_factory.mktemp("corpus") / "sample"
    shutil.copytree(SAMPLE, corpus)
    index_corpus(corpus, "sample", index_settings, embedder=embedder, show_progress=False)
    return "sample"


@pytest.fixture(scope="session")
def pipeline(index_settings, embedder, generator, sample_index) -> Pipeline:
    s = index_settings
    index = load_index(s, sample_index)
    yield Pipeline(index, embedder, generator, s)
    index.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test shows the log of each server fixture it used (any with a `log_tail`)."""
    report = yield
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if callable(getattr(value, "log_tail", None)):
                report.sections.append((f"{name} log", value.log_tail()))
    return report
