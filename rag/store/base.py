"""What every store offers: a loaded version (`Index`), a writer of the next one
(`VersionWriter`) and the store itself (`Store`: list, open, lock, write, clean up)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from rag.chunking import Chunk
from rag.errors import IndexFormatError

ChunkRow = tuple[int, str, int, int, int, str, str]  # id, doc_id, chunk_no, start, end, title, text


class Index:
    """A loaded, verified, read-only version of an index; retrieval sees only this."""

    name: str
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def size(self) -> int:
        return int(self.manifest["counts"]["chunks"])

    def check_embedder(self, name: str, dimension: int) -> None:
        """Refuse to mix vectors from two embedders: their spaces are unrelated."""
        built = self.manifest["embedder"]
        if built["name"] != name or int(built["dimension"]) != dimension:
            raise IndexFormatError(
                f"index {self.name!r} was built with embedder {built['name']} "
                f"({built['dimension']} dims) but {name} ({dimension} dims) is configured; "
                f"set RAG_EMBEDDER={built['name']} or rebuild with `rag index ... --rebuild`"
            )

    def dense_search(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the n nearest chunks (approximate on large indexes)."""
        raise NotImplementedError

    def lexical_search(self, terms: list[str], n: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better) for chunks matching any term."""
        raise NotImplementedError

    def similarity(self, query: np.ndarray, ids: list[int]) -> dict[int, float]:
        """Cosine of the query with stored vectors, for hits found by the lexical side."""
        raise NotImplementedError

    def chunks(self, ids: list[int]) -> dict[int, Chunk]:
        """The stored chunks with these ids, keyed by id."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class VersionWriter(Protocol):
    """Builds the next version; nothing is visible to readers until `publish` returns."""

    def remove_documents(self, doc_ids: list[str]) -> int: ...

    def next_id(self) -> int: ...

    def add_chunks(self, rows: list[ChunkRow], vectors: np.ndarray) -> None: ...

    def chunk_count(self) -> int: ...

    def publish(self, manifest: dict[str, Any]) -> str:
        """Make the version durable and live in one atomic step; returns its name."""
        ...

    def abandon(self) -> None: ...


class Store(Protocol):
    """Where the versions of indexes live: a folder of folders, or a PostgreSQL database."""

    kind: str
    where: str  # for messages: the folder, or "the database at RAG_PG_DSN"

    def names(self) -> list[str]: ...

    def live_version(self, name: str) -> str | None: ...

    def live_manifest(self, name: str) -> dict[str, Any] | None:
        """The live version's manifest without loading it (None when there is none)."""
        ...

    def is_tidy(self, name: str) -> bool:
        """No unfinished build or retired version waits to be cleaned up."""
        ...

    def open(self, name: str) -> Index: ...

    def lock(self, name: str) -> AbstractContextManager[None]:
        """One writer per index; a second one gets IndexLockedError at once."""
        ...

    def clean(self, name: str) -> None:
        """Remove unfinished builds and versions past their grace period (writer only)."""
        ...

    def writer(self, name: str, base: Index | None) -> VersionWriter: ...

    def describe(self) -> list[dict[str, Any]]: ...
