"""FAISS picks exact or IVF by size when a version is written; IVF keeps incremental updates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.documents import load_corpus
from rag.errors import InputError
from rag.indexing import sync_index
from rag.retrieval import retrieve
from rag.store import LocalStore, load_index, open_store
from rag.store.faiss_vectors import FaissBackend, nlist_for

from .test_store import chunker

DIMENSION = 32


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Normalised points around 20 centres: what embeddings of a few topics look like."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIMENSION))
    points = centres[rng.integers(20, size=n)] + 0.3 * rng.standard_normal((n, DIMENSION))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def write(backend: FaissBackend, path: Path, ids, vectors, base: Path | None = None, drop=()):
    path.mkdir()
    writer = backend.writer(path.parent, "t", None, base, DIMENSION)
    if len(drop):
        writer.remove(np.asarray(drop, dtype=np.int64))
    if len(ids):
        writer.add(np.asarray(ids, dtype=np.int64), vectors, [""] * len(ids))
    entry = writer.save(path)
    return entry, backend.open(path, entry)


def exact_top(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return [int(ids[i]) for i in np.argsort(-(vectors @ query))[:k]]


def test_small_indexes_stay_exact(tmp_path: Path) -> None:
    vectors = clustered(500)
    entry, store = write(FaissBackend(exact_limit=1000), tmp_path / "v", range(500), vectors)
    assert entry["kind"] == "exact"
    assert store.size == 500
    assert [i for i, _ in store.search(vectors[7], 3)] == exact_top(
        vectors, np.arange(500), vectors[7], 3
    )


def test_large_indexes_become_ivf_and_find_what_exact_search_finds(tmp_path: Path) -> None:
    vectors = clustered(3000)
    ids = np.arange(3000) * 5 + 3  # chunk ids need not be dense
    entry, store = write(FaissBackend(exact_limit=1000, nprobe=16), tmp_path / "v", ids, vectors)
    assert entry == {
        "backend": "faiss",
        "kind": "ivf",
        "factory": f"IVF{nlist_for(3000)},SQfp16",
        "nlist": nlist_for(3000),
        "nprobe": 16,
    }
    assert store.size == 3000
    queries = clustered(50, seed=1)
    overlap = [
        len({i for i, _ in store.search(q, 10)} & set(exact_top(vectors, ids, q, 10))) / 10
        for q in queries
    ]
    assert np.mean(overlap) >= 0.9
    similarity = store.similarity(queries[0], [int(ids[4])])[int(ids[4])]
    assert similarity == pytest.approx(float(vectors[4] @ queries[0]), abs=0.02)


def test_ivf_takes_removals_and_additions_and_shrinks_back_to_exact(tmp_path: Path) -> None:
    backend = FaissBackend(exact_limit=1000, nprobe=nlist_for(3000))  # every list: exhaustive
    vectors = clustered(3000)
    write(backend, tmp_path / "v1", range(3000), vectors)
    extra = clustered(10, seed=2)
    entry, store = write(
        backend, tmp_path / "v2", range(5000, 5010), extra, base=tmp_path / "v1", drop=range(100)
    )
    assert entry["kind"] == "ivf" and store.size == 2910
    found = {i for q in vectors[:100] for i, _ in store.search(q, 5)}
    assert not found & set(range(100)), "removed chunks are never returned"
    assert [i for i, _ in store.search(extra[3], 1)] == [5003]

    entry, store = write(
        backend, tmp_path / "v3", [], extra, base=tmp_path / "v2", drop=range(100, 2700)
    )
    assert entry["kind"] == "exact" and store.size == 310  # below half the limit
    assert [i for i, _ in store.search(extra[3], 1)] == [5003]
    assert [i for i, _ in store.search(vectors[2800], 1)] == [2800]


def test_sync_index_on_ivf_updates_incrementally(tmp_path: Path, fake_embedder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    words = [f"w{n}" for n in range(400)]
    for n in range(300):
        (corpus / f"d{n:03d}.txt").write_text(" ".join(words[(n * 7) % 380 :][:20]) + f" only{n}")
    backend = FaissBackend(exact_limit=200, nprobe=64)

    def sync():
        return sync_index(
            load_corpus(corpus),
            tmp_path / "idx",
            "t",
            fake_embedder,
            chunker(fake_embedder),
            show_progress=False,
            backend=backend,
        )

    first = sync()
    (corpus / "d005.txt").unlink()
    (corpus / "d006.txt").write_text("a brand new text about only6 and marmalade")
    second = sync()
    assert (second.changed, second.removed, second.chunks) == (1, 1, 299)
    index = load_index(tmp_path / "idx", "t")
    try:
        assert index.manifest["vectors"]["kind"] == "ivf"
        assert index.version != first.version
        hits = retrieve(index, fake_embedder, "marmalade", k=1, mode="dense")
        assert [h.doc_id for h in hits] == ["d006.txt"]
        assert "d005.txt" not in {h.doc_id for h in retrieve(index, fake_embedder, "only5", k=5)}
    finally:
        index.close()


class ElsewhereStore(LocalStore):
    """The same folders, under another store's name: as an index moved between stores."""

    kind = "elsewhere"


def test_switching_store_needs_rebuild(tiny_corpus: Path, tmp_path: Path, fake_embedder):
    root = tmp_path / "idx"
    sync_index(
        load_corpus(tiny_corpus),
        root,
        "t",
        fake_embedder,
        chunker(fake_embedder),
        show_progress=False,
    )
    manifest = json.loads(next(root.glob("t/v-*/manifest.json")).read_text())
    assert (manifest["store"], manifest["vectors"]["backend"]) == ("local", "faiss")

    (tiny_corpus / "new.txt").write_text("Something new.\n")
    with pytest.raises(InputError, match="--rebuild"):
        sync_index(
            load_corpus(tiny_corpus),
            ElsewhereStore(root),
            "t",
            fake_embedder,
            chunker(fake_embedder),
            show_progress=False,
        )


def test_unknown_store_and_postgres_without_a_database_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown store"):
        open_store(Settings.model_construct(vector_store="milvus", index_root=tmp_path))
    for name in ("postgres", "pgvector"):  # pgvector: the earlier name still works
        with pytest.raises(InputError, match="RAG_PG_DSN"):
            open_store(Settings(vector_store=name, pg_dsn=None, index_root=tmp_path))


def test_the_factory_picks_the_folder_store_with_faiss_options(tmp_path: Path) -> None:
    store = open_store(Settings(index_root=tmp_path, exact_limit=7, nprobe=3))
    assert isinstance(store, LocalStore)
    assert (store.root, store.vectors.exact_limit, store.vectors.nprobe) == (tmp_path, 7, 3)
