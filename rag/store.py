"""An index on disk: FAISS vectors, a SQLite chunk store with FTS5, and a JSON manifest.

Layout of `indexes/<name>/`:
    CURRENT              the name of the live version directory (replaced atomically)
    v-<stamp>/           vectors.faiss, chunks.sqlite, manifest.json (checksums of the others);
                         with the pgvector backend the vectors are a table named in the manifest
    .tmp-*/              a build in progress; removed by the next writer
    .lock                held by the one writer

A version directory is written whole, fsynced and renamed before CURRENT points at it, so a
crash at any moment leaves the previous version loadable. Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunking import Chunk
from rag.errors import (
    CorruptIndexError,
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
    InputError,
)
from rag.vectorstores import (
    FaissBackend,
    VectorBackend,
    VectorStore,
    VectorWriter,
    make_backend,
    vectors_entry,
)

FORMAT_VERSION = 1
VECTORS, CHUNKS, MANIFEST, CURRENT = "vectors.faiss", "chunks.sqlite", "manifest.json", "CURRENT"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

SCHEMA = """
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, chunk_no INTEGER NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL
);
CREATE INDEX chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE chunks_fts USING fts5(title, text, tokenize='porter unicode61');
"""


def check_name(name: str) -> str:
    """Index names become directory names: refuse anything that could leave `indexes/`."""
    if not NAME_PATTERN.match(name) or ".." in name:
        raise InputError(
            f"invalid index name {name!r}: use letters, digits, '.', '_' or '-' "
            "(no path separators, at most 64 characters)"
        )
    return name


def list_indexes(root: Path) -> list[str]:
    """Names of the indexes under root that have a live version."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CURRENT).is_file())


