"""The PostgreSQL store and tantivy against the folder store with FTS5, same data, same run.

Starts its own PostgreSQL with pgvector (pgserver), then measures:

- retrieval quality: covidqa-dev indexed once with the real embedder in a folder store, copied
  into PostgreSQL (`copy_index`, nothing embedded twice), recall@5 of each mode on both;
- bulk load: synthetic chunks as `bench/scale.py` makes them, LangChain's PGVectorStore
  (the earlier pgvector backend, on 500 chunks) against COPY; then building the indexes (GIN,
  HNSW, document frequencies) and publishing;
- at that size: HNSW recall@10 against exact search, dense, BM25 and hybrid p50 in
  PostgreSQL against the folder store built from the same rows.

Run alone with `python -m bench.postgres [--quick] [--size N]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.scale import CACHE, DATA, Synthesizer, percentile, real_sample, recall

SIZE, QUICK_SIZE = 100_000, 20_000


def start_server() -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver

        return pgserver.get_server(tempfile.mkdtemp(prefix="rag-bench-pg-"), cleanup_mode="delete")


def covidqa_recall(
    dsn: str, k: int = 5, limit: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """recall@k of each mode, folder store against PostgreSQL and tantivy, on the same chunks
    and vectors; and the real chunks and questions the synthetic ones are drawn around."""
    from rag.config import Settings
    from rag.embeddings import load_embedder
    from rag.evaluation.data import load_dataset
    from rag.evaluation.retrieval import score_retrieval
    from rag.indexing import index_corpus
    from rag.store import LocalStore, copy_index, load_index
    from rag.store.postgres import PostgresStore

    settings = Settings(index_root=CACHE / "covidqa-index")  # kept: no re-embedding next time
    dataset = load_dataset(DATA, limit)
    embedder = load_embedder(settings)
    index_corpus(dataset.corpus, "covidqa", settings, embedder=embedder, show_progress=False)
    local = load_index(settings, "covidqa")
    store = PostgresStore(dsn)
    started = time.perf_counter()
    copy_index(local, store, "covidqa")
    copy_s = time.perf_counter() - started
    remote = store.open("covidqa")
    embedder = EncodedOnce(embedder)  # each question is embedded once for all stores and modes
    with tempfile.TemporaryDirectory(prefix="rag-bench-tantivy-") as tmp:
        pruning = LocalStore(Path(tmp), lexical="tantivy")
        copy_index(local, pruning, "covidqa")
        tantivy = pruning.open("covidqa")
    out: dict[str, Any] = {"chunks": local.size, "copy_s": round(copy_s, 1), "k": k}
    stores = (("folder", local), ("postgres", remote), ("tantivy", tantivy))
    for mode in ("dense", "lexical", "hybrid"):
        for label, index in stores:
            score = score_retrieval(
                index,
                embedder,
                dataset.test,
                mode=mode,
                k=k,
                settings=settings,
                show_progress=False,
            )
            out[f"{label}_{mode}_recall"] = round(score.recall, 3)
            out[f"{label}_{mode}_mrr"] = round(score.mrr, 3)
        print(
            f"covidqa-dev recall@{k} {mode:>7}: folder (FTS5) {out[f'folder_{mode}_recall']:.3f}, "
            f"PostgreSQL {out[f'postgres_{mode}_recall']:.3f}, "
            f"folder (tantivy) {out[f'tantivy_{mode}_recall']:.3f}",
            flush=True,
        )
    from rag.store.local import export_chunks

    # The real sample for the synthetic chunks, from this index: nothing is embedded twice.
    pieces = list(export_chunks(local))
    asked = [q.question for q in dataset.test][:240]
    real = {
        "texts": [row[6] for rows, _ in pieces for row in rows],
        "vectors": np.vstack([vectors for _, vectors in pieces]),
        "questions": asked,
        "question_vectors": embedder.encode(asked),
    }
    for _, index in stores:
        index.close()
    return out, real


class EncodedOnce:
    """The embedder, remembering the vector of each text it was asked for."""

    def __init__(self, embedder: Any) -> None:
        self.embedder, self.name, self.dimension = embedder, embedder.name, embedder.dimension
        self.vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str], **options: Any) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.embedder.encode(missing), strict=True))
        return np.stack([self.vectors[t] for t in texts])


def synthetic_rows(n: int, anchor: np.ndarray, texts: list[str], start: int, stop: int) -> list:
    return [
        (i, f"syn-{i // 100}", i % 100, 0, len(texts[a]), f"chunk {i}", texts[a])
        for i, a in zip(range(start, stop), anchor[start:stop].tolist(), strict=True)
    ]


def manifest_for(n: int, dimension: int) -> dict[str, Any]:
    from rag.store import now

    documents = {f"syn-{d}": {"hash": "", "title": "", "chunks": 100} for d in range(n // 100)}
    return {
        "name": "scale",
        "embedder": {"name": "synthetic", "dimension": dimension, "max_seq_length": 256},
        "chunking": {"chunk_size": 200, "chunk_overlap": 32},
        "counts": {"documents": len(documents), "chunks": n},
        "documents": documents,
        "created_at": now(),
        "updated_at": now(),
    }


def row_by_row(dsn: str, rows: list, vectors: np.ndarray) -> float:
    """Chunks/s of the earlier pgvector backend: LangChain's PGVectorStore.add_embeddings."""
    from langchain_postgres import Column, PGEngine, PGVectorStore

    from rag.store.postgres import PostgresStore

    PostgresStore(dsn).connect().close()  # creates the vector extension
    engine = PGEngine.from_connection_string("postgresql+psycopg://" + dsn.partition("://")[2])
    engine.init_vectorstore_table(
        "baseline",
        vectors.shape[1],
        id_column=Column("chunk_id", "TEXT", nullable=False),
        store_metadata=False,
        overwrite_existing=True,
    )

    class Given:
        def embed_documents(self, texts):
            raise AssertionError

        def embed_query(self, text):
            raise AssertionError

    store = PGVectorStore.create_sync(
        engine, Given(), "baseline", id_column="chunk_id", metadata_json_column=None
    )
    started = time.perf_counter()
    for start in range(0, len(rows), 100):  # as rag added them, batch by batch
        batch = rows[start : start + 100]
        store.add_embeddings(
            [r[6] for r in batch],
            vectors[start : start + 100].tolist(),
            ids=[str(r[0]) for r in batch],
        )
    rate = len(rows) / (time.perf_counter() - started)
    engine._run_as_sync(engine.close())
    return rate


