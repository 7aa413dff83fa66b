"""Evidence instead of silence: the passage sentences that best answer, quoted verbatim.

When the model's draft cannot be used (unsupported, empty, restating the question), the
retrieved passages were still judged relevant by the gate; their best-matching sentences,
with the source number, answer more often than "I don't know" and cannot be hallucinated.
"""

from __future__ import annotations

from rag.focus import Sentence


def quote(ranked: list[Sentence], sentences: int = 1) -> str | None:
    """The best `sentences` sentences as a quotation with citations, e.g. '"…" [2]'."""
    parts = [f'"{" ".join(s.text.split())}" [{s.number}]' for s in ranked[:sentences]]
    return " ".join(parts) or None
