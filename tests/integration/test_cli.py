"""The real `rag` CLI in a subprocess: index, re-index, list, ask, and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ..conftest import SAMPLE
from .conftest import fresh_database, run_rag, settings_env

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, index_settings) -> dict[str, str]:
    """A fresh index root (or database), on each store."""
    env = settings_env(index_settings) | {"RAG_INDEX_ROOT": str(tmp_path / "indexes")}
    if index_settings.pg_dsn:
        env["RAG_PG_DSN"] = fresh_database(index_settings.pg_dsn)
    return env


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE, tmp_path / "sample"))


def test_index_reindex_list_and_ask(corpus: Path, env: dict[str, str]) -> None:
    built = run_rag("index", str(corpus), "--index", "s", env=env)
    assert built.returncode == 0, built.stderr
    assert "9 new, 0 changed, 0 removed" in built.stdout

    again = run_rag("index", str(corpus), "--index", "s", "--json", env=env)
    report = json.loads(again.stdout)
    assert (report["new"], report["changed"], report["removed"]) == (0, 0, 0)
    assert report["unchanged"] == 9

    (corpus / "notes.txt").unlink()
    (corpus / "extra.md").write_text("# Extra\n\nThe harbour bell is named Old Tamsin.\n")
    update = run_rag("index", str(corpus), "--index", "s", env=env)
    assert "1 new, 0 changed, 1 removed" in update.stdout

    listed = json.loads(run_rag("indexes", "--json", env=env).stdout)
    assert [(r["name"], r["documents"]) for r in listed] == [("s", 9)]
    assert listed[0]["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"

    asked = run_rag("ask", "What is the harbour bell named?", "--index", "s", "--json", env=env)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "Old Tamsin" in answer["answer"]
    assert [s["doc_id"] for s in answer["sources"] if s["cited"]] == ["extra.md"]
    assert set(answer["timings"]) >= {"retrieve_ms", "generate_ms"}

    if "RAG_PG_DSN" not in env:  # the plain output does not depend on the store
        plain = run_rag("ask", "What is the harbour bell named?", "--index", "s", env=env)
        assert plain.returncode == 0, plain.stderr
        assert plain.stderr.splitlines() == ["loading models..."], "no loading bars or logs"
        assert "Old Tamsin" in plain.stdout and "extra.md" in plain.stdout


def test_bad_files_are_skipped_and_counted(corpus: Path, env: dict[str, str]) -> None:
    (corpus / "blob.txt").write_bytes(b"\x00\xff\x00binary")
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")
    result = run_rag("index", str(corpus), "--index", "s", env=env)
    assert result.returncode == 0
    assert "skipped 2" in result.stdout
    assert "blob.txt" in result.stderr and "broken.pdf" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["index", "does/not/exist", "--index", "x"], "does not exist"),
        (["index", "{corpus}", "--index", "../x"], "invalid index name"),
        (["ask", "hello?", "--index", "missing"], "no index named 'missing'"),
        (["ask", "   ", "--index", "s"], "question is empty"),
        (["ask", "x" * 2001, "--index", "s"], "the limit is 2000"),
        (["search", "hello", "--index", "s", "--mode", "fuzzy"], "fuzzy"),
    ],
)
def test_usage_errors_exit_2(corpus: Path, env: dict[str, str], args, message) -> None:
    (corpus.parent / "empty").mkdir()
    args = [a.replace("{corpus}", str(corpus)) for a in args]
    result = run_rag(*args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_corpus_exits_2(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "empty").mkdir()
    result = run_rag("index", str(tmp_path / "empty"), "--index", "e", env=env)
    assert result.returncode == 2
    assert "no loadable documents" in result.stderr


def _built(corpus: Path, env: dict[str, str]) -> Path:
    assert run_rag("index", str(corpus), "--index", "s", env=env).returncode == 0
    directory = Path(env["RAG_INDEX_ROOT"]) / "s"
    return directory / (directory / "CURRENT").read_text().strip()


def test_corrupted_index_file_is_named(corpus: Path, env: dict[str, str]) -> None:
    if env["RAG_VECTOR_STORE"] != "faiss":
        pytest.skip("tampers with a version folder; PostgreSQL's checks: test_postgres_store.py")
    version = _built(corpus, env)
    store = version / "chunks.sqlite"
    store.write_bytes(store.read_bytes()[:-100])
    result = run_rag("search", "generator", "--index", "s", env=env)
    assert result.returncode == 2
    assert "chunks.sqlite" in result.stderr and "checksum" in result.stderr


def test_index_from_another_embedder_or_newer_format(corpus: Path, env: dict[str, str]) -> None:
    if env["RAG_VECTOR_STORE"] != "faiss":
        pytest.skip("tampers with a version folder; PostgreSQL's checks: test_postgres_store.py")
    version = _built(corpus, env)
    manifest_file = version / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["embedder"] = {"name": "intfloat/e5-large", "dimension": 1024, "max_seq_length": 512}
    manifest_file.write_text(json.dumps(manifest))
    result = run_rag("search", "generator", "--index", "s", env=env)
    assert result.returncode == 2
    assert "intfloat/e5-large" in result.stderr and "RAG_EMBEDDER" in result.stderr

    manifest["format_version"] = 7
    manifest_file.write_text(json.dumps(manifest))
    result = run_rag("search", "generator", "--index", "s", env=env)
    assert result.returncode == 2
    assert "format version 7" in result.stderr
