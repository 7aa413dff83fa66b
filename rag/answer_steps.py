"""Which answer steps an index and a generator get: chosen by measurement, kept, overridable.

How much of the passages the model is shown (one sentence, sentences with their neighbours,
whole passages), the prompt, and how strict the support check is: no single setting suits every
corpus and every model (one sentence suits SmolLM2 on short factual pages and starves it on
reports that name their subject once). So the chain asks a few questions made from the index's
own chunks through each candidate, keeps the one that answered best, and records it with the
figures it won on, per index and generator (like dspy's compiled programs: the candidates, the
metric and the winner in one typed record).

The record lives beside the index (index_root/.answer-steps/<index>/<generator>.json), is made
once per index and generator (at `rag serve` start-up or the first `rag ask` that needs it) and
is kept across incremental updates; RAG_ANSWER_STEPS names a candidate (or `settings`: the
RAG_FOCUS_* and RAG_MIN_SUPPORT values) to skip the choice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rag.errors import RagError
from rag.focus import split_sentences
from rag.progress import progress
from rag.retrieval import query_terms
from rag.store.layout import now

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.generators import ChatGenerator
    from rag.store import Index

log = logging.getLogger(__name__)

FORMAT = 1
PromptStyle = Literal["grounded", "plain"]


@dataclass(frozen=True)
class AnswerSteps:
    """What the model is shown and how its draft is checked."""

    name: str
    focus_sentences: int  # best-matching sentences shown; 0 = whole passages
    focus_window: int  # neighbouring sentences kept around each
    prompt: PromptStyle  # grounded: rules and citations; plain: the ten-minute path's wording
    min_support: float  # share of the draft's words the shown text must hold, else quote

    def describe(self) -> str:
        shown = (
            "whole passages"
            if self.focus_sentences <= 0
            else f"{self.focus_sentences} sentence(s) +-{self.focus_window}"
        )
        return f"{self.name}: {shown}, {self.prompt} prompt, support >= {self.min_support:.0%}"


CANDIDATES: dict[str, AnswerSteps] = {
    s.name: s
    for s in (
        # a small model copies a fact well from one sentence (fictional-people, covidqa-dev)
        AnswerSteps("sentence", 1, 0, "grounded", 1.0),
        # text that names its subject once and then says "the company" needs the neighbours
        AnswerSteps("sentences", 2, 1, "grounded", 0.5),
        AnswerSteps("passages", 0, 0, "grounded", 0.0),
        # a model that answers "[1]" to a citation rule: the naive path's wording, cited after
        AnswerSteps("plain", 0, 0, "plain", 0.0),
    )
}


class StepsError(RagError):
    """A stored choice of answer steps could not be read; it is made again."""


@dataclass
class StepsChoice:
    """The winner for one index and generator, with every candidate's figures."""

    index: str
    version: str  # the index version the questions were asked of
    generator: str
    chosen: str
    questions: int
    seconds: float
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    made: str = ""
    format: int = FORMAT

    @property
    def steps(self) -> AnswerSteps:
        return CANDIDATES[self.chosen]

    def summary(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "chosen": self.chosen,
            "steps": self.steps.describe(),
            "questions": self.questions,
            "seconds": round(self.seconds, 1),
            "chosen_on_version": self.version,
            "figures": self.figures,
        }


# -- the questions -----------------------------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.-])\$?\d+(?:[.,]\d+)*%?(?![\w-])")
NAME = re.compile(r"(?<=[a-z,;:] )[A-Z][a-zA-Z]+(?: [A-Z][a-zA-Z]+)*")


@dataclass(frozen=True)
class StepsQuestion:
    """A question made from one sentence of a chunk; `answer` is the span it leaves out."""

    question: str
    answer: str
    doc_id: str


