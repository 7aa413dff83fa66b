"""Conversations in `rag eval`: each last user turn made standalone by the same rewriting as
`/v1/chat/completions` (rag.conversation), then answered by a system like any question."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any, Protocol

from rag.config import Settings
from rag.conversation import Turn, recent_turns, standalone_question
from rag.evaluation.data import Conversation
from rag.evaluation.metrics import bootstrap, f1_score
from rag.evaluation.systems import Prediction
from rag.progress import progress


class Answers(Protocol):
    def answer(self, question_id: str, question: str) -> Prediction: ...


def standalone(conversation: Conversation, settings: Settings, generator: Any = None) -> str:
    """The last question as the chat route would retrieve with it."""
    history = recent_turns([Turn(q, a) for q, a in conversation.history], settings)
    return standalone_question(
        conversation.question,
        history,
        strategy=settings.rewrite_follow_ups,
        generator=generator,
        max_chars=settings.max_question_chars,
    )


def ask_conversations(
    runner: Answers,
    conversations: list[Conversation],
    settings: Settings,
    seed: int,
    show_progress: bool,
    name: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary, prediction rows): token F1 against `target` on answerable conversations,
    refusal on the others, and the share of last turns the rewriting changed."""
    generator = getattr(getattr(runner, "pipeline", None), "generator", None)
    generator = generator or getattr(runner, "generator", None)
    rows = []
    for c in progress(
        conversations,
        total=len(conversations),
        desc=f"conversations ({name})",
        unit="c",
        show=show_progress,
    ):
        asked = standalone(c, settings, generator)
        p = runner.answer(c.id, asked)
        f1 = f1_score(p.reply, [c.target]) if c.answerable and not p.abstained else 0.0
        rows.append((c, asked, p, f1))
    answerable = [(c, p, f1) for c, _, p, f1 in rows if c.answerable]
    summary = {
        "f1": asdict(bootstrap([f1 for _, _, f1 in answerable], seed=seed)),
        "answerable_refused": asdict(
            bootstrap([float(p.abstained) for _, p, _ in answerable], seed=seed)
        ),
        "unanswerable_refused": asdict(
            bootstrap([float(p.abstained) for c, _, p, _ in rows if not c.answerable], seed=seed)
        ),
        "rewritten": statistics.fmean(a != c.question for c, a, _, _ in rows) if rows else 0.0,
        "conversations": len(rows),
    }
    out = [
        asdict(p)
        | {
            "slice": "conversation" if c.answerable else "conversation, unanswerable",
            "asked": c.question,
            "standalone": asked,
            "gold": [c.target] if c.answerable else [],
            "f1": f1,
            "kind": "conversation",
        }
        for c, asked, p, f1 in rows
    ]
    return summary, out
