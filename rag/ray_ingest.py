"""Chunk and embed on a Ray cluster (`rag index ... --engine ray`), then write as usual.

Ray Data reads the documents, and `map_batches` sends them to a pool of actors, each holding
the embedder and chunker that `rag index` would load (same settings, same model), so vectors
land in the same space. The batches come back in document order to this process, which
gives chunk ids and hands them to the store's writer: the index equals the one built without
Ray. Needs the `ray` extra; against a cluster, rag and the model must be installed on every
node (`--ray-address ray://head:10001`, or RAY_ADDRESS).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from rag.chunking import Chunk, Chunker
from rag.config import Settings
from rag.documents import Document
from rag.embeddings import Embedder
from rag.errors import InputError, RagError

log = logging.getLogger(__name__)
DOCS_PER_BATCH = 16
COLUMNS = ("doc_id", "chunk_no", "start", "end", "title", "text")


class ChunkAndEmbed:
    """One Ray actor: loads the embedder once, then chunks and embeds batches of documents."""

    def __init__(self, settings: Settings) -> None:
        from rag.embeddings import load_embedder
        from rag.indexing import make_chunker

        self.embedder = load_embedder(settings)
        self.chunker = make_chunker(self.embedder, settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        chunks = [
            chunk
            for doc_id, title, text in zip(batch["id"], batch["title"], batch["text"], strict=True)
            for chunk in self.chunker.split(Document(id=str(doc_id), title=title, text=text))
        ]
        if chunks:
            vectors = self.embedder.encode([c.embed_text for c in chunks])
        else:
            vectors = np.zeros((0, self.embedder.dimension), dtype=np.float32)
        out: dict[str, Any] = {
            name: np.array([getattr(c, name) for c in chunks], dtype=object) for name in COLUMNS
        }
        return out | {"vector": np.asarray(vectors, dtype=np.float32)}


class RayEngine:
    """`Engine` of `rag.indexing` that runs on Ray; `address` None starts (or reuses) a local
    Ray, as `ray.init` does."""

    def __init__(self, settings: Settings, address: str | None = None, actors: int | None = None):
        self.settings = settings
        self.address = address
        self.actors = actors

    def embed(
        self, docs: list[Document], embedder: Embedder, chunker: Chunker, show_progress: bool
    ) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        if not docs:
            return
        ray = start_ray(self.address)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # chunk ids follow document order
        context.enable_progress_bars = show_progress
        actors = self.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        blocks = min(len(docs), 200, max(actors, -(-len(docs) // DOCS_PER_BATCH)))
        dataset = ray.data.from_items(
            [{"id": d.id, "title": d.title, "text": d.text} for d in docs],
            override_num_blocks=blocks,  # at least one per actor, so that every actor works
        ).map_batches(
            ChunkAndEmbed,
            fn_constructor_args=(self.settings,),
            batch_size=DOCS_PER_BATCH,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(actors, blocks)),
            num_cpus=1,
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            vectors = np.asarray(batch["vector"], dtype=np.float32).reshape(-1, embedder.dimension)
            chunks = [
                Chunk(str(d), int(n), int(s), int(e), str(t), str(x))
                for d, n, s, e, t, x in zip(*(batch[c] for c in COLUMNS), strict=True)
            ]
            yield chunks, vectors


def start_ray(address: str | None) -> Any:
    """The `ray` module, connected to `address` (or a local Ray) unless connected already."""
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a local cluster"
            raise RagError(f"cannot start or reach Ray at {where}: {exc}") from None
    return ray
