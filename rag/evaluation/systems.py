"""The four systems compared, all on the same base model: closed, rag, ft, ft+rag."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rag.chain import Pipeline
from rag.evaluation.finetune import CLOSED_BOOK
from rag.generators import ChatGenerator
from rag.grounding import says_unknown, tidy_reply

SYSTEMS = ("closed", "rag", "ft", "ft+rag")


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
        )
