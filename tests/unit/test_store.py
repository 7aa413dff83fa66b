"""The on-disk index: incremental sync, atomic versions, corruption and misuse detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.chunking import Chunker
from rag.config import Settings
from rag.documents import load_corpus
from rag.errors import (
    CorruptIndexError,
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
    InputError,
)
from rag.indexing import check_up_to_date, sync_index
from rag.retrieval import retrieve
from rag.store import CURRENT, check_name, describe_indexes, load_index, writer_lock


def chunker(embedder, size: int = 40, overlap: int = 5) -> Chunker:
    return Chunker(embedder.tokenizer, size, overlap, embedder.max_seq_length)


def sync(corpus_dir: Path, root: Path, embedder, **kwargs):
    return sync_index(
        load_corpus(corpus_dir),
        root,
        "t",
        embedder,
        chunker(embedder),
        show_progress=False,
        **kwargs,
    )


def search(root: Path, embedder, query: str, mode: str = "dense", k: int = 3) -> list[tuple]:
    index = load_index(root, "t")
    try:
        return [(p.doc_id, p.text) for p in retrieve(index, embedder, query, k=k, mode=mode)]
    finally:
        index.close()


def ranking(root: Path, embedder, query: str, mode: str) -> list[tuple]:
    """Every chunk with its score, in a canonical order (chunk ids differ between builds)."""
    index = load_index(root, "t")
    try:
        hits = retrieve(index, embedder, query, k=50, mode=mode)
        return sorted((-round(p.score, 5), p.doc_id, p.chunk, p.text) for p in hits)
    finally:
        index.close()


def test_full_build_then_no_change(tiny_corpus: Path, tmp_path: Path, fake_embedder) -> None:
    root = tmp_path / "indexes"
    first = sync(tiny_corpus, root, fake_embedder)
    assert (first.new, first.changed, first.removed, first.documents) == (4, 0, 0, 4)
    assert first.chunks == first.chunks_added > 0
    calls = fake_embedder.calls
    again = sync(tiny_corpus, root, fake_embedder)
    assert (again.new, again.changed, again.removed, again.unchanged) == (0, 0, 0, 4)
    assert not again.written and again.version == first.version
    assert fake_embedder.calls == calls, "nothing is embedded when nothing changed"


def test_incremental_equals_rebuild(tiny_corpus: Path, tmp_path: Path, fake_embedder) -> None:
    root, fresh = tmp_path / "inc", tmp_path / "full"
    sync(tiny_corpus, root, fake_embedder)
    (tiny_corpus / "beta.txt").write_text("Beta station now keeps nine goats and one llama.\n")
    (tiny_corpus / "alpha.md").unlink()
    (tiny_corpus / "new.txt").write_text("Epsilon garden grows blue tomatoes in winter.\n")
    report = sync(tiny_corpus, root, fake_embedder)
    assert (report.new, report.changed, report.removed, report.unchanged) == (1, 1, 1, 2)
    sync(tiny_corpus, fresh, fake_embedder)
    for query in ["goats llama", "blue tomatoes", "alpha reactor kelvin", "lighthouse Wenlock"]:
        for mode in ("dense", "lexical"):
            expected = ranking(fresh, fake_embedder, query, mode)
            assert ranking(root, fake_embedder, query, mode) == expected
    assert all(doc != "alpha.md" for doc, _ in search(root, fake_embedder, "alpha reactor kelvin"))
    index = load_index(root, "t")
    assert set(index.manifest["documents"]) == {"beta.txt", "new.txt", "g-1", "g-2"}
    assert index.manifest["counts"]["chunks"] == index.size
    index.close()


def test_old_versions_and_leftovers_are_cleaned(tiny_corpus: Path, tmp_path: Path, fake_embedder):
    root = tmp_path / "indexes"
    sync(tiny_corpus, root, fake_embedder)
    (root / "t" / ".tmp-crashed").mkdir()
    (tiny_corpus / "beta.txt").write_text("changed\n")
    report = sync(tiny_corpus, root, fake_embedder)
    entries = sorted(p.name for p in (root / "t").iterdir())
    assert entries == [".lock", CURRENT, report.version]


def test_failed_build_leaves_previous_version(tiny_corpus: Path, tmp_path: Path, fake_embedder):
    root = tmp_path / "indexes"
    before = sync(tiny_corpus, root, fake_embedder)
    (tiny_corpus / "beta.txt").write_text("Beta keeps nine goats.\n")

    def explode(texts, progress=False):
        raise RuntimeError("simulated crash while embedding")

    fake_embedder.encode = explode
    with pytest.raises(RuntimeError, match="simulated crash"):
        sync(tiny_corpus, root, fake_embedder)
    index = load_index(root, "t")
    assert index.version == before.version
    assert not any(p.name.startswith(".tmp-") for p in (root / "t").iterdir())
    index.close()


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 65, "a b", "..", "é"])
def test_index_names_with_path_characters_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="invalid index name"):
        check_name(name)


def test_missing_index_lists_existing(tiny_corpus: Path, tmp_path: Path, fake_embedder) -> None:
    root = tmp_path / "indexes"
    sync(tiny_corpus, root, fake_embedder)
    with pytest.raises(IndexNotFoundError, match="existing indexes: t"):
        load_index(root, "other")


def test_corrupted_files_are_named(tiny_corpus: Path, tmp_path: Path, fake_embedder) -> None:
    root = tmp_path / "indexes"
    report = sync(tiny_corpus, root, fake_embedder)
    vectors = root / "t" / report.version / "vectors.faiss"
    data = bytearray(vectors.read_bytes())
    data[len(data) // 2] ^= 0xFF
    vectors.write_bytes(bytes(data))
    with pytest.raises(CorruptIndexError, match=r"vectors\.faiss"):
        load_index(root, "t")
    vectors.write_bytes(bytes(data[:100]))
    with pytest.raises(CorruptIndexError, match=r"vectors\.faiss"):
        load_index(root, "t")
    (root / "t" / report.version / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptIndexError, match=r"manifest\.json"):
        load_index(root, "t")


def test_newer_format_and_other_embedder_are_refused(
    tiny_corpus: Path, tmp_path: Path, fake_embedder
) -> None:
    root = tmp_path / "indexes"
    report = sync(tiny_corpus, root, fake_embedder)
    index = load_index(root, "t")
    with pytest.raises(IndexFormatError, match="fake-bow"):
        index.check_embedder("sentence-transformers/other", 384)
    index.close()
    with pytest.raises(IndexFormatError, match="fake-bow"):
        fake_embedder.name = "another-model"
        sync(tiny_corpus, root, fake_embedder)
    manifest_path = root / "t" / report.version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="format version 99"):
        load_index(root, "t")


def test_changed_chunking_asks_for_rebuild(tiny_corpus: Path, tmp_path: Path, fake_embedder):
    root = tmp_path / "indexes"
    sync(tiny_corpus, root, fake_embedder)
    other = Chunker(fake_embedder.tokenizer, 30, 5, 256)
    corpus = load_corpus(tiny_corpus)
    with pytest.raises(InputError, match="--rebuild"):
        sync_index(corpus, root, "t", fake_embedder, other, show_progress=False)
    report = sync_index(corpus, root, "t", fake_embedder, other, rebuild=True, show_progress=False)
    assert report.rebuilt and report.new == 4


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with (
        writer_lock(tmp_path / "t"),
        pytest.raises(IndexLockedError, match="another"),
        writer_lock(tmp_path / "t"),
    ):
        pass


def test_describe_indexes(tiny_corpus: Path, tmp_path: Path, fake_embedder) -> None:
    root = tmp_path / "indexes"
    sync(tiny_corpus, root, fake_embedder)
    (rows,) = describe_indexes(root)
    assert rows["name"] == "t" and rows["documents"] == 4 and rows["embedder"] == "fake-bow"
    assert rows["chunks"] >= 4 and rows["build_seconds"] >= 0


def test_up_to_date_check_needs_no_model(tiny_corpus: Path, tmp_path: Path, fake_embedder):
    root = tmp_path / "indexes"
    sync(tiny_corpus, root, fake_embedder)
    same = Settings(index_root=root, embedder="fake-bow", chunk_size=40, chunk_overlap=5)
    report = check_up_to_date(load_corpus(tiny_corpus), root, "t", same)
    assert report is not None and (report.new, report.changed, report.removed) == (0, 0, 0)
    assert report.unchanged == 4 and not report.written
    other = same.model_copy(update={"embedder": "some/other-model"})
    assert check_up_to_date(load_corpus(tiny_corpus), root, "t", other) is None
    (root / "t" / ".tmp-killed").mkdir()
    assert check_up_to_date(load_corpus(tiny_corpus), root, "t", same) is None, "leftovers"
    (root / "t" / ".tmp-killed").rmdir()
    (tiny_corpus / "beta.txt").write_text("edited\n")
    assert check_up_to_date(load_corpus(tiny_corpus), root, "t", same) is None
