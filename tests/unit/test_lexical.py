"""Folder indexes with tantivy as the word search (RAG_LEXICAL=tantivy): same answers as FTS5,
updates by chunk id, files under checksum like the rest of a version."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tantivy")

from rag.documents import load_corpus
from rag.errors import CorruptIndexError, InputError
from rag.indexing import sync_index
from rag.retrieval import retrieve
from rag.store import LocalStore, load_index

from .test_store import chunker

QUERIES = {
    "reactor kelvin": "alpha.md",
    "goats named after planets": "beta.txt",
    "ultramarine tower": "g-1",
    "lighthouse Wenlock": "g-2",
}


def build(corpus: Path, root: Path, embedder, lexical: str = "tantivy"):
    return sync_index(
        load_corpus(corpus),
        LocalStore(root, lexical=lexical),
        "t",
        embedder,
        chunker(embedder),
        show_progress=False,
    )


def top(root: Path, embedder, query: str, mode: str = "lexical") -> list[str]:
    index = load_index(root, "t")
    try:
        return [p.doc_id for p in retrieve(index, embedder, query, k=3, mode=mode)]
    finally:
        index.close()


def test_tantivy_finds_what_fts5_finds(tiny_corpus: Path, tmp_path: Path, fake_embedder) -> None:
    build(tiny_corpus, tmp_path / "fts5", fake_embedder, "fts5")
    build(tiny_corpus, tmp_path / "tantivy", fake_embedder)
    for query, doc in QUERIES.items():
        assert top(tmp_path / "tantivy", fake_embedder, query)[0] == doc, query
        assert top(tmp_path / "tantivy", fake_embedder, query, "hybrid")[0] == doc, query
        assert top(tmp_path / "fts5", fake_embedder, query)[0] == doc, query
    index = load_index(tmp_path / "tantivy", "t")
    try:
        assert index.manifest["lexical"] == {"engine": "tantivy"}
        assert any(f.startswith("lexical/") for f in index.manifest["files"])
    finally:
        index.close()


def test_updates_remove_and_add_by_chunk_id(tiny_corpus: Path, tmp_path: Path, fake_embedder):
    root = tmp_path / "idx"
    build(tiny_corpus, root, fake_embedder)
    (tiny_corpus / "beta.txt").write_text("Beta station now keeps llamas.\n")
    (tiny_corpus / "alpha.md").unlink()
    report = build(tiny_corpus, root, fake_embedder)
    assert (report.changed, report.removed) == (1, 1)
    assert "beta.txt" not in top(root, fake_embedder, "goats planets")
    assert top(root, fake_embedder, "llamas") == ["beta.txt"]
    assert top(root, fake_embedder, "reactor kelvin") == []
    assert build(tiny_corpus, root, fake_embedder).written is False


def test_lexical_files_are_checked(tiny_corpus: Path, tmp_path: Path, fake_embedder) -> None:
    root = tmp_path / "idx"
    build(tiny_corpus, root, fake_embedder)
    lexical = next(root.glob("t/v-*/lexical"))
    (lexical / "planted.pkl").write_bytes(b"not allowed")
    with pytest.raises(CorruptIndexError, match="unexpected file"):
        load_index(root, "t")
    (lexical / "planted.pkl").unlink()
    segment = max(
        (p for p in lexical.iterdir() if p.suffix == ".idx"), key=lambda p: p.stat().st_size
    )
    data = segment.read_bytes()
    segment.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # one flipped byte
    with pytest.raises(CorruptIndexError, match="checksum"):
        load_index(root, "t")


def test_switching_engine_needs_rebuild(tiny_corpus: Path, tmp_path: Path, fake_embedder):
    root = tmp_path / "idx"
    build(tiny_corpus, root, fake_embedder, "fts5")
    (tiny_corpus / "new.txt").write_text("Something new.\n")
    with pytest.raises(InputError, match="--rebuild"):
        build(tiny_corpus, root, fake_embedder, "tantivy")
