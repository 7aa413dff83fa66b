"""Dense (FAISS), lexical (SQLite FTS5 BM25) and hybrid (reciprocal rank fusion) retrieval.

`IndexRetriever` is a LangChain `BaseRetriever`, so it drops into any LangChain chain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from rag.config import RetrievalMode
from rag.embeddings import Embedder
from rag.errors import InputError
from rag.store import Index

STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have how i if in
    into is it its may might most of on or should so such than that the their them then there
    these they this to was were what when where which who whom whose why will with would you your
    about after all also any because before being between both each more other over same some
    under until up very""".split()
)


FILTER_FIELDS = frozenset({"doc_id", "title"})


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with the score it was ranked by and its dense similarity."""

    chunk_id: int
    doc_id: str
    title: str
    chunk: int
    start: int
    end: int
    text: str
    score: float
    similarity: float


def query_terms(text: str) -> list[str]:
    """Words worth matching lexically: lower-cased, stopwords dropped, order kept, no repeats."""
    seen: dict[str, None] = {}
    for word in re.findall(r"\w+", text.lower()):
        if word not in STOPWORDS and (len(word) > 1 or word.isdigit()):
            seen.setdefault(word, None)
    return list(seen)


def reciprocal_rank_fusion(
    rankings: list[list[int]], k: int = 60, weights: list[float] | None = None
) -> list[tuple[int, float]]:
    """Fuse ranked id lists: score(id) = sum over lists of weight / (k + rank), rank from 1."""
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def retrieve(
    index: Index,
    embedder: Embedder,
    query: str,
    *,
    k: int = 4,
    mode: RetrievalMode = "hybrid",
    candidates: int = 50,
    rrf_k: int = 10,
    dense_weight: float = 0.5,
    where: dict[str, str] | None = None,
    vector: np.ndarray | None = None,
) -> list[Passage]:
    """The k best passages for a query, best first; `where` keeps chunks whose doc_id/title
    equal the given values (searching deeper so that k can still be filled). `vector` is the
    query's embedding when the caller has it already."""
    if not query.strip():
        raise InputError("the query is empty")
    unknown = set(where or {}) - FILTER_FIELDS
    if unknown:
        raise InputError(f"cannot filter on {sorted(unknown)}: use {sorted(FILTER_FIELDS)}")
    if vector is None:
        vector = embedder.encode([query])[0]
    depth = max(candidates, k) * (10 if where else 1)
    wanted = depth if where else k
    if mode == "dense":
        ranked = index.dense_search(vector, wanted)
    elif mode == "lexical":
        ranked = index.lexical_search(query_terms(query), wanted)
    elif mode == "hybrid":
        dense = [i for i, _ in index.dense_search(vector, depth)]
        lexical = [i for i, _ in index.lexical_search(query_terms(query), depth)]
        ranked = reciprocal_rank_fusion([dense, lexical], rrf_k, [dense_weight, 1.0])[:wanted]
    else:
        raise InputError(f"unknown retrieval mode {mode!r}: use dense, lexical or hybrid")
    chunks = index.chunks([i for i, _ in ranked])
    if where:
        keep = {i for i, c in chunks.items() if all(getattr(c, f) == v for f, v in where.items())}
        ranked = [(i, score) for i, score in ranked if i in keep]
    ranked = ranked[:k]
    ids = [i for i, _ in ranked]
    similarity = index.similarity(vector, ids)
    return [
        Passage(
            chunk_id=i,
            doc_id=chunks[i].doc_id,
            title=chunks[i].title,
            chunk=chunks[i].chunk_no,
            start=chunks[i].start,
            end=chunks[i].end,
            text=chunks[i].text,
            score=score,
            similarity=similarity[i],
        )
        for i, score in ranked
        if i in chunks
    ]


class IndexRetriever(BaseRetriever):
    """LangChain retriever over a loaded index; metadata carries doc id, chunk and scores."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any
    embedder: Any
    k: int = Field(4, ge=1)
    mode: RetrievalMode = "hybrid"
    candidates: int = 50
    rrf_k: int = 10
    dense_weight: float = 0.5
    where: dict[str, str] | None = None

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
    ) -> list[LCDocument]:
        """`invoke(query, k=1)` (LangChain's convention) overrides k, mode or where for one call."""
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise InputError(f"k must be a positive integer, not {k!r}")
        passages = retrieve(
            self.index,
            self.embedder,
            query,
            k=k or self.k,
            mode=mode or self.mode,
            candidates=self.candidates,
            rrf_k=self.rrf_k,
            dense_weight=self.dense_weight,
            where=self.where if where is None else where,
        )
        return [to_document(p) for p in passages]


def to_document(passage: Passage) -> LCDocument:
    metadata = {k: v for k, v in passage.__dict__.items() if k != "text"}
    return LCDocument(page_content=passage.text, metadata=metadata, id=str(passage.chunk_id))


def from_document(document: LCDocument) -> Passage:
    return Passage(text=document.page_content, **document.metadata)
