"""The reranking slot of the answering flow: a cross-encoder reorders the retrieved passages.

Off by default (RAG_RERANKER unset): no cross-encoder ships in a PyPI package, and the flow must
run offline. Set RAG_RERANKER to a local folder or a hub id (for users who are online).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from rag.config import Settings
from rag.device import resolve_device
from rag.errors import InputError
from rag.retrieval import Passage


class Reranker(Protocol):
    def rerank(self, question: str, passages: list[Passage]) -> list[Passage]: ...


class CrossEncoderReranker:
    """sentence-transformers' CrossEncoder: scores (question, passage) pairs jointly."""

    def __init__(self, model) -> None:
        self.model = model

    def rerank(self, question: str, passages: list[Passage]) -> list[Passage]:
        scores = self.model.predict([(question, p.text) for p in passages])
        order = sorted(range(len(passages)), key=lambda i: -float(scores[i]))
        return [replace(passages[i], score=float(scores[i])) for i in order]


def load_reranker(settings: Settings) -> Reranker | None:
    """The configured cross-encoder, or None (the default: passages keep retrieval's order)."""
    if not settings.reranker:
        return None
    from sentence_transformers import CrossEncoder

    device = resolve_device(settings.device)  # float32 on either, as the embedder
    try:
        return CrossEncoderReranker(CrossEncoder(settings.reranker, device=device))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the reranker {settings.reranker!r}: {exc}") from exc