def timed(search, queries) -> tuple[list[float], list]:
    times, results = [], []
    for query in queries:
        t = time.perf_counter()
        results.append(search(query))
        times.append((time.perf_counter() - t) * 1000)
    return times, results


def bulk_and_search(dsn: str, n: int, real: dict[str, Any], work: Path) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(1)  # as bench/scale.py measures: one search, one core
    from rag.retrieval import query_terms, retrieve
    from rag.store import LocalWriter
    from rag.store.local import load_version
    from rag.store.postgres import PostgresStore

    vectors, anchor = Synthesizer(real["vectors"]).sample(n)
    texts, dimension = real["texts"], vectors.shape[1]
    sample = min(500, n)
    slow_rate = row_by_row(dsn, synthetic_rows(n, anchor, texts, 0, sample), vectors[:sample])

    store = PostgresStore(dsn)
    with store.lock("scale"):
        writer = store.writer("scale", None)
        started = time.perf_counter()
        for start in range(0, n, 20_000):
            stop = min(n, start + 20_000)
            writer.add_chunks(synthetic_rows(n, anchor, texts, start, stop), vectors[start:stop])
        copy_s = time.perf_counter() - started
        writer.publish(manifest_for(n, dimension))
        publish_s = time.perf_counter() - started - copy_s
    remote = store.open("scale")

    local_writer = LocalWriter(work / "scale", None)
    started = time.perf_counter()
    for start in range(0, n, 20_000):
        stop = min(n, start + 20_000)
        local_writer.add_chunks(synthetic_rows(n, anchor, texts, start, stop), vectors[start:stop])
    version = local_writer.publish(manifest_for(n, dimension))
    local_s = time.perf_counter() - started
    local = load_version(work / "scale" / version, "scale")
    pruning_writer = LocalWriter(work / "pruning", None, lexical="tantivy")
    started = time.perf_counter()
    for start in range(0, n, 20_000):
        stop = min(n, start + 20_000)
        rows = synthetic_rows(n, anchor, texts, start, stop)
        pruning_writer.add_chunks(rows, vectors[start:stop])
    version = pruning_writer.publish(manifest_for(n, dimension))
    pruning_s = time.perf_counter() - started
    pruning = load_version(work / "pruning" / version, "scale")

    questions = real["question_vectors"][:-20]
    asked = real["questions"][: len(questions)]
    truth = [np.argsort(-(vectors @ q))[:10].tolist() for q in questions]
    first_vectors = vectors[:100].copy()
    del vectors
    for vector in real["question_vectors"][-20:]:  # warm up both
        remote.dense_search(vector, 10)
        local.dense_search(vector, 10)
    by_text = dict(zip(asked, questions, strict=True))

    class GivenVectors:
        def encode(self, batch: list[str]) -> np.ndarray:
            return np.stack([by_text[t] for t in batch])

    out: dict[str, Any] = {
        "chunks": n,
        "row_by_row_chunks_per_s": round(slow_rate, 1),
        "copy_s": round(copy_s, 1),
        "copy_chunks_per_s": round(n / copy_s, 1),
        "indexes_and_publish_s": round(publish_s, 1),
        "load_total_chunks_per_s": round(n / (copy_s + publish_s), 1),
        "folder_build_s": round(local_s, 1),
        "tantivy_build_s": round(pruning_s, 1),
    }
    from rag.store import postgres

    for ef in (600, 1000):  # HNSW recall is bounded by ef_search; the default is measured below
        default, postgres.EF_SEARCH = postgres.EF_SEARCH, ef
        ms, hits = timed(lambda q: remote.dense_search(q, 10), questions)
        postgres.EF_SEARCH = default
        found = [[i for i, _ in h] for h in hits]
        out[f"postgres_ef{ef}_dense_recall@10"] = recall(found, truth)
        out[f"postgres_ef{ef}_dense_p50_ms"] = percentile(ms, 50)
    for label, index in (("postgres", remote), ("folder", local), ("tantivy", pruning)):
        ms, hits = timed(lambda q, index=index: index.dense_search(q, 10), questions)
        found = [[i for i, _ in h] for h in hits]
        out[f"{label}_dense_recall@10"] = recall(found, truth)
        out[f"{label}_dense_p50_ms"] = percentile(ms, 50)
        ms, pruned = timed(lambda t, index=index: index.lexical_search(query_terms(t), 50), asked)
        out[f"{label}_bm25_p50_ms"] = percentile(ms, 50)
        if label == "postgres":  # the same ranking scoring every match: what pruning saves
            ms_all, full = timed(lambda t: remote.score_all(query_terms(t), 50), asked)
            out["postgres_bm25_unpruned_p50_ms"] = percentile(ms_all, 50)
            same = sum(
                [i for i, _ in a] == [i for i, _ in b] for a, b in zip(pruned, full, strict=True)
            )
            out["postgres_bm25_pruned_same_top50"] = f"{same}/{len(asked)}"
        ms, _ = timed(
            lambda t, index=index: retrieve(index, GivenVectors(), t, k=4, mode="hybrid"), asked
        )
        out[f"{label}_hybrid_p50_ms"] = percentile(ms, 50)
        out[f"{label}_hybrid_p95_ms"] = percentile(ms, 95)
    for index in (remote, local, pruning):
        index.close()
    out |= update_one_document(store, n, anchor, texts, first_vectors)
    return out


