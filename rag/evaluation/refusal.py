"""Refusal, counted fairly: which held-out questions are really unanswerable, and the curve.

A question about a document removed from the index is unanswerable only when no document left
in the index holds its answer: where facts repeat across pages, the rest still answer it, and
a chain that answers it is right to. Those are reported apart, as still answerable.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from rag.documents import Document
from rag.evaluation.data import Question
from rag.evaluation.metrics import bootstrap, normalize_answer

MIN_UNANSWERABLE = 30  # questions about removed documents, by default, per dataset
MAX_HELD_SHARE = 0.5  # never remove more than this share of the documents asked about


class AnswerFinder:
    """Does any of these documents hold one of a question's gold answers (normalised)?"""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.texts = [f" {normalize_answer(d.title + ' ' + d.text)} " for d in documents]

    def holds(self, answers: Sequence[str]) -> bool:
        wanted = [f" {normalize_answer(a)} " for a in answers if normalize_answer(a)]
        return any(a in text for a in wanted for text in self.texts)


def split_held(
    held_questions: list[Question], remaining: Sequence[Document]
) -> tuple[list[Question], list[Question]]:
    """(unanswerable, still answerable): by whether a remaining document holds the answer."""
    finder = AnswerFinder(remaining)
    unanswerable = [q for q in held_questions if not finder.holds(q.answers)]
    still = [q for q in held_questions if finder.holds(q.answers)]
    return unanswerable, still


def choose_held(
    questions: list[Question],
    documents: Sequence[Document],
    rng: random.Random,
    share: float,
    minimum: int = MIN_UNANSWERABLE,
) -> set[str]:
    """Documents to remove from the index: at least `share` of them, then more until
    `minimum` questions about them are unanswerable (or half the asked documents are out)."""
    asked = sorted({q.doc_id for q in questions if q.doc_id})
    rng.shuffle(asked)
    by_doc: dict[str, list[Question]] = {}
    for q in questions:
        if q.doc_id:
            by_doc.setdefault(q.doc_id, []).append(q)
    at_least = min(len(asked), max(1, round(share * len(documents))))
    at_most = max(at_least, int(MAX_HELD_SHARE * len(asked)))
    held: set[str] = set()
    for doc_id in asked:
        if len(held) >= at_least:
            remaining = [d for d in documents if d.id not in held]
            unanswerable, _ = split_held([q for d in held for q in by_doc[d]], remaining)
            if len(unanswerable) >= minimum or len(held) >= at_most:
                break
        held.add(doc_id)
    return held


def refusal_figures(
    answerable: Sequence[bool], unanswerable: Sequence[bool], still: Sequence[bool], seed: int
) -> dict[str, Any]:
    """Refusal rates (each a mean with its 95% interval and count) of the three kinds."""
    return {
        "unanswerable_refused": asdict(bootstrap([float(x) for x in unanswerable], seed=seed)),
        "answerable_refused": asdict(bootstrap([float(x) for x in answerable], seed=seed)),
        "still_answerable_refused": asdict(bootstrap([float(x) for x in still], seed=seed)),
    }


def coverage_curve(
    scores: Sequence[float | None],
    correct: Sequence[float],
    answered: Sequence[bool],
    unanswerable_scores: Sequence[float | None],
    unanswerable_answered: Sequence[bool],
    points: int = 20,
) -> list[dict[str, float]]:
    """Answered share against the accuracy of what was answered, as the threshold rises.

    Only thresholds at or above the one in force can be drawn: a question the gate refused was
    never answered, so what it would have scored is not known.
    """
    known = sorted({s for s in scores if s is not None})
    if not known:
        return []
    n = len(scores)
    curve = []
    for i in range(points + 1):
        threshold = known[min(len(known) - 1, round(i * (len(known) - 1) / points))]
        kept = [
            c for s, c, a in zip(scores, correct, answered, strict=True) if a and s >= threshold
        ]
        refused = [
            not a or s is None or s < threshold
            for s, a in zip(unanswerable_scores, unanswerable_answered, strict=True)
        ]
        curve.append(
            {
                "threshold": round(threshold, 4),
                "answered": len(kept) / n,
                "accuracy_of_answered": sum(kept) / len(kept) if kept else 0.0,
                "unanswerable_refused": sum(refused) / len(refused) if refused else 0.0,
            }
        )
    return curve