def index_dir(root: Path, name: str) -> Path:
    return Path(root) / check_name(name)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Index:
    """A loaded, verified, read-only version of an index."""

    def __init__(
        self, name: str, path: Path, manifest: dict[str, Any], vectors: VectorStore, db
    ) -> None:
        self.name = name
        self.path = path
        self.manifest = manifest
        self.vectors = vectors
        self.db: sqlite3.Connection = db

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def size(self) -> int:
        return self.vectors.size

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
        """(chunk id, cosine) of the n nearest chunks (approximate above the exact limit)."""
        return self.vectors.search(query, n)

    def lexical_search(self, terms: list[str], n: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better) for chunks matching any term."""
        if not terms:
            return []
        query = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        rows = self.db.execute(
            "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? "
            "ORDER BY bm25(chunks_fts) LIMIT ?",
            (query, n),
        ).fetchall()
        return [(int(r), float(s)) for r, s in rows]

    def similarity(self, query: np.ndarray, ids: list[int]) -> dict[int, float]:
        """Cosine of the query with stored vectors, for hits found by the lexical side."""
        return self.vectors.similarity(query, ids)

    def chunks(self, ids: list[int]) -> dict[int, Chunk]:
        """The stored chunks with these ids, keyed by id."""
        marks = ",".join("?" * len(ids))
        columns = "id, doc_id, chunk_no, start, end, title, text"
        query = f"SELECT {columns} FROM chunks WHERE id IN ({marks})"
        return {row[0]: Chunk(*row[1:]) for row in self.db.execute(query, ids)}

    def close(self) -> None:
        self.db.close()
        self.vectors.close()


def load_index(root: Path, name: str, *, dsn: str | None = None) -> Index:
    """Load the live version of an index, verifying every file against the manifest.

    `dsn` is the database of an index whose vectors live in pgvector; RAG_PG_DSN when None.
    """
    directory = index_dir(root, name)
    if not (directory / CURRENT).is_file():
        existing = list_indexes(Path(root))
        known = f"; existing indexes: {', '.join(existing)}" if existing else "; none exist yet"
        raise IndexNotFoundError(
            f"no index named {name!r} under {root}{known}. Build one with "
            f"`rag index <corpus> --index {name}`"
        )
    for _attempt in range(3):
        version = (directory / CURRENT).read_text().strip()
        try:
            return load_version(directory / version, name, dsn=dsn)
        except CorruptIndexError:
            # A writer may have published and removed this version between our two reads.
            if (directory / CURRENT).read_text().strip() == version:
                raise
    raise CorruptIndexError(f"index {name!r} kept changing while loading; try again")


def open_vectors(path: Path, manifest: dict[str, Any], dsn: str | None = None) -> VectorStore:
    """The vectors of a version, from the backend its manifest names."""
    entry = vectors_entry(manifest)
    if entry["backend"] == "faiss":
        return FaissBackend().open(path, entry)
    if entry["backend"] == "pgvector" and dsn is None:
        from rag.config import Settings

        dsn = Settings().pg_dsn
    return make_backend(entry["backend"], dsn=dsn).open(path, entry)


def load_version(path: Path, name: str, *, dsn: str | None = None) -> Index:
    manifest = read_manifest(path)
    files = {CHUNKS} | ({VECTORS} if vectors_entry(manifest)["backend"] == "faiss" else set())
    if set(manifest["files"]) != files:
        raise CorruptIndexError(f"index manifest {path / MANIFEST} lists unexpected files")
    for entry in path.iterdir():  # e.g. a planted pickle: nothing else belongs in a version
        if entry.name not in (*files, MANIFEST):
            raise CorruptIndexError(
                f"unexpected file {entry} in index version {path.name}; remove it or rebuild"
            )
    for filename, expected in manifest["files"].items():
        file = path / filename
        if not file.is_file():
            raise CorruptIndexError(f"index file {file} is missing; rebuild the index")
        if sha256_file(file) != expected:
            raise CorruptIndexError(
                f"index file {file} does not match its checksum (truncated or altered); "
                "rebuild the index with `rag index ... --rebuild`"
            )
    vectors = open_vectors(path, manifest, dsn)
    db = sqlite3.connect(f"file:{path / CHUNKS}?mode=ro", uri=True, check_same_thread=False)
    try:
        (count,) = db.execute("SELECT count(*) FROM chunks").fetchone()
    except sqlite3.DatabaseError as exc:
        db.close()
        vectors.close()
        raise CorruptIndexError(f"cannot read {path / CHUNKS}: {exc}") from None
    size = vectors.size  # before close(), which lets go of the vectors
    if count != size or count != manifest["counts"]["chunks"]:
        db.close()
        vectors.close()
        where = vectors_entry(manifest).get("table", path / VECTORS)
        raise CorruptIndexError(
            f"{path / CHUNKS} holds {count} chunks but {where} holds {size} "
            "vectors; rebuild the index"
        )
    return Index(name, path, manifest, vectors, db)


def read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text("utf-8"))
        fmt = int(manifest["format_version"])
        missing = [k for k in ("files", "counts", "embedder", "documents") if k not in manifest]
        if missing:
            raise KeyError(", ".join(missing))
    except FileNotFoundError:
        raise CorruptIndexError(f"index manifest {file} is missing; rebuild the index") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"index manifest {file} is unreadable ({exc})") from None
    if fmt > FORMAT_VERSION:
        raise IndexFormatError(
            f"index at {path} has format version {fmt}, newer than this rag understands "
            f"({FORMAT_VERSION}); upgrade rag or rebuild the index"
        )
    return manifest


@contextlib.contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """One writer per index; a second one is refused at once with a clear message."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexLockedError(
                f"another `rag index` is writing {directory}; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_leftovers(directory: Path) -> list[str]:
    """Delete unfinished builds and versions that CURRENT no longer points at (writer only)."""
    live = (directory / CURRENT).read_text().strip() if (directory / CURRENT).exists() else None
    removed = []
    for entry in directory.iterdir():
        stale = entry.name.startswith(".tmp-") or (
            entry.name.startswith("v-") and entry.name != live
        )
        if entry.is_dir() and stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    (directory / (CURRENT + ".tmp")).unlink(missing_ok=True)
    return removed