def make_question(
    sentence: str, title: str, rng: random.Random, doc_id: str = ""
) -> StepsQuestion | None:
    """A question-like query about a sentence's number (else a name not in the title): the span
    removed, some of its other words dropped, the document's title added, as people ask."""
    for match in [*NUMBER.finditer(sentence), *NAME.finditer(sentence)]:
        span = match.group(0)
        if span.lower() in title.lower():
            continue
        rest = sentence[: match.start()] + " " + sentence[match.end() :]
        words = [w for w in re.findall(r"[\w'-]+", rest) if query_terms(w)]
        if len(words) < 3:
            return None
        kept = [w for w in words if rng.random() < 0.7] or words[:3]
        wh = "How much or how many" if match.re is NUMBER else "Which name"
        return StepsQuestion(f"{wh}: {' '.join(kept)} ({title})?", span.lstrip("$"), doc_id)
    return None


def steps_questions(index: Index, count: int, seed: int = 0) -> list[StepsQuestion]:
    """Up to `count` questions from chunks spread over the index: one per document first, then
    more from the same documents where the index holds fewer documents than `count`."""
    rng = random.Random(seed)
    ids = list(range(max(index.size * 2, 16)))
    rng.shuffle(ids)
    out: list[StepsQuestion] = []
    asked: set[tuple[str, str]] = set()
    for one_per_document in (True, False):
        seen = {doc_id for doc_id, _ in asked}
        for start in range(0, len(ids), 256):
            for chunk in index.chunks(ids[start : start + 256]).values():
                if len(out) >= count or (one_per_document and chunk.doc_id in seen):
                    continue
                sentences = split_sentences(chunk.text)
                rng.shuffle(sentences)
                for sentence in sentences:
                    if not 6 <= len(sentence.split()) <= 50 or (chunk.doc_id, sentence) in asked:
                        continue
                    made = make_question(sentence, chunk.title, rng, chunk.doc_id)
                    if made is not None:
                        out.append(made)
                        asked.add((chunk.doc_id, sentence))
                        seen.add(chunk.doc_id)
                        break
            if len(out) >= count:
                return out
    return out


# -- choosing ----------------------------------------------------------------------------------

# (question, candidates) -> for each candidate: (reply or None when refused, quoted); one call
# per question, so the retrieval and the gate it shares across candidates run once
Answerer = Callable[[str, list[AnswerSteps]], list[tuple[str | None, bool]]]


def words_of(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def contains(reply: str, answer: str) -> bool:
    """The answer's words, in order, among the reply's (punctuation and case ignored)."""
    return f" {words_of(answer)} " in f" {words_of(reply)} "


def choose(
    questions: list[StepsQuestion],
    answer: Answerer,
    candidates: list[AnswerSteps],
    budget_seconds: float,
    show_progress: bool = False,
) -> tuple[str, dict[str, dict[str, float]], int]:
    """(winner, figures per candidate, questions asked): every candidate answers the same
    questions, in rounds, until the questions or the time budget run out. Ties go to the
    earlier candidate (fewer prompt tokens, so faster answers)."""
    right = {c.name: 0 for c in candidates}
    quoted = {c.name: 0 for c in candidates}
    refused = {c.name: 0 for c in candidates}
    start, asked = time.perf_counter(), 0
    for q in progress(
        questions, total=len(questions), desc="choosing answer steps", unit="q", show=show_progress
    ):
        if asked and time.perf_counter() - start > budget_seconds:
            break
        for steps, (reply, was_quoted) in zip(
            candidates, answer(q.question, candidates), strict=True
        ):
            refused[steps.name] += reply is None
            quoted[steps.name] += was_quoted
            right[steps.name] += bool(reply) and contains(reply, q.answer)
        asked += 1
    figures = {
        c.name: {
            "answered_right": right[c.name] / asked if asked else 0.0,
            "quoted": quoted[c.name] / asked if asked else 0.0,
            "refused": refused[c.name] / asked if asked else 0.0,
        }
        for c in candidates
    }
    best = max(candidates, key=lambda c: (right[c.name], -candidates.index(c)))
    return best.name, figures, asked


# -- keeping -----------------------------------------------------------------------------------


def generator_label(generator: ChatGenerator) -> str:
    """Who answered: the backend and the model name (a choice is made for this pair)."""
    return f"{generator.backend}:{generator.name}"


def generator_key(generator: ChatGenerator) -> str:
    """The file name a generator's choice is kept under: its backend and model name."""
    label = generator_label(generator)
    slug = re.sub(r"[^\w.-]+", "-", generator.name)[-40:].strip("-")
    return f"{slug}-{hashlib.sha256(label.encode()).hexdigest()[:10]}"


def steps_path(settings: Settings, index: str, generator: ChatGenerator) -> Path:
    return settings.index_root / ".answer-steps" / index / f"{generator_key(generator)}.json"


def save_choice(settings: Settings, choice: StepsChoice, generator: ChatGenerator) -> Path:
    """Written to a temporary file and renamed: a reader sees the old choice or the new one."""
    path = steps_path(settings, choice.index, generator)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(asdict(choice), indent=1))
    os.replace(tmp, path)
    return path


