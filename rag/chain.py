"""One typed answering flow: retrieve -> rerank -> gate -> focus -> prompt -> generate -> check
-> cite, over a `Turn` that each step fills in.

The CLI, the API (ask, stream, chat) and the evaluation all answer through `Pipeline.events`;
none has its own copy. The question is checked once and embedded once. LangChain stays at the
edges: `Pipeline.chain` is a Runnable, `Pipeline.retriever` a BaseRetriever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from langchain_core.runnables import Runnable, RunnableLambda

from rag.answer_steps import AnswerSteps, fixed_steps, resolve_steps
from rag.config import RetrievalMode, Settings
from rag.embeddings import Embedder
from rag.errors import InputError
from rag.evidence import missing_shape, quote
from rag.focus import Sentence, focus_passages
from rag.gate import gate_signals, load_gate
from rag.generators import ChatGenerator, to_chat
from rag.grounding import (
    adds_nothing,
    cited_numbers,
    has_content,
    says_unknown,
    support,
    tidy_reply,
    unmentioned_names,
)
from rag.prompt import PROMPTS, answer_hint, format_passages
from rag.rerank import Reranker
from rag.retrieval import IndexRetriever, Passage, retrieve
from rag.store import Index

SNIPPET_CHARS = 240
TRIAL_TOKENS = 48  # a choice's answers are short spans: no need to wait for 80 tokens
log = logging.getLogger(__name__)


@dataclass
class Source:
    """A retrieved passage as shown to the user; `cited` when the answer relies on it."""

    number: int
    doc_id: str
    title: str
    chunk: int
    score: float
    similarity: float
    snippet: str
    text: str
    cited: bool


@dataclass
class Answer:
    """What every shell returns. `quoted`: the answer is passage text, not the model's words."""

    question: str
    answer: str
    abstained: bool
    reason: str | None
    sources: list[Source]
    timings: dict[str, float]
    index: str
    version: str
    draft: str | None = None
    support: float | None = None
    quoted: bool = False
    # the gate's score: P(the passages hold the answer) under a calibrated gate
    answerability: float | None = None
    # prompt_tokens (passages included), completion_tokens, finish_reason: what OpenAI reports
    usage: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    steps: str | None = None  # the answer steps in force (rag/answer_steps.py)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Turn:
    """One question on its way through the steps; each step reads and fills its own fields."""

    question: str
    k: int
    mode: RetrievalMode
    where: dict[str, str] | None = None
    vector: np.ndarray | None = None
    passages: list[Passage] = field(default_factory=list)
    refusal: str | None = None  # the gate's reason: nothing relevant, no generation
    answerability: float | None = None  # the gate's score (calibrated: P(answerable))
    ranked: list[Sentence] = field(default_factory=list)
    shown: list[tuple[int, Passage]] = field(default_factory=list)  # what the model was given
    messages: list[dict[str, str]] | None = None
    draft: str | None = None
    reply: str | None = None
    reason: str | None = None  # why the draft was not used
    support: float | None = None
    quoted: bool = False
    cited: list[int] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def make_sources(passages: list[Passage], cited: list[int]) -> list[Source]:
    return [
        Source(
            number=n,
            doc_id=p.doc_id,
            title=p.title,
            chunk=p.chunk,
            score=round(p.score, 6),
            similarity=round(p.similarity, 4),
            snippet=p.text[:SNIPPET_CHARS] + ("…" if len(p.text) > SNIPPET_CHARS else ""),
            text=p.text,
            cited=n in cited,
        )
        for n, p in enumerate(passages, start=1)
    ]


def check_question(question: str, settings: Settings) -> str:
    """The question, stripped; empty or over-long ones are refused before any model runs."""
    question = question.strip()
    if not question:
        raise InputError("the question is empty")
    if len(question) > settings.max_question_chars:
        raise InputError(
            f"the question has {len(question)} characters; the limit is "
            f"{settings.max_question_chars} (RAG_MAX_QUESTION_CHARS)"
        )
    return question


