"""What the service holds: indexes that swap to a rebuilt version, and the generation queue."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

from rag.chain import Pipeline, open_pipeline
from rag.config import Settings
from rag.embeddings import Embedder
from rag.errors import RagError
from rag.generators import ChatGenerator, GenerationQueue, QueueFull  # noqa: F401 (re-exported)
from rag.store import open_store

log = logging.getLogger(__name__)


class ServedIndex:
    """One index as served: reloads when `rag index` publishes a new version.

    Requests already running keep the Pipeline they started with; the swap is a reference
    assignment, so no request ever sees half of two versions. A version that fails to load
    leaves the last good one in service and is reported by /readyz.
    """

    def __init__(
        self, settings: Settings, name: str, embedder: Embedder, generator: ChatGenerator | None
    ) -> None:
        self.settings, self.name = settings, name
        self.embedder, self.generator = embedder, generator
        self.store = open_store(settings)  # where `rag index` publishes, here or in a database
        self.reload_lock = threading.Lock()
        self.last_error: str | None = None
        self._failed_version: str | None = None  # not retried until CURRENT moves again
        self.pipeline = open_pipeline(settings, name, embedder=embedder, generator=generator)
        if generator is not None:  # chosen (once per index and generator) before serving
            self.pipeline.answer_steps(show_progress=True)

    def live_version(self) -> str | None:
        try:
            return self.store.live_version(self.name)
        except (OSError, RagError):
            return None

    def current(self) -> Pipeline:
        """The pipeline for the newest loadable version."""
        wanted = self.live_version()
        if wanted and wanted != self.pipeline.index.version and wanted != self._failed_version:
            with self.reload_lock:
                if wanted != self.pipeline.index.version:
                    self._reload(wanted)
        return self.pipeline

    def _reload(self, wanted: str) -> None:
        try:
            pipeline = open_pipeline(
                self.settings, self.name, embedder=self.embedder, generator=self.generator
            )
            if self.generator is not None:  # kept across updates: read back, not chosen again
                pipeline.answer_steps()
        except RagError as exc:
            self.last_error, self._failed_version = str(exc), wanted
            log.error("keeping %s %s: %s", self.name, self.pipeline.index.version, exc)
            return
        self.pipeline, self.last_error, self._failed_version = pipeline, None, None
        log.info("now serving %s %s", self.name, pipeline.index.version)


def detached_stream(
    produce: Callable[[], Iterator[str]],
    on_error: Callable[[Exception], str],
    release: Callable[[], None],
) -> Iterator[str]:
    """Run `produce` in its own thread and relay what it yields.

    The generation must finish, and its queue slot be released, even when the client goes
    away mid-stream: a suspended generator would otherwise hold the slot until it is
    garbage-collected, and every later request would get 503.
    """
    items: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def work() -> None:
        try:
            for item in produce():
                items.put(item)
        except Exception as exc:  # reported to the client as an event, never as a trace
            if not isinstance(exc, RagError):
                log.exception("streaming failed")
            items.put(on_error(exc))
        finally:
            release()
            items.put(None)

    def relay() -> Iterator[str]:
        while (item := items.get()) is not None:
            yield item

    threading.Thread(target=work, name="rag-stream", daemon=True).start()  # now, not on first read
    return relay()
