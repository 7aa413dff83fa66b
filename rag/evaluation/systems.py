"""The systems compared, all on the same base model: closed, naive, rag, ft, ft+rag."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from rag.chain import Pipeline
from rag.documents import Document
from rag.embeddings import Embedder
from rag.evaluation.finetune import CLOSED_BOOK
from rag.generators import ChatGenerator
from rag.grounding import says_unknown, tidy_reply

SYSTEMS = ("closed", "naive", "rag", "ft", "ft+rag")


@dataclass
class Prediction:
    system: str
    question_id: str
    reply: str
    abstained: bool
    seconds: float
    retrieved: list[str] = field(default_factory=list)
    supported: bool | None = None
    reason: str | None = None  # why the retrieval chain abstained
    draft: str | None = None  # what the model said before the chain abstained
    answerability: float | None = None  # the chain's gate score (rag systems)
    quoted: bool = False  # the reply is a sentence of the passages, not the model's words


def answered_on(generator: ChatGenerator, trained: bool = False) -> str:
    """Where a system's answers came from, for the report: a model server's URL and model, or
    this process (a fine-tuned copy always answers here: the server never saw its weights)."""
    if trained:
        return f"{generator.backend} (local, trained)"
    if generator.backend == "openai":
        return f"openai {generator.url} model {generator.model}"  # type: ignore[attr-defined]
    return f"{generator.backend} (local)"


class ClosedBook:
    """The model alone, asked the question with the same closed-book prompt as ft training."""

    def __init__(self, name: str, generator: ChatGenerator, abstain_text: str) -> None:
        self.name, self.generator, self.abstain_text = name, generator, abstain_text

    def answer(self, question_id: str, question: str) -> Prediction:
        start = time.perf_counter()
        chat = [{"role": "user", "content": CLOSED_BOOK.format(question=question)}]
        reply = tidy_reply(self.generator.generate(chat))
        abstained = says_unknown(reply, self.abstain_text)
        return Prediction(self.name, question_id, reply, abstained, time.perf_counter() - start)


class Retrieval:
    """The project's own retrieval chain (rag.chain.Pipeline), not a copy of it."""

    def __init__(self, name: str, pipeline: Pipeline) -> None:
        self.name, self.pipeline = name, pipeline

    def answer(self, question_id: str, question: str) -> Prediction:
        start = time.perf_counter()
        answer = self.pipeline.ask(question)
        return Prediction(
            self.name,
            question_id,
            answer.answer,
            answer.abstained,
            time.perf_counter() - start,
            retrieved=[s.doc_id for s in answer.sources],
            supported=not answer.abstained,
            reason=answer.reason,
            draft=answer.draft,
            answerability=answer.answerability,
            quoted=answer.quoted,
        )

    def gate(self) -> dict[str, object]:
        """Which refusal rule this system's index is under, for the report."""
        return self.pipeline.gate.describe()


NAIVE_PROMPT = (
    "Use the following context to answer the question.\n\nContext:\n{context}\n\n"
    "Question: {question}\nAnswer:"
)


class Naive:
    """The plain LangChain path a user builds in ten minutes: 1000-character chunks with 200
    overlap, FAISS top 3 over the same embedder, a context-first prompt, the same generator,
    and no abstention logic (no score gate, no name check, no grounding check)."""

    def __init__(
        self,
        name: str,
        documents: list[Document],
        embedder: Embedder,
        generator: ChatGenerator,
        abstain_text: str,
    ) -> None:
        import faiss
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        start = time.perf_counter()
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        self.chunks: list[tuple[str, str]] = [
            (d.id, piece) for d in documents for piece in splitter.split_text(d.text)
        ]
        vectors = embedder.encode([text for _, text in self.chunks])
        self.index = faiss.IndexFlatIP(embedder.dimension)
        self.index.add(vectors)
        self.build_seconds = time.perf_counter() - start
        self.name, self.embedder, self.generator = name, embedder, generator
        self.abstain_text = abstain_text

    def answer(self, question_id: str, question: str) -> Prediction:
        start = time.perf_counter()
        query = self.embedder.encode([question])
        _, rows = self.index.search(np.ascontiguousarray(query), min(3, len(self.chunks)))
        hits = [self.chunks[i] for i in rows[0] if i >= 0]
        context = "\n\n".join(text for _, text in hits)
        chat = [
            {"role": "user", "content": NAIVE_PROMPT.format(context=context, question=question)}
        ]
        reply = tidy_reply(self.generator.generate(chat))
        return Prediction(
            self.name,
            question_id,
            reply,
            says_unknown(reply, self.abstain_text),  # only when the model itself declines
            time.perf_counter() - start,
            retrieved=[doc_id for doc_id, _ in hits],
        )
