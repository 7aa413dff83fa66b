"""Retrieval quality against the gold document: recall@k and MRR@10 per retrieval mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.config import RetrievalMode, Settings
from rag.embeddings import Embedder
from rag.evaluation.data import Question, load_dataset
from rag.progress import progress
from rag.retrieval import retrieve
from rag.store import Index


def recall_at_k(ranked_doc_ids: Sequence[str], gold: str, k: int) -> float:
    """1.0 when the gold document is among the first k retrieved, else 0.0."""
    return 1.0 if gold in ranked_doc_ids[:k] else 0.0


def reciprocal_rank(ranked_doc_ids: Sequence[str], gold: str, cutoff: int = 10) -> float:
    """1/rank of the gold document within the cutoff, 0.0 if absent."""
    for rank, doc_id in enumerate(ranked_doc_ids[:cutoff], start=1):
        if doc_id == gold:
            return 1.0 / rank
    return 0.0


def unique_in_order(items: Sequence[str]) -> list[str]:
    """Several chunks of one document count once, at the rank of the first."""
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class RetrievalScore:
    mode: str
    k: int
    questions: int
    recall: float
    mrr: float


def score_retrieval(
    index: Index,
    embedder: Embedder,
    questions: list[Question],
    *,
    mode: RetrievalMode,
    k: int = 5,
    settings: Settings | None = None,
    show_progress: bool = True,
) -> RetrievalScore:
    """Recall@k: the gold document is among the k passages the generator would see.

    MRR@10 ranks documents by their first chunk among the top 10 passages.
    """
    s = settings or Settings()
    scored = [q for q in questions if q.doc_id]
    recall = mrr = 0.0
    depth = max(k, 10)
    for q in progress(scored, total=len(scored), desc=f"retrieval {mode}", show=show_progress):
        hits = retrieve(
            index,
            embedder,
            q.question,
            k=depth,
            mode=mode,
            candidates=s.candidates,
            rrf_k=s.rrf_k,
            dense_weight=s.dense_weight,
        )
        ranked = [p.doc_id for p in hits]
        recall += recall_at_k(ranked, q.doc_id, k)
        mrr += reciprocal_rank(unique_in_order(ranked), q.doc_id)
    n = max(len(scored), 1)
    return RetrievalScore(mode, k, len(scored), recall / n, mrr / n)


def evaluate_retrieval(
    data: Path,
    settings: Settings,
    *,
    modes: list[str],
    k: int = 5,
    limit: int | None = None,
    quiet: bool = False,
) -> list[RetrievalScore]:
    """Index the dataset's corpus (incrementally, as `<dataset>-corpus`) and score each mode."""
    from rag.embeddings import load_embedder
    from rag.indexing import index_corpus
    from rag.store import load_index

    dataset = load_dataset(data)
    embedder = load_embedder(settings)
    name = f"{dataset.name}-corpus"
    index_corpus(dataset.corpus, name, settings, embedder=embedder, show_progress=not quiet)
    index = load_index(settings, name)
    try:
        return [
            score_retrieval(
                index,
                embedder,
                dataset.test[:limit] if limit else dataset.test,
                mode=mode,
                k=k,
                settings=settings,
                show_progress=not quiet,
            )
            for mode in modes
        ]
    finally:
        index.close()
