"""Evidence instead of silence: the passage sentences that best answer, quoted verbatim.

When the model's draft cannot be used (unsupported, empty, restating the question), the
retrieved passages were still judged relevant by the gate; their best-matching sentences,
with the source number, answer more often than "I don't know" and cannot be hallucinated.
"""

from __future__ import annotations

from rag.focus import Sentence


QUOTED = "Quoted from the passages: "


def quote(ranked: list[Sentence], sentences: int = 1) -> str | None:
    """The best `sentences` sentences as a quotation with citations, e.g.
    'Quoted from the passages: "…" [2]': the reply says it is a quote, not the model's answer."""
    parts = [f'"{" ".join(s.text.split())}" [{s.number}]' for s in ranked[:sentences]]
    return QUOTED + " ".join(parts) if parts else None
