"""Is an answer backed by the passages, and which passages does it cite?"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rag.retrieval import Passage, query_terms

if TYPE_CHECKING:
    from rag.store import Index

ABSTAIN_PATTERNS = re.compile(
    r"\b(i do not know|i don't know|i dont know|not (?:mentioned|stated|provided|given) in|"
    r"(?:passages?|context|text) (?:do(?:es)? not|don't|doesn't) (?:contain|mention|say|provide)|"
    r"no information|cannot (?:answer|find|be determined))\b",
    re.IGNORECASE,
)
CITATION = re.compile(r"\[(\d{1,2})\]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_SENTENCES = 3


# What the prompt wraps passages and the question in; a small model sometimes copies it back.
SCAFFOLDING = re.compile(
    r"<\s?<\s?<|>\s?>\s?>|^\s*(?:passages?|question|answer|context)\s*:\s*"
    r"|begin the answer with yes or no\.?",
    re.IGNORECASE | re.MULTILINE,
)
PASSAGE_HEADER = re.compile(r"^\s*\[\d{1,2}\][^\n]*\n\s*<<<\s*$", re.MULTILINE)


def clean_reply(reply: str) -> str:
    """The reply without the prompt's own scaffolding (passage fences, headers, labels)."""
    return SCAFFOLDING.sub(" ", PASSAGE_HEADER.sub(" ", reply)).strip()


def tidy_reply(reply: str) -> str:
    """Strip scaffolding, join hard-wrapped lines, drop the repeated sentences models loop into."""
    sentences: list[str] = []
    for sentence in SENTENCE_END.split(" ".join(clean_reply(reply).split())):
        if sentence and sentence not in sentences:
            sentences.append(sentence)
    return " ".join(sentences[:MAX_SENTENCES])


def content_words(text: str) -> set[str]:
    """Lower-cased words and numbers that carry meaning (stopwords and citations removed)."""
    return set(query_terms(CITATION.sub(" ", text)))


def says_unknown(reply: str, abstain_text: str) -> bool:
    return abstain_text.lower().strip(" .") in reply.lower() or bool(ABSTAIN_PATTERNS.search(reply))


POLARITY = frozenset({"yes", "no", "not", "true", "false", "correct", "incorrect"})
# How small models frame a reply ("The answer to this question is: ..."): no claim in them.
FRAMING = frozenset({"answer", "question", "passage", "passages", "text", "according"})


def has_content(reply: str) -> bool:
    """At least one word that says something: not only symbols, emoji, citations or framing."""
    return bool(content_words(reply) - FRAMING)


def adds_nothing(reply: str, question: str) -> bool:
    """The reply only restates the question: no verdict and no word the question lacks."""
    words = content_words(reply) - FRAMING
    return not (words & POLARITY) and not (words - content_words(question))


def support(reply: str, passages: list[Passage], question: str = "") -> float:
    """Share of the reply's content words found in the passages or the question (1.0 if none).

    Yes/no verdicts, framing words and words restating the question make no claim of their own;
    what is left (names, numbers, facts) must come from the passages.
    """
    words = content_words(reply) - POLARITY - FRAMING - content_words(question)
    if not words:
        return 1.0
    found = set().union(*(content_words(p.text + " " + p.title) for p in passages))
    return len(words & found) / len(words)


NAME = re.compile(r"\b[A-Z][\w-]*[A-Za-z0-9]")


def names_in(question: str) -> list[str]:
    """Capitalised words after the first one: the names and acronyms a question is about."""
    words = NAME.findall(question)
    first = re.match(r"\W*(\w+)", question)
    if words and first and words[0] == first.group(1):
        words = words[1:]
    return [w for w in dict.fromkeys(words) if len(w) > 2]


def unmentioned_names(question: str, passages: list[Passage]) -> list[str]:
    """Names in the question that no passage mentions (a prefix match either way counts).

    When the passages never name who or what is asked about, any answer is about someone else.
    """
    seen = set().union(*(re.findall(r"\w+", (p.title + " " + p.text).lower()) for p in passages))
    spelled = set().union(*(acronyms(p.title + " " + p.text) for p in passages))
    missing = []
    for name in names_in(question):
        first = re.findall(r"\w+", name.lower())[0]
        if first in spelled:
            continue
        if not any(w.startswith(first) or (len(w) > 3 and first.startswith(w)) for w in seen):
            missing.append(name)
    return missing


CAPITALISED_RUN = re.compile(r"(?:\b[A-Z][\w-]*[,;:]?(?:\s+|$)){2,6}")


def acronyms(text: str) -> set[str]:
    """The initials of each run of capitalised words, lower-cased: "General Public License"
    spells "gpl", so a question about the GPL is about passages that never write "GPL"."""
    out = set()
    for run in CAPITALISED_RUN.findall(text):
        words = run.split()
        for start in range(len(words) - 1):
            for end in range(start + 2, len(words) + 1):
                out.add("".join(w[0] for w in words[start:end]).lower())
    return out


def pinned_names(
    question: str, passages: list[Passage], index: Index, without: str | None = None
) -> list[str]:
    """Names in the question that every chunk of the index mentioning them is among `passages`.

    Such a name is something the index knows only from these passages (a person, a product, a
    place): retrieval has all there is about it, so the passages are on topic even when no
    single sentence matches a question that spans two of them ("Is A taller than B?"). A name
    common across the index (COVID-19 in a COVID corpus) pins nothing. `without`: a document
    to read as absent from the index (calibration's leave-one-out).
    """
    held = {p.chunk_id for p in passages}
    deeper = 0  # past the absent document's chunks
    if without is not None:
        deeper = int(index.manifest["documents"].get(without, {}).get("chunks", 0))
    pinned = []
    for name in names_in(question):
        terms = re.findall(r"\w+", name.lower())
        if not terms:
            continue
        found = {chunk for chunk, _ in index.lexical_search(terms[:1], len(held) + 1 + deeper)}
        if without is not None and found:
            found = {c for c, row in index.chunks(sorted(found)).items() if row.doc_id != without}
        if found and found <= held:
            pinned.append(name)
    return pinned


def cited_numbers(reply: str, passages: list[Passage]) -> list[int]:
    """Passage numbers (from 1) the reply cites; without markers, the passage it overlaps most."""
    numbers = sorted({int(n) for n in CITATION.findall(reply) if 1 <= int(n) <= len(passages)})
    if numbers or not passages:
        return numbers
    words = content_words(reply)
    overlaps = [len(words & content_words(p.text)) for p in passages]
    best = max(overlaps)
    return [overlaps.index(best) + 1] if best > 0 else []