class VersionWriter:
    """Builds a new version in a temporary directory and publishes it atomically."""

    def __init__(
        self, directory: Path, base: Index | None, backend: VectorBackend | None = None
    ) -> None:
        self.directory = directory
        self.tag = uuid.uuid4().hex[:12]
        self.tmp = directory / f".tmp-{self.tag}"
        self.tmp.mkdir()
        self.base = base
        self.backend = backend or FaissBackend()
        self.db = sqlite3.connect(self.tmp / CHUNKS)
        self.vectors: VectorWriter | None = None
        if base is not None:
            base.db.backup(self.db)
            self.ensure_vectors(int(base.manifest["embedder"]["dimension"]))
        else:
            self.db.executescript(SCHEMA)

    def ensure_vectors(self, dimension: int) -> None:
        if self.vectors is None:
            base = self.base
            self.vectors = self.backend.writer(
                self.directory,
                self.tag,
                vectors_entry(base.manifest) if base else None,
                base.path if base else None,
                dimension,
            )

    def remove_documents(self, doc_ids: list[str]) -> int:
        """Drop every chunk of these documents from vectors, table and full-text index."""
        ids: list[int] = []
        for start in range(0, len(doc_ids), 500):
            batch = doc_ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = self.db.execute(f"SELECT id FROM chunks WHERE doc_id IN ({marks})", batch)
            ids.extend(r[0] for r in rows)
        if ids and self.vectors is not None:
            self.vectors.remove(np.array(ids, dtype=np.int64))
            self.db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in ids])
            self.db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
        return len(ids)

    def next_id(self) -> int:
        (top,) = self.db.execute("SELECT coalesce(max(id), -1) FROM chunks").fetchone()
        return int(top) + 1

    def add_chunks(self, rows: list[tuple], vectors: np.ndarray) -> None:
        """rows: (id, doc_id, chunk_no, start, end, title, text), aligned with vectors."""
        self.ensure_vectors(vectors.shape[1])
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        self.vectors.add(ids, vectors, [r[6] for r in rows])
        self.db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.executemany(
            "INSERT INTO chunks_fts (rowid, title, text) VALUES (?, ?, ?)",
            [(r[0], r[5], r[6]) for r in rows],
        )

    def chunk_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def publish(self, manifest: dict[str, Any]) -> str:
        """Write, fsync, rename, then point CURRENT at the new version. Returns its name."""
        self.db.commit()
        self.db.close()
        entry = self.vectors.save(self.tmp)
        version = f"v-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"
        manifest = dict(manifest, version=version, format_version=FORMAT_VERSION, vectors=entry)
        files = [f for f in (VECTORS, CHUNKS) if (self.tmp / f).is_file()]
        manifest["files"] = {f: sha256_file(self.tmp / f) for f in files}
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        for name in [*files, MANIFEST]:
            _fsync(self.tmp / name)
        _fsync(self.tmp)
        os.rename(self.tmp, self.directory / version)
        _fsync(self.directory)
        pointer = self.directory / (CURRENT + ".tmp")
        pointer.write_text(version + "\n")
        _fsync(pointer)
        os.replace(pointer, self.directory / CURRENT)
        _fsync(self.directory)
        return version

    def abandon(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        if self.vectors is not None:
            self.vectors.abandon()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe_indexes(root: Path) -> list[dict[str, Any]]:
    """One summary per index from its manifest (cheap: no vectors are loaded)."""
    rows: list[dict[str, Any]] = []
    for name in list_indexes(Path(root)):
        directory = Path(root) / name
        try:
            version = (directory / CURRENT).read_text().strip()
            manifest = read_manifest(directory / version)
        except (OSError, CorruptIndexError, IndexFormatError) as exc:
            rows.append({"name": name, "error": str(exc)})
            continue
        size = sum(f.stat().st_size for f in (directory / version).iterdir() if f.is_file())
        rows.append(
            {
                "name": name,
                "version": version,
                "documents": manifest["counts"]["documents"],
                "chunks": manifest["counts"]["chunks"],
                "embedder": manifest["embedder"]["name"],
                "chunking": manifest.get("chunking"),
                "created_at": manifest.get("created_at"),
                "updated_at": manifest.get("updated_at"),
                "build_seconds": manifest.get("last_build", {}).get("seconds", 0.0),
                "size_mb": size / 1e6,
            }
        )
    return rows
