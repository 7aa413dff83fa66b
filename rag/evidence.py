"""Evidence instead of silence: the passage sentences that best answer, quoted verbatim.

When the model's draft cannot be used (unsupported, empty, restating the question), the
retrieved passages were still judged relevant by the gate; their best-matching sentences,
with the source number, answer more often than "I don't know" and cannot be hallucinated.
"""

from __future__ import annotations

import re

from rag.focus import Sentence
from rag.retrieval import query_terms

QUOTED = "Quoted from the passages: "


def quote(ranked: list[Sentence], sentences: int = 1) -> str | None:
    """The best `sentences` sentences as a quotation with citations, e.g.
    'Quoted from the passages: "…" [2]': the reply says it is a quote, not the model's answer."""
    parts = [f'"{" ".join(s.text.split())}" [{s.number}]' for s in ranked[:sentences]]
    return QUOTED + " ".join(parts) if parts else None


NUMBER_WORDS = frozenset(
    """one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety
    hundred thousand million billion trillion half quarter once twice dozen none""".split()
)
MONTHS = frozenset(
    """january february march april may june july august september october november
    december""".split()
)
# What a question asks for, read off its opening words: a quantity, a time, a person.
WANTS_NUMBER = re.compile(
    r"^\W*(how (many|much|long|old|far|often|big|large|high|tall|fast)|what (percentage|"
    r"proportion|share|number|amount|year|age)|in what year|in which year)\b",
    re.IGNORECASE,
)
WANTS_TIME = re.compile(r"^\W*(when|since when|what date|what time)\b", re.IGNORECASE)
WANTS_PERSON = re.compile(r"^\W*(who|whom|whose)\b", re.IGNORECASE)


def has_number(text: str) -> bool:
    words = set(re.findall(r"[a-z]+", text.lower()))
    return bool(re.search(r"\d", text)) or bool(words & NUMBER_WORDS)


def missing_shape(question: str, sentence: str) -> str | None:
    """What the question asks for that the sentence cannot hold, or None.

    A quote is evidence only when it could hold the answer: "How much health does X have?"
    answered by a sentence without a number, or "Who ...?" by one without a name, is on topic
    and still no answer (a near miss), so the chain says so instead of quoting it.
    """
    if WANTS_NUMBER.match(question) and not has_number(sentence):
        return "a number"
    words = set(re.findall(r"[a-z]+", sentence.lower()))
    if WANTS_TIME.match(question) and not (has_number(sentence) or words & MONTHS):
        return "a date or a time"
    if WANTS_PERSON.match(question):
        asked = {w.lower() for w in re.findall(r"\b[A-Z]\w+", question)}
        named = {w.lower() for w in re.findall(r"(?<!^)(?<![.!?] )\b[A-Z]\w+", sentence)}
        if not named - asked:
            return "a name"
    return None


def shared_terms(question: str, sentence: str) -> float:
    """Share of the question's content words the sentence holds (a 5-letter prefix matches)."""
    terms = {t[:5] for t in query_terms(question)}
    if not terms:
        return 1.0
    return len(terms & {t[:5] for t in query_terms(sentence)}) / len(terms)
