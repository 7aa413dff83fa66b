"""retrieve -> prompt -> generate -> Answer, as one LCEL chain, with abstention and citations.

The CLI, the API and the evaluation all answer through `Pipeline`; none has its own copy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda

from rag.config import RetrievalMode, Settings
from rag.embeddings import Embedder
from rag.errors import InputError
from rag.focus import focus_passages
from rag.generation import Generator, TransformersChatModel
from rag.grounding import (
    cited_numbers,
    says_unknown,
    support,
    tidy_reply,
    unmentioned_names,
)
from rag.prompt import PROMPT, answer_hint, format_passages
from rag.retrieval import IndexRetriever, Passage, from_document
from rag.store import Index

SNIPPET_CHARS = 240


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
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    """The loaded pieces (index, embedder, generator) and the chain that joins them."""

    def __init__(
        self, index: Index, embedder: Embedder, generator: Generator | None, settings: Settings
    ) -> None:
        index.check_embedder(embedder.name, embedder.dimension)
        self.index = index
        self.embedder = embedder
        self.generator = generator
        self.settings = settings

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

    def chain(
        self,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
        **generation: Any,
    ) -> Runnable[str, Answer]:
        """question -> Answer. Abstains before generating when nothing relevant was found.

        `generation` may hold max_new_tokens, temperature and max_time (seconds, including
        the wait for the generator; past it GenerationTimeout is raised).
        """
        model = self._model(**generation)
        retriever = self.retriever(k, mode, where)

        def retrieve(question: str) -> dict[str, Any]:
            return self._retrieve(retriever, question)

        def generate(state: dict[str, Any]) -> dict[str, Any]:
            state = self._prompt(state)
            if state["messages"] is None:
                return state | {"reply": None, "generate_ms": 0.0}
            start = time.perf_counter()
            reply = model.invoke(state["messages"]).content
            return state | {"reply": reply, "generate_ms": _ms(start)}

        return RunnableLambda(retrieve) | RunnableLambda(generate) | RunnableLambda(self._finish)

    def stream(
        self,
        question: str,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
        **generation: Any,
    ) -> Iterator[dict[str, Any]]:
        """Events for a streamed answer: sources first, then tokens, then the final Answer."""
        question = self.check_question(question)
        model = self._model(**generation)
        state = self._prompt(self._retrieve(self.retriever(k, mode, where), question))
        yield {"event": "sources", "data": [asdict(src) for src in state["sources"]]}
        pieces: list[str] = []
        start = time.perf_counter()
        if state["messages"] is not None:
            for chunk in model.stream(state["messages"]):
                pieces.append(str(chunk.content))
                yield {"event": "token", "data": str(chunk.content)}
        reply = "".join(pieces) if state["messages"] is not None else None
        answer = self._finish(state | {"reply": reply, "generate_ms": _ms(start)})
        yield {"event": "answer", "data": answer.as_dict()}

    def prompt_messages(self, question: str) -> list[dict[str, str]] | None:
        """The chat the generator would be given for `question`, or None when the gate refuses.

        Retrieval-aware fine-tuning (RAFT) trains on exactly this prompt.
        """
        question = self.check_question(question)
        state = self._prompt(self._retrieve(self.retriever(), question))
        if state["messages"] is None:
            return None
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        return [
            {"role": roles[m.type], "content": str(m.content)}
            for m in state["messages"].to_messages()
        ]

    def _model(self, **generation: Any) -> TransformersChatModel:
        if self.generator is None:
            raise InputError("this pipeline was loaded without a generator")
        return TransformersChatModel(generator=self.generator, **generation)

    def _retrieve(self, retriever: IndexRetriever, question: str) -> dict[str, Any]:
        start = time.perf_counter()
        passages = [from_document(d) for d in retriever.invoke(question)]
        return {
            "question": question,
            "passages": passages,
            "sources": make_sources(passages, []),
            "retrieve_ms": _ms(start),
        }

    def _prompt(self, state: dict[str, Any]) -> dict[str, Any]:
        """Chat messages for the model, or None when no passage is relevant enough."""
        s, passages = self.settings, state["passages"]
        start = time.perf_counter()
        if max((p.similarity for p in passages), default=0.0) < s.min_score:
            reason = "no passage scored above min_score" if passages else "the index is empty"
            return state | {"messages": None, "prompt_ms": 0.0, "skipped": reason}
        missing = unmentioned_names(state["question"], passages) if s.check_names else []
        if missing:
            reason = f"no passage mentions {', '.join(missing)}"
            return state | {"messages": None, "prompt_ms": 0.0, "skipped": reason}
        shown = focus_passages(
            state["question"],
            passages,
            self.embedder,
            s.focus_sentences,
            s.focus_window,
            s.focus_lexical_weight,
        )
        messages = PROMPT.invoke(
            {
                "abstain_text": s.abstain_text,
                "passages": format_passages(shown),
                "question": state["question"],
                "hint": answer_hint(state["question"]),
            }
        )
        return state | {"messages": messages, "prompt_ms": _ms(start)}

    def _finish(self, state: dict[str, Any]) -> Answer:
        s = self.settings
        passages, reply = state["passages"], state["reply"]
        reply = None if reply is None else tidy_reply(reply)
        reason, backing = None, None
        if reply is None:
            reason = state["skipped"]
        elif says_unknown(reply, s.abstain_text) or not reply.strip():
            reason = "the model found no answer in the passages"
        else:
            backing = support(reply, passages, state["question"])
            if backing < s.min_support:
                reason = f"only {backing:.0%} of the answer's words occur in the passages"
        abstained = reason is not None
        cited = [] if abstained else cited_numbers(reply, passages)
        timings = {
            "retrieve_ms": state["retrieve_ms"],
            "prompt_ms": state["prompt_ms"],
            "generate_ms": state["generate_ms"],
        }
        return Answer(
            question=state["question"],
            answer=s.abstain_text if abstained else reply,
            abstained=abstained,
            reason=reason,
            sources=make_sources(passages, cited),
            timings=timings,
            index=self.index.name,
            version=self.index.version,
            draft=reply if abstained else None,
            support=None if backing is None else round(backing, 3),
        )

    def ask(
        self,
        question: str,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
        **generation: Any,
    ) -> Answer:
        question = self.check_question(question)
        start = time.perf_counter()
        answer = self.chain(k, mode, where, **generation).invoke(question)
        answer.timings["total_ms"] = _ms(start)
        return answer

    def search(
        self,
        question: str,
        k: int | None = None,
        mode: RetrievalMode | None = None,
        where: dict[str, str] | None = None,
    ) -> list[Source]:
        """Retrieval only: no generation, no waiting on the generator."""
        question = self.check_question(question)
        passages = [from_document(d) for d in self.retriever(k, mode, where).invoke(question)]
        return make_sources(passages, [])


def open_pipeline(
    settings: Settings,
    name: str,
    *,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
    with_generator: bool = True,
) -> Pipeline:
    """Load an index (verified) and the models it needs; cheap checks run before slow loads."""
    from rag.embeddings import load_embedder
    from rag.generation import load_generator
    from rag.store import load_index

    index = load_index(settings, name)
    embedder = embedder or load_embedder(settings)
    index.check_embedder(embedder.name, embedder.dimension)
    if with_generator and generator is None:
        generator = load_generator(settings)
    return Pipeline(index, embedder, generator, settings)
