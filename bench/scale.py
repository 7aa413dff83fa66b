"""Retrieval at scale (issue 5, item 3): exact FAISS against the IVF index the store picks by size.

For each size (10k, 100k, 1M chunks; 5k and 20k in quick mode) this builds an index through the
real write path (`LocalWriter`: SQLite rows + FTS5, vectors, publish), then measures, each in
a fresh process so that memory figures do not mix:

- the served index as `rag` loads it (`load_index`: checksums, memory-mapped vectors, SQLite on
  disk): load time, resident memory, p50/p95 of the dense search and of the whole hybrid
  retrieval (`retrieve`, everything but embedding the question);
- exact search (`IndexIDMap2(IndexFlatIP)`) and IVF (`IVF<nlist>,SQfp16`) over the same vectors:
  p50/p95 of the vector search and recall@10 of IVF against exact.

Vectors. Real chunks stop early here: embedding runs at tens of chunks per second on two cores
(printed below), so a million real chunks would take hours. The vectors are therefore
synthetic but anchored in real ones: a real chunk embedding (all-MiniLM-L6-v2, COVID-QA
articles) plus Gaussian noise drawn with the covariance of the real embeddings, scaled by
SPREAD, then normalised. SPREAD = 0.5 is chosen so that at 100k chunks the median cosine of a
chunk to its nearest neighbour (0.88) and of a real question to its best chunk (0.56) match
the real corpus; uniform noise would make every neighbour equally far and tell nothing. The
queries are real COVID-QA questions; each synthetic chunk carries its anchor's text, so the
lexical half of hybrid retrieval searches real text.

Run alone with `python -m bench.scale [--quick]`; `bench/run.py` calls `run(quick)`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "covidqa-dev"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rag-bench"
SPREAD = 0.5
K = 10
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (5_000, 20_000)


def real_sample(chunks: int, questions: int) -> dict[str, Any]:
    """Real chunk texts and embeddings and real question embeddings (cached by content)."""
    from rag.config import Settings
    from rag.documents import load_corpus
    from rag.embeddings import load_embedder
    from rag.indexing import make_chunker

    corpus = load_corpus(DATA / "corpus.jsonl")
    asked = [json.loads(line)["question"] for line in (DATA / "test.jsonl").open()][:questions]
    key = hashlib.sha256(
        json.dumps([[d.hash for d in corpus.documents], asked, chunks]).encode()
    ).hexdigest()[:16]
    cached = CACHE / f"real-{key}.npz"
    if cached.is_file():
        data = np.load(cached)
        return {
            "texts": json.loads(str(data["texts"])),
            "questions": asked,
            "vectors": data["vectors"],
            "question_vectors": data["question_vectors"],
            "chunks_per_second": float(data["chunks_per_second"]),
            "cached": True,
        }
    settings = Settings()
    embedder = load_embedder(settings)
    chunker = make_chunker(embedder, settings)
    pieces = [c for doc in corpus.documents for c in chunker.split(doc)][:chunks]
    started = time.perf_counter()
    vectors = embedder.encode([c.embed_text for c in pieces])
    rate = len(pieces) / (time.perf_counter() - started)
    texts = [c.text for c in pieces]
    question_vectors = embedder.encode(asked)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(
        cached,
        texts=json.dumps(texts),
        vectors=vectors,
        question_vectors=question_vectors,
        chunks_per_second=rate,
    )
    return {
        "texts": texts,
        "questions": asked,
        "vectors": vectors,
        "question_vectors": question_vectors,
        "chunks_per_second": rate,
        "cached": False,
    }


class Synthesizer:
    """Real anchors plus noise shaped like the real embeddings' covariance, normalised."""

    def __init__(self, anchors: np.ndarray, spread: float = SPREAD, seed: int = 0) -> None:
        self.anchors = anchors
        centred = anchors - anchors.mean(axis=0)
        values, basis = np.linalg.eigh(np.cov(centred.T))
        self.scale = np.sqrt(np.clip(values, 0, None)).astype(np.float32) * spread
        self.basis = basis.astype(np.float32)
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, anchor of each), in blocks so that memory stays at the output's size."""
        dimension = self.anchors.shape[1]
        out = np.empty((n, dimension), dtype=np.float32)
        which = self.rng.integers(len(self.anchors), size=n)
        for start in range(0, n, 100_000):
            stop = min(n, start + 100_000)
            noise = self.rng.standard_normal((stop - start, dimension), dtype=np.float32)
            block = self.anchors[which[start:stop]] + (noise * self.scale) @ self.basis.T
            out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out, which


