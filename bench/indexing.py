"""Item 1: indexing throughput on the same chunks, and the optional faster embedding path.

(a) bare `SentenceTransformer.encode` (the floor), (b) the plain LangChain path
(`FAISS.from_documents` with `HuggingFaceEmbeddings`), (c) `rag index` end to end (load,
chunk, embed, write), (d) `rag index` with RAG_EMBED_BACKEND=openvino and the OpenVINO
encoder's bare encode, with recall@10 of its vectors against the exact fp32 ones, (e) the same
in bf16 (RAG_EMBED_PRECISION=bf16), the fast path the targets are judged on.
Model loading is timed in (a), (b) and (c) alike; encode-only figures are printed too.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.measure import PYTHON_REFERENCE, Target, quiet, ratio, stopwatch

QUICK_DOCS = 12
QUERIES = 200


def corpus_folder(quick: bool, scratch: Path) -> Path:
    """python-reference (79 topics, ~850 chunks), or its first few topics for --quick."""
    docs = sorted((PYTHON_REFERENCE / "docs").glob("*.md"))
    if not docs:
        raise SystemExit("corpora/python-reference is empty: run `make corpus` first")
    if not quick:
        return PYTHON_REFERENCE / "docs"
    folder = scratch / "quick-corpus"
    folder.mkdir()
    for path in docs[:QUICK_DOCS]:
        (folder / path.name).write_text(path.read_text())
    return folder


def recall_at_10(exact_docs, exact_queries, fast_docs, fast_queries) -> float:
    import faiss

    def top10(docs, queries):
        index = faiss.IndexFlatIP(docs.shape[1])
        index.add(docs)
        return index.search(queries, 10)[1]

    want, got = top10(exact_docs, exact_queries), top10(fast_docs, fast_queries)
    return float(np.mean([len(set(w) & set(g)) / 10 for w, g in zip(want, got, strict=True)]))


def run(quick: bool) -> dict:
    quiet()
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document as LCDocument
    from langchain_huggingface import HuggingFaceEmbeddings
    from sentence_transformers import SentenceTransformer

    from rag.config import Settings
    from rag.documents import load_corpus
    from rag.embeddings import load_embedder, resolve_embedder
    from rag.indexing import index_corpus, make_chunker

    scratch = Path(tempfile.mkdtemp(prefix="rag-bench-indexing-"))
    folder = corpus_folder(quick, scratch)
    _, model_path = resolve_embedder(Settings().embedder)
    exact = load_embedder(Settings())  # also warms imports and the page cache for everyone
    chunks = [
        c for d in load_corpus(folder).documents for c in make_chunker(exact, Settings()).split(d)
    ]
    texts = [c.embed_text for c in chunks]
    exact.encode(texts[:16])
    n = len(texts)

    with stopwatch() as bare_total:
        model = SentenceTransformer(model_path, device="cpu")
        with stopwatch() as bare_encode:
            floor = model.encode(texts, batch_size=64, normalize_embeddings=True)
    with stopwatch() as lc_total:
        embeddings = HuggingFaceEmbeddings(
            model_name=model_path,
            model_kwargs={"device": "cpu"},
            encode_kwargs={"normalize_embeddings": True},
        )
        FAISS.from_documents([LCDocument(page_content=t) for t in texts], embeddings)
    rag_settings = Settings(index_root=scratch / "exact")
    with stopwatch() as rag_total:
        report = index_corpus(folder, "bench", rag_settings, rebuild=True, show_progress=False)
    assert report.chunks == n, (report.chunks, n)

    fast_settings = Settings(index_root=scratch / "fast", embed_backend="openvino")
    with stopwatch() as convert:  # one-time: export to OpenVINO, kept in the model cache
        fast = load_embedder(fast_settings)
    with stopwatch() as fast_encode:
        fast_vectors = fast.encode(texts)
    with stopwatch() as fast_rag_total:
        index_corpus(folder, "bench", fast_settings, rebuild=True, show_progress=False)
    bf16_settings = fast_settings.model_copy(
        update={"index_root": scratch / "bf16", "embed_precision": "bf16"}
    )
    bf16 = load_embedder(bf16_settings)
    with stopwatch() as bf16_encode:
        bf16_vectors = bf16.encode(texts)
    with stopwatch() as bf16_rag_total:
        index_corpus(folder, "bench", bf16_settings, rebuild=True, show_progress=False)
    queries = [" ".join(c.text.split()[:12]) for c in chunks[:: max(1, n // QUERIES)]]
    exact_queries = exact.encode(queries)
    recall_f32 = recall_at_10(floor, exact_queries, fast_vectors, fast.encode(queries))
    recall = recall_at_10(floor, exact_queries, bf16_vectors, bf16.encode(queries))

    t = {
        "bare_total_s": bare_total(),
        "bare_encode_s": bare_encode(),
        "langchain_total_s": lc_total(),
        "rag_index_s": rag_total(),
        "openvino_convert_s": convert(),
        "openvino_encode_s": fast_encode(),
        "rag_index_openvino_s": fast_rag_total(),
        "openvino_bf16_encode_s": bf16_encode(),
        "rag_index_openvino_bf16_s": bf16_rag_total(),
    }
    overhead = ratio(t["rag_index_s"], t["bare_total_s"]) - 1
    speedup_vs_lc = ratio(t["langchain_total_s"], t["rag_index_s"])
    f32_speedup = ratio(t["bare_encode_s"], t["openvino_encode_s"])
    f32_rag_vs_lc = ratio(t["langchain_total_s"], t["rag_index_openvino_s"])
    fast_speedup = ratio(t["bare_encode_s"], t["openvino_bf16_encode_s"])
    fast_rag_vs_lc = ratio(t["langchain_total_s"], t["rag_index_openvino_bf16_s"])
    targets = [
        Target(
            "rag index overhead over bare encode (end to end)",
            overhead,
            "<= 0.10",
            overhead <= 0.10,
        ),
        Target(
            "rag index speed-up over plain LangChain", speedup_vs_lc, ">= 1.5", speedup_vs_lc >= 1.5
        ),
        Target(
            "fast path (OpenVINO bf16) speed-up over bare encode",
            fast_speedup,
            ">= 2.0",
            fast_speedup >= 2.0,
        ),
        Target(
            "fast path (OpenVINO bf16) recall@10 vs exact fp32", recall, ">= 0.99", recall >= 0.99
        ),
        Target(
            "rag index with the fast path over plain LangChain",
            fast_rag_vs_lc,
            ">= 1.5",
            fast_rag_vs_lc >= 1.5,
        ),
    ]
    figures = [
        f"corpus: {folder.name if quick else 'python-reference'}, {report.documents} documents, "
        f"{n} chunks",
        f"(a) bare SentenceTransformer.encode: {t['bare_total_s']:.1f} s with model load "
        f"({n / t['bare_total_s']:.1f} chunks/s), encode alone {t['bare_encode_s']:.1f} s "
        f"({n / t['bare_encode_s']:.1f} chunks/s)",
        f"(b) LangChain FAISS.from_documents + HuggingFaceEmbeddings: "
        f"{t['langchain_total_s']:.1f} s "
        f"({n / t['langchain_total_s']:.1f} chunks/s)",
        f"(c) rag index (load, chunk, embed, write): {t['rag_index_s']:.1f} s "
        f"({n / t['rag_index_s']:.1f} chunks/s): {overhead:+.1%} vs (a), "
        f"{speedup_vs_lc:.2f}x (b)",
        f"(d) OpenVINO fp32 encode: {t['openvino_encode_s']:.1f} s "
        f"({n / t['openvino_encode_s']:.1f} chunks/s), {f32_speedup:.2f}x (a)'s encode, "
        f"recall@10 {recall_f32:.3f} over {len(queries)} queries; rag index with it "
        f"{t['rag_index_openvino_s']:.1f} s ({f32_rag_vs_lc:.2f}x (b)); one-time conversion "
        f"{t['openvino_convert_s']:.1f} s",
        f"(e) OpenVINO bf16 encode: {t['openvino_bf16_encode_s']:.1f} s "
        f"({n / t['openvino_bf16_encode_s']:.1f} chunks/s), {fast_speedup:.2f}x (a)'s encode, "
        f"recall@10 {recall:.3f}; rag index with it {t['rag_index_openvino_bf16_s']:.1f} s "
        f"({fast_rag_vs_lc:.2f}x (b))",
    ]
    rates = {
        "(a) bare": n / t["bare_total_s"],
        "(b) LangChain": n / t["langchain_total_s"],
        "(c) rag index": n / t["rag_index_s"],
        "rag index\n+OpenVINO": n / t["rag_index_openvino_s"],
        "rag index\n+OpenVINO bf16": n / t["rag_index_openvino_bf16_s"],
    }
    return {
        "chunks": n,
        "documents": report.documents,
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "recall_at_10": round(recall, 4),
        "recall_at_10_openvino_f32": round(recall_f32, 4),
        "figures": figures,
        "targets": [x.as_dict() for x in targets],
        "plot": {
            "kind": "bar",
            "title": "Indexing throughput",
            "ylabel": "chunks/s",
            "bars": {k: round(v, 2) for k, v in rates.items()},
        },
    }