def update_one_document(
    store: Any, n: int, anchor: np.ndarray, texts: list[str], vectors_of_first: np.ndarray
) -> dict[str, Any]:
    """One document's 100 chunks replaced in the live version: a new version is a copy."""
    live = store.open("scale")
    rows = [(n + r[0], *r[1:]) for r in synthetic_rows(n, anchor, texts, 0, 100)]
    with store.lock("scale"):
        started = time.perf_counter()
        writer = store.writer("scale", live)  # copies the live rows
        copied = time.perf_counter()
        writer.remove_documents(["syn-0"])
        writer.add_chunks(rows, vectors_of_first)
        changed = time.perf_counter()
        writer.publish(manifest_for(n, vectors_of_first.shape[1]))
        done = time.perf_counter()
    live.close()
    return {
        "update_s": round(done - started, 1),
        "update_copy_live_s": round(copied - started, 1),
        "update_change_s": round(changed - copied, 2),
        "update_indexes_and_publish_s": round(done - changed, 1),
    }


def report(bulk: dict[str, Any]) -> None:
    b = bulk
    print(
        f"bulk load of {b['chunks']:,} chunks (vectors given): COPY {b['copy_chunks_per_s']:,.0f}"
        f" chunks/s against {b['row_by_row_chunks_per_s']:,.0f} row by row "
        f"({b['copy_chunks_per_s'] / b['row_by_row_chunks_per_s']:.0f}x); indexes + publish "
        f"{b['indexes_and_publish_s']} s, so {b['load_total_chunks_per_s']:,.0f} chunks/s in all"
        f" (folder store: {b['folder_build_s']} s with FTS5, {b['tantivy_build_s']} s with tantivy)"
    )
    for label in ("postgres", "folder", "tantivy"):
        print(
            f"  {label:>8}: dense recall@10 vs exact {b[f'{label}_dense_recall@10']}, dense p50 "
            f"{b[f'{label}_dense_p50_ms']} ms, lexical p50 {b[f'{label}_bm25_p50_ms']} ms, hybrid "
            f"p50/p95 {b[f'{label}_hybrid_p50_ms']}/{b[f'{label}_hybrid_p95_ms']} ms"
        )
    print(
        f"  PostgreSQL HNSW with ef_search 600 / 1000: recall@10 "
        f"{b['postgres_ef600_dense_recall@10']} / {b['postgres_ef1000_dense_recall@10']}, p50 "
        f"{b['postgres_ef600_dense_p50_ms']} / {b['postgres_ef1000_dense_p50_ms']} ms"
    )
    print(
        f"  PostgreSQL word search scoring every match: p50 {b['postgres_bm25_unpruned_p50_ms']} "
        f"ms, {b['postgres_bm25_unpruned_p50_ms'] / b['postgres_bm25_p50_ms']:.1f}x the pruned "
        f"search's; same top 50 for {b['postgres_bm25_pruned_same_top50']} questions"
    )
    print(
        f"  PostgreSQL, one document (100 chunks) replaced: {b['update_s']} s: copying the live "
        f"rows {b['update_copy_live_s']} s, the change {b['update_change_s']} s, indexes and "
        f"publish {b['update_indexes_and_publish_s']} s"
    )
    print(
        f"  hybrid p50 PostgreSQL / folder (FTS5): "
        f"{b['postgres_hybrid_p50_ms'] / b['folder_hybrid_p50_ms']:.1f}x; folder (FTS5) / folder "
        f"(tantivy): {b['folder_hybrid_p50_ms'] / b['tantivy_hybrid_p50_ms']:.1f}x"
    )