class Pipeline:
    """The loaded pieces (index, embedder, generator, reranker) and the flow that joins them."""

    def __init__(
        self,
        index: Index,
        embedder: Embedder,
        generator: ChatGenerator | None,
        settings: Settings,
        reranker: Reranker | None = None,
    ) -> None:
        index.check_embedder(embedder.name, embedder.dimension)
        self.index = index
        self.embedder = embedder
        self.generator = generator
        self.settings = settings
        self.reranker = reranker
        self.gate = load_gate(settings, index.name, index.version)
        self._steps: AnswerSteps | None = fixed_steps(settings)
        self.steps_why = f"RAG_ANSWER_STEPS={settings.answer_steps}" if self._steps else None

    # -- the steps -------------------------------------------------------------------------

    def _start(
        self,
        question: str,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
    ) -> Turn:
        """A checked question with its passages retrieved and reranked: what every entry needs."""
        s = self.settings
        turn = Turn(check_question(question, s), k or s.k, mode or s.retrieval_mode, where)
        self._retrieve(turn)
        self._rerank(turn)
        return turn

    def _retrieve(self, turn: Turn) -> None:
        s = self.settings
        start = time.perf_counter()
        turn.vector = self.embedder.encode([turn.question])[0]
        turn.passages = retrieve(
            self.index,
            self.embedder,
            turn.question,
            k=turn.k,
            mode=turn.mode,
            candidates=s.candidates,
            rrf_k=s.rrf_k,
            dense_weight=s.dense_weight,
            where=turn.where,
            vector=turn.vector,
        )
        turn.timings["retrieve_ms"] = _ms(start)

    def _rerank(self, turn: Turn) -> None:
        """The cross-encoder's slot: reorders the passages; without one, nothing changes."""
        if self.reranker is not None and turn.passages:
            start = time.perf_counter()
            turn.passages = self.reranker.rerank(turn.question, turn.passages)
            turn.timings["rerank_ms"] = _ms(start)

    def _gate(self, turn: Turn) -> None:
        """Refuse before generating when the passages do not hold the answer.

        A question about a document missing from the index still finds passages on its topic,
        so no one score decides: the gate (rag/gate.py) weighs the retrieval's and the
        best sentence's signals with the model calibrated on this index's own probe
        questions, or applies the fixed thresholds where the index has no calibration. A name
        asked about that no passage mentions refuses outright: any answer is about someone else.
        """
        s, passages = self.settings, turn.passages
        if not passages:
            turn.refusal = "the index is empty"
        elif s.check_names and (missing := unmentioned_names(turn.question, passages)):
            turn.refusal = f"no passage mentions {', '.join(missing)}"
        else:
            signals, turn.ranked = gate_signals(
                turn.question, passages, self.embedder, self.index, s, turn.vector
            )
            turn.answerability = round(self.gate.score(signals), 4)
            turn.refusal = self.gate.refusal(signals)

    def answer_steps(self, show_progress: bool = False) -> AnswerSteps:
        """The steps in force: named by settings, read back, or chosen now (once) and kept."""
        if self._steps is None:
            generator = self._generator()
            self._steps, self.steps_why = resolve_steps(
                self.settings, self.index, generator, self._trial, show_progress
            )
            log.info("answer steps for %s: %s (%s)", self.index.name, self._steps, self.steps_why)
        return self._steps

    def describe_steps(self) -> dict[str, Any] | None:
        """The steps in force and why, or None before they are chosen (no answer yet)."""
        if self._steps is None:
            return None
        return {"steps": self._steps.describe(), "why": self.steps_why}

    def _trial(self, question: str, candidates: list[AnswerSteps]) -> list[tuple[str | None, bool]]:
        """One question through each candidate, for choosing them: (reply or None, quoted).

        Retrieval and the gate do not depend on the steps: they run once for all candidates.
        """
        asked = self._start(question)
        self._gate(asked)
        if asked.refusal is not None:
            return [(None, False)] * len(candidates)
        out = []
        limit = min(self.settings.max_new_tokens, TRIAL_TOKENS)
        for steps in candidates:
            turn = replace(asked, timings={})
            self._prompt(turn, self._focus(turn, steps), steps)
            for _ in self._generate(turn, False, {"max_new_tokens": limit}):
                pass
            self._check(turn, steps)
            out.append((turn.reply, turn.quoted))
        return out

    def _focus(self, turn: Turn, steps: AnswerSteps) -> list[tuple[int, Passage]]:
        turn.shown = focus_passages(
            turn.question,
            turn.passages,
            self.embedder,
            steps.focus_sentences,
            steps.focus_window,
            self.settings.focus_lexical_weight,
            ranked=turn.ranked,
        )
        return turn.shown

    def _prompt(self, turn: Turn, shown: list[tuple[int, Passage]], steps: AnswerSteps) -> None:
        messages = (
            PROMPTS[steps.prompt]
            .invoke(
                {
                    "abstain_text": self.settings.abstain_text,
                    "passages": format_passages(shown, fenced=steps.prompt == "grounded"),
                    "question": turn.question,
                    "hint": answer_hint(turn.question),
                }
            )
            .to_messages()
        )
        turn.messages = to_chat(messages)

    def _generate(self, turn: Turn, stream: bool, generation: dict[str, Any]) -> Iterator[str]:
        """The model's draft; pieces are yielded as they come when `stream` is set."""
        generator = self._generator()
        start = time.perf_counter()
        if stream:
            pieces = []
            for piece in generator.stream(turn.messages, **generation):
                pieces.append(piece)
                yield piece
            turn.draft = "".join(pieces)
            made = generator.count_text_tokens(turn.draft)
            limit = generation.get("max_new_tokens") or self.settings.max_new_tokens
            turn.usage = {
                "prompt_tokens": generator.count_tokens(turn.messages),
                "completion_tokens": made,
                "finish_reason": "length" if made >= limit else "stop",
            }
        else:
            result = generator.complete(turn.messages, **generation)
            turn.draft = result.text
            turn.usage = {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "finish_reason": result.finish_reason,
            }
        turn.timings["generate_ms"] = _ms(start)

    def _check(self, turn: Turn, steps: AnswerSteps) -> None:
        """Keep the draft only if it says something the passages back; else quote them."""
        s = self.settings
        reply = tidy_reply(turn.draft or "")
        if not has_content(reply):
            turn.reason = "the model's reply had no content"
        elif says_unknown(reply, s.abstain_text):
            turn.reason = "the model found no answer in the passages"
        elif adds_nothing(reply, turn.question):
            turn.reason = "the model's reply only restated the question"
        else:
            # Against what the model was shown: a draft that strays from its sentence has
            # stopped copying and started guessing, even when other passages share its words.
            turn.support = support(reply, [p for _, p in turn.shown], turn.question)
            if turn.support < steps.min_support:
                turn.reason = (
                    f"only {turn.support:.0%} of the answer's words occur in the passages shown"
                )
        shape = s.check_answer_shape and turn.reason is None
        if shape and (wanted := missing_shape(turn.question, reply)):
            turn.reason = f"the model's reply holds no {wanted.split(' ', 1)[1]}"
        if turn.reason is None:
            turn.reply = reply
            return
        if turn.reason.startswith("the model found no answer") and not s.quote_when_unknown:
            return
        best = " ".join(x.text for x in turn.ranked[: max(1, s.quote_sentences)])
        wanted = missing_shape(turn.question, best) if s.check_answer_shape and best else None
        if wanted:  # on topic, yet not the kind of thing asked for: a near miss, not evidence
            turn.reason += f"; no sentence quoted holds {wanted}"
            return
        evidence = quote(turn.ranked, s.quote_sentences)
        if evidence:
            turn.reply, turn.quoted = evidence, True

    def _cite(self, turn: Turn) -> None:
        if turn.reply is not None:
            turn.cited = cited_numbers(turn.reply, turn.passages)

    # -- the flow --------------------------------------------------------------------------

    def events(
        self,
        question: str,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
        *,
        stream: bool = False,
        **generation: Any,
    ) -> Iterator[dict[str, Any]]:
        """The one flow behind ask, stream and chat: `sources`, then `token`s when streaming,
        then `answer` (an Answer). `generation` may hold max_new_tokens, temperature and
        max_time (seconds, waiting included; past it GenerationTimeout is raised)."""
        started = time.perf_counter()
        turn = self._start(question, k, mode, where)
        yield {"event": "sources", "data": make_sources(turn.passages, [])}
        self._gate(turn)
        if turn.refusal is None:
            steps = self.answer_steps()
            start = time.perf_counter()
            shown = self._focus(turn, steps)
            self._prompt(turn, shown, steps)
            turn.timings["prompt_ms"] = _ms(start)
            for piece in self._generate(turn, stream, generation):
                yield {"event": "token", "data": piece}
            self._check(turn, steps)
            self._cite(turn)
        turn.timings.setdefault("prompt_ms", 0.0)
        turn.timings.setdefault("generate_ms", 0.0)
        turn.timings["total_ms"] = _ms(started)
        yield {"event": "answer", "data": self._answer(turn)}

    def _answer(self, turn: Turn) -> Answer:
        abstained = turn.reply is None
        return Answer(
            question=turn.question,
            answer=self.settings.abstain_text if abstained else turn.reply,
            abstained=abstained,
            reason=turn.refusal or turn.reason,
            sources=make_sources(turn.passages, turn.cited),
            timings=turn.timings,
            index=self.index.name,
            version=self.index.version,
            draft=turn.draft if (abstained or turn.quoted) else None,
            support=None if turn.support is None else round(turn.support, 3),
            quoted=turn.quoted,
            answerability=turn.answerability,
            usage=turn.usage,
            steps=self._steps.name if self._steps else None,
        )

    def ask(
        self,
        question: str,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
        **generation: Any,
    ) -> Answer:
        """question -> Answer, in one call."""
        for event in self.events(question, k, mode, where, **generation):
            if event["event"] == "answer":
                return event["data"]
        raise AssertionError("the flow ended without an answer")  # events always ends on one

    def stream(
        self,
        question: str,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
        **generation: Any,
    ) -> Iterator[dict[str, Any]]:
        """Events as JSON-ready dicts: sources first, then tokens, then the final Answer."""
        for event in self.events(question, k, mode, where, stream=True, **generation):
            data = event["data"]
            if event["event"] == "sources":
                data = [asdict(src) for src in data]
            elif event["event"] == "answer":
                data = data.as_dict()
            yield {"event": event["event"], "data": data}

    def chain(
        self,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
        **generation: Any,
    ) -> Runnable[str, Answer]:
        """The flow as a LangChain Runnable (question -> Answer), for LCEL users."""
        return RunnableLambda(lambda question: self.ask(question, k, mode, where, **generation))

    def prompt_messages(self, question: str) -> list[dict[str, str]] | None:
        """The chat the generator would be given for `question`, or None when the gate refuses.

        Retrieval-aware fine-tuning (RAFT) trains on exactly this prompt.
        """
        turn = self._start(question)
        self._gate(turn)
        if turn.refusal is not None:
            return None
        steps = self.answer_steps()
        self._prompt(turn, self._focus(turn, steps), steps)
        return turn.messages

    # -- retrieval only --------------------------------------------------------------------

    def retriever(
        self,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
    ) -> IndexRetriever:
        s = self.settings
        return IndexRetriever(
            where=where,
            index=self.index,
            embedder=self.embedder,
            k=k or s.k,
            mode=mode or s.retrieval_mode,
            candidates=s.candidates,
            rrf_k=s.rrf_k,
            dense_weight=s.dense_weight,
        )

    def check_question(self, question: str) -> str:
        return check_question(question, self.settings)

    def search(
        self,
        question: str,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
    ) -> list[Source]:
        """Retrieval only: no generation, no waiting on the generator."""
        return make_sources(self._start(question, k, mode, where).passages, [])

    def _generator(self) -> ChatGenerator:
        if self.generator is None:
            raise InputError("this pipeline was loaded without a generator")
        return self.generator


def open_pipeline(
    settings: Settings,
    name: str,
    *,
    embedder: Embedder | None = None,
    generator: ChatGenerator | None = None,
    with_generator: bool = True,
) -> Pipeline:
    """Load an index (verified) and the models it needs; cheap checks run before slow loads."""
    from rag.embeddings import load_embedder
    from rag.generators import load_generator
    from rag.rerank import load_reranker
    from rag.store import load_index

    index = load_index(settings, name)
    embedder = embedder or load_embedder(settings)
    index.check_embedder(embedder.name, embedder.dimension)
    if with_generator and generator is None:
        generator = load_generator(settings)
    return Pipeline(index, embedder, generator, settings, load_reranker(settings))