def nearest_cosine(queries: np.ndarray, vectors: np.ndarray, skip_self: bool = False) -> float:
    """Median cosine of each query to its nearest vector (the realism check above)."""
    import faiss

    scores, _ = faiss.knn(queries, vectors, 2, faiss.METRIC_INNER_PRODUCT)
    return float(np.median(scores[:, 1] if skip_self else scores[:, 0]))


def build_index(
    root: Path, vectors: np.ndarray, anchor: np.ndarray, texts: list[str]
) -> dict[str, Any]:
    """Write a version through the store's own writer; the vector index is its choice."""
    from rag.store import LocalWriter, now, writer_lock

    directory = root / "scale"
    n, dimension = vectors.shape
    started = time.perf_counter()
    with writer_lock(directory):
        writer = LocalWriter(directory, None)
        for start in range(0, n, 20_000):
            stop = min(n, start + 20_000)
            rows = [
                (i, f"syn-{i // 100}", i % 100, 0, len(texts[a]), f"chunk {i}", texts[a])
                for i, a in zip(range(start, stop), anchor[start:stop].tolist(), strict=True)
            ]
            writer.add_chunks(rows, vectors[start:stop])
        rows_done = time.perf_counter()
        documents = {f"syn-{d}": {"hash": "", "title": "", "chunks": 100} for d in range(n // 100)}
        manifest = {
            "name": "scale",
            "embedder": {"name": "synthetic", "dimension": dimension, "max_seq_length": 256},
            "chunking": {"chunk_size": 200, "chunk_overlap": 32},
            "counts": {"documents": len(documents), "chunks": n},
            "documents": documents,
            "created_at": now(),
            "updated_at": now(),
        }
        version = writer.publish(manifest)
    done = time.perf_counter()
    path = directory / version
    entry = json.loads((path / "manifest.json").read_text())["vectors"]
    return {
        "chosen": entry["kind"],
        "factory": entry["factory"],
        "path": str(path),
        "build_s": round(done - started, 1),
        "rows_and_fts_s": round(rows_done - started, 1),
        "publish_s": round(done - rows_done, 1),
        "disk_mb": {f.name: round(f.stat().st_size / 1e6, 1) for f in path.iterdir()},
    }


def other_kind(work: Path, chosen: str, vectors: np.ndarray) -> dict[str, Any]:
    """The vectors file of the kind the store did not choose, for the side-by-side figures."""
    import faiss

    from rag.store.faiss_vectors import VECTORS, FaissBackend, describe, exact_index

    ids = np.arange(len(vectors), dtype=np.int64)
    started = time.perf_counter()
    if chosen == "exact":
        index = FaissBackend().train_ivf(ids, vectors)
    else:
        index = exact_index(vectors.shape[1])
        index.add_with_ids(vectors, ids)
    seconds = time.perf_counter() - started
    folder = work / ("ivf" if chosen == "exact" else "exact")
    folder.mkdir()
    faiss.write_index(index, str(folder / VECTORS))
    return {"path": str(folder), "build_s": round(seconds, 1)} | describe(index)


def measure(args: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: load, warm up on other questions, then time the measured ones.

    FAISS runs single-threaded here: with OpenMP on two busy cores, one exact search took 2-4x
    longer than on one thread (IVF searches of one query do not fork), and a server answering
    concurrent requests has no spare core to give one search anyway.
    """
    import faiss

    from rag.retrieval import retrieve
    from rag.store import load_index
    from rag.store.faiss_vectors import FaissBackend

    faiss.omp_set_num_threads(1)
    queries = np.load(args["queries"])
    texts = json.loads(Path(args["texts"]).read_text())
    warm = np.load(args["warm"])
    memory_before = memory()
    started = time.perf_counter()
    if args["what"] == "index":
        index = load_index(Path(args["root"]), "scale")
        search = index.dense_search
    else:
        index = FaissBackend().open(Path(args["path"]), {})
        search = index.search
    load_s = time.perf_counter() - started
    loaded = memory()
    for vector in warm:
        search(vector, K)
    dense_ms, hits = [], []
    for vector in queries:
        t = time.perf_counter()
        found = search(vector, K)
        dense_ms.append((time.perf_counter() - t) * 1000)
        hits.append([i for i, _ in found])
    out: dict[str, Any] = {
        "load_s": round(load_s, 2),
        "dense_p50_ms": percentile(dense_ms, 50),
        "dense_p95_ms": percentile(dense_ms, 95),
        "hits": hits,
    }
    if args["what"] == "index":
        from rag.retrieval import query_terms

        lexical_ms = []
        for text in texts:
            t = time.perf_counter()
            index.lexical_search(query_terms(text), 50)
            lexical_ms.append((time.perf_counter() - t) * 1000)
        out |= {"lexical_p50_ms": percentile(lexical_ms, 50)}
        out |= {"lexical_p95_ms": percentile(lexical_ms, 95)}
        by_text = dict(zip(texts, queries, strict=True))

        class GivenVectors:  # the question's vector was computed once, outside the timing
            def encode(self, batch: list[str]) -> np.ndarray:
                return np.stack([by_text[t] for t in batch])

        hybrid_ms = []
        for text in texts:
            t = time.perf_counter()
            retrieve(index, GivenVectors(), text, k=4, mode="hybrid")
            hybrid_ms.append((time.perf_counter() - t) * 1000)
        out |= {"hybrid_p50_ms": percentile(hybrid_ms, 50)}
        out |= {"hybrid_p95_ms": percentile(hybrid_ms, 95)}
    after = memory()
    out["memory_mb"] = {"start": memory_before, "loaded": loaded, "served": after}
    return out


def memory() -> dict[str, float]:
    """Resident memory of this process in MB: total, anonymous, file-backed (mmap), peak."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "peak"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            out[fields[key]] = round(int(value.split()[0]) / 1024, 1)
    return out


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def in_child(args: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--measure", json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    scores = [len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth, strict=True)]
    return round(float(np.mean(scores)), 4)


def one_size(
    n: int, synth: Synthesizer, real: dict[str, Any], files: dict[str, str], work: Path
) -> dict[str, Any]:
    work.mkdir(parents=True)
    started = time.perf_counter()
    vectors, anchor = synth.sample(n)
    generate_s = time.perf_counter() - started
    built = build_index(work / "indexes", vectors, anchor, real["texts"])
    other = other_kind(work, built["chosen"], vectors)
    del vectors
    served = in_child({"what": "index", "root": str(work / "indexes"), **files})
    alone = in_child({"what": "vectors", "path": other["path"], **files})
    chosen = in_child({"what": "vectors", "path": built["path"], **files})
    exact, ivf = (chosen, alone) if built["chosen"] == "exact" else (alone, chosen)
    row = {
        "chunks": n,
        "generate_s": round(generate_s, 1),
        **{k: v for k, v in built.items() if k != "path"},
        "other_kind_build_s": other["build_s"],
        "ivf_factory": other["factory"] if built["chosen"] == "exact" else built["factory"],
        "served": {k: v for k, v in served.items() if k != "hits"},
        "exact": {k: exact[k] for k in ("dense_p50_ms", "dense_p95_ms", "memory_mb")},
        "ivf": {k: ivf[k] for k in ("dense_p50_ms", "dense_p95_ms", "memory_mb")},
    }
    row["ivf"]["recall@10"] = recall(ivf["hits"], exact["hits"])
    row["exact_over_ivf_p50"] = round(exact["dense_p50_ms"] / ivf["dense_p50_ms"], 1)
    shutil.rmtree(work, ignore_errors=True)
    return row


def report(row: dict[str, Any]) -> None:
    s, e, i = row["served"], row["exact"], row["ivf"]
    print(
        f"{row['chunks']:>9,} chunks  store chose {row['chosen']} ({row['factory']}), "
        f"built in {row['build_s']} s (rows+FTS5 {row['rows_and_fts_s']} s, "
        f"vectors+publish {row['publish_s']} s); the other kind {row['other_kind_build_s']} s"
    )
    print(
        f"{'':>17}vector search p50/p95: exact {e['dense_p50_ms']}/{e['dense_p95_ms']} ms, "
        f"IVF {i['dense_p50_ms']}/{i['dense_p95_ms']} ms (exact/IVF {row['exact_over_ivf_p50']}x),"
        f" IVF recall@10 vs exact {i['recall@10']}"
    )
    mem = s["memory_mb"]["served"]
    print(
        f"{'':>17}served ({row['chosen']}): load {s['load_s']} s, dense search p50 "
        f"{s['dense_p50_ms']} ms, BM25 p50/p95 {s['lexical_p50_ms']}/{s['lexical_p95_ms']} ms, "
        f"hybrid retrieval p50/p95 {s['hybrid_p50_ms']}/{s['hybrid_p95_ms']} ms, "
        f"RSS {mem['rss']} MB (anon {mem['anon']}, file-backed {mem['file']}, peak {mem['peak']})"
    )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["chunks"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for kind, style in (("exact", "o-"), ("ivf", "s-")):
        left.plot(sizes, [r[kind]["dense_p50_ms"] for r in rows], style, label=f"{kind} p50")
        left.plot(
            sizes, [r[kind]["dense_p95_ms"] for r in rows], style, alpha=0.4, label=f"{kind} p95"
        )
        right.plot(
            sizes,
            [r[kind]["memory_mb"]["served"]["rss"] for r in rows],
            style,
            label=f"{kind}: vectors alone",
        )
    right.plot(
        sizes,
        [r["served"]["memory_mb"]["served"]["rss"] for r in rows],
        "^-",
        label="served index (store's choice + SQLite)",
    )
    left.axhline(10, color="grey", linestyle=":", label="10 ms target")
    right.axhline(2048, color="grey", linestyle=":", label="2 GB target")
    for axis, title, unit in (
        (left, "vector search latency", "ms"),
        (right, "resident memory", "MB"),
    ):
        axis.set(xscale="log", yscale="log", xlabel="chunks", ylabel=unit, title=title)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every size; print each figure with its ratio; return them as a JSON-able dict."""
    sizes = QUICK_SIZES if quick else SIZES
    real = real_sample(chunks=150 if quick else 3000, questions=60 if quick else 240)
    measured, warm = real["question_vectors"][:-20], real["question_vectors"][-20:]
    anchors = real["vectors"]
    synth = Synthesizer(anchors)
    check, _ = Synthesizer(anchors, seed=1).sample(min(100_000, sizes[-1]))
    realism = {
        "real_chunks": len(anchors),
        "real_chunk_nn_cosine": nearest_cosine(anchors[:500], anchors, skip_self=True),
        "synthetic_chunk_nn_cosine": nearest_cosine(check[:500], check, skip_self=True),
        "real_question_best_cosine": nearest_cosine(measured, anchors),
        "synthetic_question_best_cosine": nearest_cosine(measured, check),
        "synthetic_check_size": len(check),
    }
    del check
    print(
        f"real chunks: {len(anchors)} embedded at {real['chunks_per_second']:.1f} chunks/s"
        f"{' (cached)' if real['cached'] else ''}; a million would take "
        f"{1e6 / real['chunks_per_second'] / 3600:.1f} h here, hence synthetic vectors"
    )
    print(
        "realism (median cosine, real vs synthetic at {synthetic_check_size:,}): chunk to its "
        "nearest chunk {real_chunk_nn_cosine:.3f} vs {synthetic_chunk_nn_cosine:.3f}; question "
        "to its best chunk {real_question_best_cosine:.3f} vs "
        "{synthetic_question_best_cosine:.3f}".format(**realism)
    )
    with tempfile.TemporaryDirectory(prefix="rag-scale-") as tmp:
        work = Path(tmp)
        files = {"queries": str(work / "q.npy"), "warm": str(work / "w.npy")}
        files["texts"] = str(work / "q.json")
        np.save(files["queries"], measured)
        np.save(files["warm"], warm)
        Path(files["texts"]).write_text(json.dumps(real["questions"][: len(measured)]))
        rows = []
        for n in sizes:
            rows.append(one_size(n, synth, real, files, work / str(n)))
            report(rows[-1])
    top = rows[-1]
    served = top["served"]
    at = f"at {top['chunks']:,} chunks"
    targets = [
        target(f"dense retrieval p50 {at} (ms)", served["dense_p50_ms"], "< 10", 10, below=True),
        target(f"IVF recall@10 vs exact {at}", top["ivf"]["recall@10"], ">= 0.95", 0.95),
        target(
            f"served RSS {at}, chunk store included (MB)",
            served["memory_mb"]["served"]["rss"],
            "< 2048",
            2048,
            below=True,
        ),
        target(f"hybrid retrieval p50 {at} (ms)", served["hybrid_p50_ms"], "< 10", 10, below=True),
    ]
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores during the run (shared machine)")
    png = REPO / "bench" / "results-scale.png"
    plot(rows, png)

    def series(pick) -> list[list[float]]:
        return [[r["chunks"], pick(r)] for r in rows]

    return {
        "sizes": rows,
        "realism": realism,
        "real_chunks_per_second": round(real["chunks_per_second"], 1),
        "targets": targets,
        "queries": len(measured),
        "load_average": round(load, 1),
        "synthetic": f"real anchor + {SPREAD} x noise with the real covariance, normalised",
        "png": str(png.relative_to(REPO)),
        "plot": {
            "kind": "lines",
            "title": "retrieval p50 at scale",
            "xlabel": "chunks",
            "ylabel": "ms",
            "xscale": "log",
            "yscale": "log",
            "series": {
                "exact search": series(lambda r: r["exact"]["dense_p50_ms"]),
                "IVF search": series(lambda r: r["ivf"]["dense_p50_ms"]),
                "hybrid (served)": series(lambda r: r["served"]["hybrid_p50_ms"]),
            },
        },
        "plots": [
            {
                "kind": "lines",
                "title": "resident memory at scale",
                "xlabel": "chunks",
                "ylabel": "MB",
                "xscale": "log",
                "series": {
                    "exact vectors": series(lambda r: r["exact"]["memory_mb"]["served"]["rss"]),
                    "IVF vectors": series(lambda r: r["ivf"]["memory_mb"]["served"]["rss"]),
                    "served index": series(lambda r: r["served"]["memory_mb"]["served"]["rss"]),
                },
            }
        ],
    }


def target(name: str, value: float, goal: str, bound: float, below: bool = False) -> dict:
    met = value < bound if below else value >= bound
    return {"name": name, "value": value, "goal": goal, "met": bool(met)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    print(json.dumps(run(args.quick), indent=1))


if __name__ == "__main__":
    main()
