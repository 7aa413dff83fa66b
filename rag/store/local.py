"""An index in a folder: FAISS vectors, a SQLite chunk store with FTS5, and a JSON manifest.

Layout of `indexes/<name>/`:
    CURRENT              the name of the live version directory (replaced atomically)
    v-<stamp>/           vectors.faiss, chunks.sqlite, manifest.json (checksums of the others)
    .tmp-*/              a build in progress; removed by the next writer
    .lock                held by the one writer

A version directory is written whole, fsynced and renamed before CURRENT points at it, so a
crash at any moment leaves the previous version loadable. Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunking import Chunk
from rag.errors import CorruptIndexError, IndexLockedError, IndexNotFoundError, InputError
from rag.store.base import ChunkRow, Index
from rag.store.faiss_vectors import FaissBackend, VectorStore, VectorWriter, vectors_entry
from rag.store.layout import (
    CHUNKS,
    CURRENT,
    FORMAT_VERSION,
    MANIFEST,
    VECTORS,
    index_dir,
    new_version,
    read_current,
    read_manifest,
    sha256_file,
    store_kind,
    summary,
)
from rag.store.lexical import LEXICAL_DIR, LOCK_FILES, TantivySearch, TantivyWriter

SCHEMA = """
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, chunk_no INTEGER NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL
);
CREATE INDEX chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE chunks_fts USING fts5(title, text, tokenize='porter unicode61');
"""


class LocalIndex(Index):
    """A version folder, loaded: memory-mapped vectors and the SQLite store on disk."""

    def __init__(
        self,
        name: str,
        path: Path,
        manifest: dict[str, Any],
        vectors: VectorStore,
        db,
        lexical: TantivySearch | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.manifest = manifest
        self.vectors = vectors
        self.db: sqlite3.Connection = db
        self.lexical = lexical  # None: FTS5 in the SQLite store

    @property
    def size(self) -> int:
        return self.vectors.size

    def dense_search(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        return self.vectors.search(query, n)

    def lexical_search(self, terms: list[str], n: int) -> list[tuple[int, float]]:
        if not terms:
            return []
        if self.lexical is not None:
            return self.lexical.search(terms, n)
        query = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        rows = self.db.execute(
            "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? "
            "ORDER BY bm25(chunks_fts) LIMIT ?",
            (query, n),
        ).fetchall()
        return [(int(r), float(s)) for r, s in rows]

    def similarity(self, query: np.ndarray, ids: list[int]) -> dict[int, float]:
        return self.vectors.similarity(query, ids)

    def chunks(self, ids: list[int]) -> dict[int, Chunk]:
        marks = ",".join("?" * len(ids))
        columns = "id, doc_id, chunk_no, start, end, title, text"
        query = f"SELECT {columns} FROM chunks WHERE id IN ({marks})"
        return {row[0]: Chunk(*row[1:]) for row in self.db.execute(query, ids)}

    def close(self) -> None:
        self.db.close()
        self.vectors.close()


class LocalStore:
    """Indexes as folders under `root` (the default store)."""

    kind = "local"

    def __init__(
        self, root: Path, vectors: FaissBackend | None = None, lexical: str = "fts5"
    ) -> None:
        self.root = Path(root)
        self.vectors = vectors or FaissBackend()
        self.lexical = lexical  # the engine new versions are written with
        self.where = str(self.root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CURRENT).is_file())

    def live_version(self, name: str) -> str | None:
        return read_current(index_dir(self.root, name))

    def live_manifest(self, name: str) -> dict[str, Any] | None:
        version = self.live_version(name)
        return read_manifest(index_dir(self.root, name) / version) if version else None

    def is_tidy(self, name: str) -> bool:
        directory = index_dir(self.root, name)
        if not directory.is_dir():
            return True
        live = read_current(directory)
        return all(p.name in {".lock", CURRENT, live} for p in directory.iterdir())

    def open(self, name: str) -> LocalIndex:
        """The live version, verifying every file against the manifest."""
        directory = index_dir(self.root, name)
        if not (directory / CURRENT).is_file():
            existing = self.names()
            known = f"; existing indexes: {', '.join(existing)}" if existing else "; none exist yet"
            raise IndexNotFoundError(
                f"no index named {name!r} under {self.root}{known}. Build one with "
                f"`rag index <corpus> --index {name}`"
            )
        for _attempt in range(3):
            version = (directory / CURRENT).read_text().strip()
            try:
                return load_version(directory / version, name, self.vectors)
            except CorruptIndexError:
                # A writer may have published and removed this version between our two reads.
                if (directory / CURRENT).read_text().strip() == version:
                    raise
        raise CorruptIndexError(f"index {name!r} kept changing while loading; try again")

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        return writer_lock(index_dir(self.root, name))

    def clean(self, name: str) -> None:
        directory = index_dir(self.root, name)
        if directory.is_dir():
            remove_leftovers(directory)

    def writer(self, name: str, base: Index | None) -> LocalWriter:
        assert base is None or isinstance(base, LocalIndex)
        return LocalWriter(index_dir(self.root, name), base, self.vectors, self.lexical)

    def describe(self) -> list[dict[str, Any]]:
        """One summary per index from its manifest (cheap: no vectors are loaded)."""
        rows: list[dict[str, Any]] = []
        for name in self.names():
            directory = self.root / name
            try:
                version = (directory / CURRENT).read_text().strip()
                manifest = read_manifest(directory / version)
            except (OSError, CorruptIndexError) as exc:
                rows.append({"name": name, "error": str(exc)})
                continue
            size = sum(f.stat().st_size for f in (directory / version).iterdir() if f.is_file())
            rows.append(summary(name, manifest, size / 1e6))
        return rows


def load_version(path: Path, name: str, backend: FaissBackend | None = None) -> LocalIndex:
    manifest = read_manifest(path)
    if store_kind(manifest) != "local" or vectors_entry(manifest)["backend"] != "faiss":
        raise CorruptIndexError(
            f"index version {path} keeps its vectors in {vectors_entry(manifest)['backend']}, "
            "a layout this rag no longer reads; rebuild it with `rag index ... --rebuild`"
        )
    engine = lexical_engine(manifest)
    listed = set(manifest["files"])
    lexical_files = {f for f in listed if f.startswith(LEXICAL_DIR + "/")}
    if listed - lexical_files != {CHUNKS, VECTORS} or bool(lexical_files) != (engine == "tantivy"):
        raise CorruptIndexError(f"index manifest {path / MANIFEST} lists unexpected files")
    for entry in path.iterdir():  # e.g. a planted pickle: nothing else belongs in a version
        if entry.name == LEXICAL_DIR and engine == "tantivy" and entry.is_dir():
            for inner in entry.iterdir():
                known = f"{LEXICAL_DIR}/{inner.name}" in listed
                if not known and not (inner.name in LOCK_FILES and inner.stat().st_size == 0):
                    raise CorruptIndexError(
                        f"unexpected file {inner} in index version {path.name}; remove it or "
                        "rebuild"
                    )
        elif entry.name not in (CHUNKS, VECTORS, MANIFEST):
            raise CorruptIndexError(
                f"unexpected file {entry} in index version {path.name}; remove it or rebuild"
            )
    for filename, expected in manifest["files"].items():
        file = path / filename
        if ".." in Path(filename).parts or not file.is_file():
            raise CorruptIndexError(f"index file {file} is missing; rebuild the index")
        if sha256_file(file) != expected:
            raise CorruptIndexError(
                f"index file {file} does not match its checksum (truncated or altered); "
                "rebuild the index with `rag index ... --rebuild`"
            )
    vectors = (backend or FaissBackend()).open(path, vectors_entry(manifest))
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
        raise CorruptIndexError(
            f"{path / CHUNKS} holds {count} chunks but {path / VECTORS} holds {size} "
            "vectors; rebuild the index"
        )
    lexical = TantivySearch(path / LEXICAL_DIR) if engine == "tantivy" else None
    return LocalIndex(name, path, manifest, vectors, db, lexical)


def lexical_engine(manifest: dict[str, Any]) -> str:
    """The lexical engine of a folder version: "fts5" (in chunks.sqlite) or "tantivy"."""
    return manifest.get("lexical", {}).get("engine", "fts5")


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
    live = read_current(directory)
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


class LocalWriter:
    """Builds a new version in a temporary directory and publishes it atomically."""

    def __init__(
        self,
        directory: Path,
        base: LocalIndex | None,
        backend: FaissBackend | None = None,
        lexical: str = "fts5",
    ) -> None:
        if base is not None and lexical_engine(base.manifest) != lexical:
            raise InputError(
                f"index {base.name!r} searches words with {lexical_engine(base.manifest)}, "
                f"settings now ask for {lexical} (RAG_LEXICAL); pass --rebuild to rebuild it"
            )
        self.directory = directory
        self.tag = uuid.uuid4().hex[:12]
        self.tmp = directory / f".tmp-{self.tag}"
        self.tmp.mkdir(parents=True)
        self.base = base
        self.backend = backend or FaissBackend()
        self.db = sqlite3.connect(self.tmp / CHUNKS)
        self.vectors: VectorWriter | None = None
        self.engine = lexical
        self.lexical: TantivyWriter | None = None
        if lexical == "tantivy":
            base_lexical = base.path / LEXICAL_DIR if base is not None else None
            self.lexical = TantivyWriter(self.tmp / LEXICAL_DIR, base_lexical)
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
            if self.lexical is not None:
                self.lexical.remove(ids)
            else:
                self.db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
        return len(ids)

    def next_id(self) -> int:
        (top,) = self.db.execute("SELECT coalesce(max(id), -1) FROM chunks").fetchone()
        return int(top) + 1

    def add_chunks(self, rows: list[ChunkRow], vectors: np.ndarray) -> None:
        """rows: (id, doc_id, chunk_no, start, end, title, text), aligned with vectors."""
        self.ensure_vectors(vectors.shape[1])
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        self.vectors.add(ids, vectors, [r[6] for r in rows])
        self.db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        if self.lexical is not None:
            self.lexical.add(rows)
            return
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
        version = new_version()
        manifest = dict(
            manifest,
            version=version,
            format_version=FORMAT_VERSION,
            store="local",
            vectors=entry,
            lexical={"engine": self.engine},
        )
        files = [VECTORS, CHUNKS]
        if self.lexical is not None:
            files += self.lexical.save()
            _fsync(self.tmp / LEXICAL_DIR)
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
        if self.lexical is not None:
            self.lexical.abandon()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export_chunks(index: LocalIndex, batch: int = 10_000) -> Iterator[tuple[list, np.ndarray]]:
    """(rows, vectors) of every chunk of a folder version, in id order: to copy it elsewhere."""
    from rag.store.faiss_vectors import all_vectors

    ids, vectors = all_vectors(index.vectors.index)
    order = np.argsort(ids)
    ids, vectors = ids[order], vectors[order]
    for start in range(0, len(ids), batch):
        wanted = ids[start : start + batch].tolist()
        chunks = index.chunks(wanted)
        rows = [(i, *astuple(chunks[i])) for i in wanted]
        yield rows, vectors[start : start + batch]
