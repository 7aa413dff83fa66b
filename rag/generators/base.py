"""What every generator backend offers, and the one generation thread they all run on.

The pipeline, the API and the evaluation see only `ChatGenerator`: a chat goes in, a
`Generation` (text, token counts, why it stopped) or streamed text pieces come out. Backends
(transformers, ONNX Runtime GenAI) differ in how they decode, never in how they are called.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from rag.config import Settings
from rag.errors import GenerationTimeout, RagError

FinishReason = Literal["stop", "length"]
Chat = list[dict[str, str]]
GRACE = 2.0  # seconds past max_time for the last token to land before we give up waiting
# A blank line ends the answer: small models otherwise ramble into new sections.
STOP_STRINGS = ("\n\n",)


@dataclass(frozen=True)
class Generation:
    """One completed chat: the text and what the OpenAI API reports beside it."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason  # "length": max_new_tokens ran out before the model stopped


@runtime_checkable
class ChatGenerator(Protocol):
    """What the pipeline, the API and the evaluation need from a generator."""

    name: str
    backend: str

    def complete(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> Generation: ...

    def generate(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> str: ...

    def stream(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> Iterator[str]: ...

    def generate_batch(
        self, conversations: list[Chat], max_new_tokens: int | None = None
    ) -> list[str]: ...

    def count_tokens(self, messages: Chat) -> int: ...

    def count_text_tokens(self, text: str) -> int: ...

    def chat_prompt(self, messages: Chat) -> str: ...


class QueueFull(RagError):
    """Too many generations waiting: the client should retry later (503)."""


class GeneratorUnavailable(RagError):
    """The model server failed, refused or broke off an answer (503 from rag serve)."""


class GenerationQueue:
    """Admits `running` generations at once plus `waiting` queued ones; beyond that, QueueFull.

    An in-process backend runs one generation at a time (`running=1`); a model server batches
    concurrent requests itself, so `rag serve` lets RAG_GENERATOR_CONCURRENCY of them run.
    """

    def __init__(self, waiting: int, running: int = 1) -> None:
        self.limit = waiting + running
        self.active = 0
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def acquire(self) -> None:
        with self.lock:
            if self.active >= self.limit:
                raise QueueFull(f"{self.active} questions are already being answered or waiting")
            self.active += 1

    def release(self) -> None:
        with self.lock:
            self.active -= 1


class WorkerGenerator:
    """Runs every generation of one backend on one thread, in order, with deadlines.

    One generation runs at a time: two cores gain nothing from interleaving, and the
    engine's thread pool stays bound to one thread instead of one per request thread
    (measured: request threads each driving torch halved throughput at 4 concurrent clients).
    Subclasses implement `complete`, `stream`, `generate_batch` and the token counts.
    """

    backend = "abstract"

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.max_new_tokens = settings.max_new_tokens
        self.do_sample = settings.do_sample
        self.temperature = settings.temperature
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-generate")

    def sampling(self, temperature: float | None) -> float | None:
        """The temperature to sample at, or None for greedy decoding."""
        temperature = self.temperature if temperature is None else temperature
        return temperature if self.do_sample and temperature > 0 else None

    def submit(self, max_time: float | None, work: Callable[[float | None], Any]) -> Future:
        """Queue `work(seconds_left)` on the generation thread, honouring the deadline."""
        deadline = None if max_time is None else time.monotonic() + max_time

        def run() -> Any:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise GenerationTimeout(f"the generator stayed busy for {max_time:.1f} s")
            return self.run_on_worker(work, left)

        return self.worker.submit(run)

    def run_on_worker(self, work: Callable[[float | None], Any], left: float | None) -> Any:
        """Hook for a backend that needs a context (torch's inference mode) around work."""
        return work(left)

    def wait(self, future: Future, max_time: float | None) -> Any:
        """The future's result, or GenerationTimeout a grace period past `max_time`."""
        try:
            return future.result(timeout=None if max_time is None else max_time + GRACE)
        except FutureTimeout:
            future.cancel()  # still queued: never runs; running: stops at its own deadline
            raise GenerationTimeout(f"no answer within {max_time:.1f} s") from None

    def generate(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> str:
        """Complete a chat, text only; raises GenerationTimeout when `max_time` runs out."""
        return self.complete(messages, max_new_tokens, temperature, max_time).text

    def complete(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> Generation:
        raise NotImplementedError

    def close(self) -> None:
        self.worker.shutdown(wait=False, cancel_futures=True)


def cut_at_stop(text: str) -> tuple[str, bool]:
    """`text` up to the first stop string, and whether one was found."""
    cuts = [text.find(stop) for stop in STOP_STRINGS if stop in text]
    return (text[: min(cuts)], True) if cuts else (text, False)