def read_choice(path: Path, generator_label: str | None = None) -> StepsChoice:
    try:
        data = json.loads(path.read_text("utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, this version reads {FORMAT}")
        choice = StepsChoice(**data)
        if choice.chosen not in CANDIDATES:
            raise ValueError(f"unknown answer steps {choice.chosen!r}")
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise StepsError(f"the answer-steps file {path} is unreadable ({exc})") from None
    if generator_label is not None and choice.generator != generator_label:
        raise StepsError(f"the answer-steps file {path} was made for {choice.generator}")
    return choice


def stored_choices(settings: Settings, index: str) -> list[dict[str, Any]]:
    """Every generator's choice for `index`, for `rag indexes` and `/indexes`."""
    out = []
    for path in sorted((settings.index_root / ".answer-steps" / index).glob("*.json")):
        try:
            out.append(read_choice(path).summary())
        except StepsError as exc:
            out.append({"error": str(exc)})
    return out


def fixed_steps(settings: Settings) -> AnswerSteps | None:
    """The steps RAG_ANSWER_STEPS names, or None when they are to be chosen (`auto`)."""
    name = settings.answer_steps
    if name == "auto":
        return None
    if name == "settings":
        return AnswerSteps(
            "settings",
            settings.focus_sentences,
            settings.focus_window,
            settings.answer_prompt,
            settings.min_support,
        )
    return CANDIDATES[name]


def resolve_steps(
    settings: Settings,
    index: Index,
    generator: ChatGenerator,
    answer: Answerer,
    show_progress: bool = False,
) -> tuple[AnswerSteps, str]:
    """(the steps in force, why those): named by settings, read back, or chosen now and kept."""
    fixed = fixed_steps(settings)
    if fixed is not None:
        return fixed, f"RAG_ANSWER_STEPS={settings.answer_steps}"
    path = steps_path(settings, index.name, generator)
    label = generator_label(generator)
    if path.is_file():
        try:
            choice = read_choice(path, label)
            return choice.steps, (
                f"chosen for {generator.name} on {choice.questions} questions of version "
                f"{choice.version}"
            )
        except StepsError as exc:
            log.warning("%s; choosing again", exc)
    start = time.perf_counter()
    questions = steps_questions(index, settings.answer_steps_questions)
    if not questions:
        log.warning("no sentence of %s holds a number or a name to ask about", index.name)
        fallback = CANDIDATES["passages"]
        return fallback, "fallback: no question could be made from the index (whole passages)"
    log.info("choosing answer steps for %s with %s (once)", index.name, generator.name)
    chosen, figures, asked = choose(
        questions,
        answer,
        list(CANDIDATES.values()),
        settings.answer_steps_seconds,
        show_progress,
    )
    choice = StepsChoice(
        index.name,
        index.version,
        label,
        chosen,
        asked,
        time.perf_counter() - start,
        figures,
        now(),
    )
    save_choice(settings, choice, generator)
    return choice.steps, f"chosen for {generator.name} on {asked} questions (just now)"
