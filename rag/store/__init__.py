"""Where indexes live: one factory (`open_store`) for reading and writing every backend.

- `layout`: names, version stamps and manifests, read in one place;
- `local`: a folder per index, SQLite + FTS5 chunks and FAISS vectors (`faiss_vectors`);
- `postgres`: the whole index in PostgreSQL (chunks, full text, pgvector HNSW, manifests).

Retrieval, the chain and the API see only `Index`; `rag.indexing` writes through `Store`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import InputError
from rag.store.base import Index, Store, VersionWriter
from rag.store.faiss_vectors import FaissBackend
from rag.store.layout import (
    CHUNKS,
    CURRENT,
    MANIFEST,
    VECTORS,
    check_name,
    index_dir,
    now,
    read_manifest,
    sha256_file,
    store_kind,
)
from rag.store.local import LocalIndex, LocalStore, LocalWriter, remove_leftovers, writer_lock

if TYPE_CHECKING:
    from rag.config import Settings

__all__ = [
    "CHUNKS",
    "CURRENT",
    "MANIFEST",
    "VECTORS",
    "FaissBackend",
    "Index",
    "LocalIndex",
    "LocalStore",
    "LocalWriter",
    "Store",
    "VersionWriter",
    "check_name",
    "copy_index",
    "describe_indexes",
    "index_dir",
    "list_indexes",
    "live_version",
    "load_index",
    "now",
    "open_store",
    "read_manifest",
    "remove_leftovers",
    "sha256_file",
    "store_kind",
    "writer_lock",
]

POSTGRES_NAMES = ("postgres", "pgvector")  # pgvector: the name of earlier releases


def open_store(source: Settings | Path | str | Store) -> Store:
    """The store settings name (a bare path is a folder store, for tests and tools)."""
    if isinstance(source, (str, Path)):
        return LocalStore(Path(source))
    if hasattr(source, "kind") and hasattr(source, "writer"):
        return source  # already a store
    settings = source
    if settings.vector_store in POSTGRES_NAMES:
        try:
            from rag.store.postgres import PostgresStore
        except ImportError as exc:
            raise InputError(
                f"the PostgreSQL store needs its extra ({exc.name} is missing): "
                "pip install -e '.[pgvector]'"
            ) from None
        return PostgresStore(settings.pg_dsn, grace_seconds=settings.pg_grace_seconds)
    if settings.vector_store == "faiss":
        vectors = FaissBackend(exact_limit=settings.exact_limit, nprobe=settings.nprobe)
        return LocalStore(settings.index_root, vectors, settings.lexical)
    raise InputError(f"unknown store {settings.vector_store!r}: use faiss or postgres")


def load_index(source: Settings | Path | str | Store, name: str) -> Index:
    """Load the live version of an index, verified (checksums, counts, table columns)."""
    return open_store(source).open(check_name(name))


def list_indexes(source: Settings | Path | str | Store) -> list[str]:
    """Names of the indexes that have a live version."""
    return open_store(source).names()


def describe_indexes(source: Settings | Path | str | Store) -> list[dict[str, Any]]:
    """One summary per index from its manifest (cheap: no vectors are loaded)."""
    return open_store(source).describe()


def live_version(source: Settings | Path | str | Store, name: str) -> str | None:
    """The version a new reader of this index would load now."""
    return open_store(source).live_version(check_name(name))


def copy_index(source: Index, store: Store, name: str) -> str:
    """Publish a loaded folder version as the next version of `name` in another store.

    Nothing is embedded again: rows and vectors are copied (e.g. to move an index into
    PostgreSQL). Returns the new version.
    """
    from rag.store.local import export_chunks

    if not isinstance(source, LocalIndex):
        raise InputError("only an index in a folder store can be copied")
    manifest = {
        key: value
        for key, value in source.manifest.items()
        if key not in ("version", "format_version", "files", "vectors", "store")
    }
    with store.lock(check_name(name)):
        store.clean(name)
        writer = store.writer(name, None)
        try:
            for rows, vectors in export_chunks(source):
                writer.add_chunks(rows, vectors)
            return writer.publish(manifest | {"name": name})
        except BaseException:
            writer.abandon()
            raise