def run(quick: bool = False, size: int | None = None, recall: bool = True) -> dict[str, Any]:
    server = start_server()
    try:
        dsn = server.get_uri()
        out: dict[str, Any] = {}
        if recall:
            out["covidqa"], real = covidqa_recall(dsn, limit=100 if quick else None)
        else:
            real = real_sample(chunks=150 if quick else 3000, questions=60 if quick else 240)
        with tempfile.TemporaryDirectory(prefix="rag-bench-pg-") as tmp:
            out["bulk"] = bulk_and_search(
                dsn, size or (QUICK_SIZE if quick else SIZE), real, Path(tmp)
            )
        report(out["bulk"])
        out["targets"] = targets(out)
        return out
    finally:
        server.cleanup()


def targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    from bench.scale import target

    b = out["bulk"]
    at = f"at {b['chunks']:,} chunks"
    found = [
        target("COPY into PostgreSQL (chunks/s)", b["copy_chunks_per_s"], ">= 5000", 5000),
        target(
            "bulk load with GIN + HNSW + publish (chunks/s)",
            b["load_total_chunks_per_s"],
            ">= 5000",
            5000,
        ),
        target(f"HNSW recall@10 vs exact {at}", b["postgres_dense_recall@10"], ">= 0.95", 0.95),
        target(f"PostgreSQL dense p50 {at} (ms)", b["postgres_dense_p50_ms"], "< 10", 10, True),
        target(f"PostgreSQL hybrid p50 {at} (ms)", b["postgres_hybrid_p50_ms"], "< 50", 50, True),
        target(
            f"folder + tantivy hybrid p50 {at} (ms)", b["tantivy_hybrid_p50_ms"], "< 20", 20, True
        ),
    ]
    if "covidqa" in out:
        recall = out["covidqa"]["postgres_hybrid_recall"]
        found.append(target("covidqa-dev hybrid recall@5 in PostgreSQL", recall, ">= 0.914", 0.914))
        recall = out["covidqa"]["tantivy_hybrid_recall"]
        found.append(target("covidqa-dev hybrid recall@5, tantivy", recall, ">= 0.914", 0.914))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int)
    parser.add_argument("--no-recall", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.size, not args.no_recall), indent=1))


if __name__ == "__main__":
    main()
