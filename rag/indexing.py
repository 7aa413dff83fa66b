"""Build or update an index from a corpus, embedding only what changed."""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from rag.calibration import calibrate_index, read_calibration
from rag.chunking import Chunk, Chunker
from rag.config import Settings
from rag.documents import Corpus, Document, load_corpus
from rag.embeddings import Embedder, load_embedder, resolve_embedder
from rag.errors import CorruptIndexError, InputError, RagError
from rag.gate import CalibrationError, is_recorded_fallback
from rag.progress import bar, progress
from rag.store import (
    FaissBackend,
    Index,
    LocalStore,
    Store,
    VersionWriter,
    check_name,
    now,
    open_store,
    store_kind,
)

log = logging.getLogger(__name__)
EMBED_BATCH = 256


@dataclass
class SyncReport:
    """What one `rag index` run did; printed as the summary and returned as JSON."""

    index: str
    version: str | None
    new: int
    changed: int
    removed: int
    unchanged: int
    chunks_added: int
    chunks_removed: int
    documents: int
    chunks: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    rebuilt: bool = False
    # the refusal gate of the new version (rag/calibration.py); its seconds are not in `seconds`
    calibration: dict[str, Any] | None = None

    @property
    def written(self) -> bool:
        return bool(self.new or self.changed or self.removed or self.rebuilt)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"chunks_per_second": self.chunks_per_second}

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_added / self.seconds if self.seconds else 0.0


def sync_index(
    corpus: Corpus,
    store: Store | Path,
    name: str,
    embedder: Embedder,
    chunker: Chunker,
    *,
    rebuild: bool = False,
    show_progress: bool = True,
    backend: FaissBackend | None = None,
    engine: Engine | None = None,
) -> SyncReport:
    """Make index `name` match the corpus: add new, re-embed changed, drop removed documents.

    `store` is where the index lives (`rag.store.open_store`); a path is a folder store whose
    FAISS options `backend` gives. `engine` chunks and embeds: in this process by default, or
    on a Ray cluster (`rag.ray_ingest.RayEngine`); either way this writer stores the result.
    """
    started = time.perf_counter()
    check_name(name)
    if isinstance(store, (str, Path)):
        store = LocalStore(Path(store), backend)
    with store.lock(name):
        store.clean(name)  # what killed builds left, and versions past their grace period
        base = None
        if not rebuild and store.live_version(name) is not None:
            base = store.open(name)
        failed = True
        try:
            if base is not None:
                _check_compatible(base, embedder, chunker, store)
            report = _apply(
                corpus, store, name, base, embedder, chunker, show_progress, started, engine
            )
            failed = False
        except (OSError, sqlite3.Error, RuntimeError) as exc:
            if not _disk_full(exc):
                raise
            raise RagError(
                f"no space left on device while writing index {name!r} in {store.where}; "
                "the previous version is intact and still in service. Free some space and run "
                "`rag index` again"
            ) from None
        finally:
            if base is not None:
                base.close()
            try:
                store.clean(name)  # a failed build, or the version the index moved on from
            except RagError as exc:
                if not failed:
                    raise
                log.warning("could not clean up after the failed build: %s", exc)
    report.rebuilt = base is None
    report.seconds = time.perf_counter() - started
    return report


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC as the OS, SQLite or FAISS (a RuntimeError quoting the OS error) reports it."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "disk is full" in text or "no space left" in text


def _check_compatible(base: Index, embedder: Embedder, chunker: Chunker, store: Store) -> None:
    base.check_embedder(embedder.name, embedder.dimension)
    built_in = store_kind(base.manifest)
    if built_in != store.kind:
        raise InputError(
            f"index {base.name!r} lives in the {built_in} store, settings now ask for "
            f"{store.kind}; pass --rebuild to rebuild it there"
        )
    built = base.manifest["chunking"]
    wanted = {"chunk_size": chunker.chunk_size, "chunk_overlap": chunker.chunk_overlap}
    if built != wanted:
        raise InputError(
            f"index {base.name!r} was chunked with {built}, settings now ask for {wanted}; "
            "pass --rebuild to rebuild it with the new settings"
        )


def _apply(
    corpus: Corpus,
    store: Store,
    name: str,
    base: Index | None,
    embedder: Embedder,
    chunker: Chunker,
    show_progress: bool,
    started: float,
    engine: Engine | None,
) -> SyncReport:
    current = {doc.id: doc for doc in corpus.documents}
    new, changed, removed = diff_documents(base.manifest["documents"] if base else {}, current)
    report = _report(name, base.manifest if base else None, corpus, new, changed, removed)
    if base is not None and not (new or changed or removed):
        return report

    writer = store.writer(name, base)
    try:
        report.chunks_removed = writer.remove_documents([d.id for d in changed] + removed)
        todo = new + changed
        batches = (engine or LocalEngine()).embed(todo, embedder, chunker, show_progress)
        per_doc = _write(writer, batches, embedder)
        report.chunks_added = sum(per_doc.values())
        report.chunks = writer.chunk_count()
        report.seconds = time.perf_counter() - started
        manifest = _manifest(name, base, embedder, chunker, current, per_doc, report)
        report.version = writer.publish(manifest)
    except BaseException:
        writer.abandon()
        raise
    return report


def diff_documents(
    old: dict[str, dict], current: dict[str, Document]
) -> tuple[list[Document], list[Document], list[str]]:
    """(new, changed, removed) by document id and content hash."""
    new = [d for i, d in current.items() if i not in old]
    changed = [d for i, d in current.items() if i in old and old[i]["hash"] != d.hash]
    removed = [i for i in old if i not in current]
    return new, changed, removed


def _report(
    name: str,
    manifest: dict[str, Any] | None,
    corpus: Corpus,
    new: list[Document],
    changed: list[Document],
    removed: list[str],
) -> SyncReport:
    return SyncReport(
        index=name,
        version=manifest["version"] if manifest else None,
        new=len(new),
        changed=len(changed),
        removed=len(removed),
        unchanged=len(corpus.documents) - len(new) - len(changed),
        chunks_added=0,
        chunks_removed=0,
        documents=len(corpus.documents),
        chunks=manifest["counts"]["chunks"] if manifest else 0,
        skipped=corpus.skipped,
    )


def check_up_to_date(
    corpus: Corpus, store: Store | Path, name: str, settings: Settings
) -> SyncReport | None:
    """A report when the index already matches corpus and settings, without loading a model.

    This keeps a no-change `rag index` to the cost of reading the corpus.
    """
    store = open_store(store)
    try:
        manifest = store.live_manifest(check_name(name))
        if manifest is None or not store.is_tidy(name):
            return None  # a killed build left something: the locked path below cleans it
    except (OSError, CorruptIndexError):
        return None  # e.g. a writer just replaced that version: the locked path decides
    chunking = {"chunk_size": settings.chunk_size, "chunk_overlap": settings.chunk_overlap}
    if manifest["embedder"]["name"] != resolve_embedder(settings.embedder)[0]:
        return None
    if manifest.get("chunking") != chunking:
        return None
    if store_kind(manifest) != store.kind:
        return None
    if (
        store.kind == "local"
        and manifest.get("lexical", {}).get("engine", "fts5") != settings.lexical
    ):
        return None
    current = {doc.id: doc for doc in corpus.documents}
    new, changed, removed = diff_documents(manifest["documents"], current)
    if new or changed or removed:
        return None
    return _report(name, manifest, corpus, new, changed, removed)


class Engine(Protocol):
    """Chunks and embeds documents, yielding (chunks, vectors) batches in document order."""

    def embed(
        self, docs: list[Document], embedder: Embedder, chunker: Chunker, show_progress: bool
    ) -> Iterator[tuple[list[Chunk], np.ndarray]]: ...


class LocalEngine:
    """In this process, with the loaded embedder, in large batches so memory stays bounded."""

    def embed(
        self, docs: list[Document], embedder: Embedder, chunker: Chunker, show_progress: bool
    ) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        chunks: list[Chunk] = []
        for doc in progress(docs, total=len(docs), desc="chunking", unit="doc", show=show_progress):
            chunks.extend(chunker.split(doc))
        with bar(len(chunks), desc="embedding", unit="chunk", show=show_progress) as meter:
            for start in range(0, len(chunks), EMBED_BATCH):
                batch = chunks[start : start + EMBED_BATCH]
                yield batch, embedder.encode([c.embed_text for c in batch])
                meter.update(len(batch))


def _write(
    writer: VersionWriter, batches: Iterator[tuple[list[Chunk], np.ndarray]], embedder: Embedder
) -> dict[str, int]:
    """Give each chunk the next id and hand it to the store's writer; chunks per document."""
    next_id = writer.next_id()
    per_doc: dict[str, int] = {}
    for batch, vectors in batches:
        if not batch:
            continue
        if vectors.shape != (len(batch), embedder.dimension):
            raise RagError(
                f"embedder returned vectors of shape {vectors.shape}, expected "
                f"({len(batch)}, {embedder.dimension})"
            )
        rows = [
            (next_id + n, c.doc_id, c.chunk_no, c.start, c.end, c.title, c.text)
            for n, c in enumerate(batch)
        ]
        writer.add_chunks(rows, vectors)
        next_id += len(batch)
        for chunk in batch:
            per_doc[chunk.doc_id] = per_doc.get(chunk.doc_id, 0) + 1
    return per_doc


def _manifest(
    name: str,
    base: Index | None,
    embedder: Embedder,
    chunker: Chunker,
    current: dict[str, Document],
    per_doc: dict[str, int],
    report: SyncReport,
) -> dict[str, Any]:
    old = base.manifest["documents"] if base else {}
    documents = {
        doc_id: {
            "hash": doc.hash,
            "title": doc.title,
            "chunks": per_doc.get(doc_id, old.get(doc_id, {}).get("chunks", 0)),
        }
        for doc_id, doc in current.items()
    }
    stamp = now()
    return {
        "name": name,
        "embedder": {
            "name": embedder.name,
            "dimension": embedder.dimension,
            "max_seq_length": embedder.max_seq_length,
        },
        "chunking": {"chunk_size": chunker.chunk_size, "chunk_overlap": chunker.chunk_overlap},
        "counts": {"documents": len(documents), "chunks": report.chunks},
        "documents": documents,
        "created_at": base.manifest["created_at"] if base else stamp,
        "updated_at": stamp,
        "last_build": {
            "new": report.new,
            "changed": report.changed,
            "removed": report.removed,
            "chunks_added": sum(per_doc.values()),
            "seconds": round(report.seconds, 3),
        },
    }


def make_chunker(embedder: Embedder, settings: Settings) -> Chunker:
    return Chunker(
        embedder.tokenizer, settings.chunk_size, settings.chunk_overlap, embedder.max_seq_length
    )


def index_corpus(
    corpus_path: Path,
    name: str,
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    rebuild: bool = False,
    show_progress: bool = True,
    engine: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
) -> SyncReport:
    """Load a corpus and sync it into the store settings name (the `rag index` command).

    `engine="ray"` chunks and embeds on Ray (`rag.ray_ingest`), at `ray_address` or locally.
    """
    check_name(name)
    started = time.perf_counter()
    corpus = load_corpus(corpus_path)
    store = open_store(settings)
    texts = {doc.id: doc.text for doc in corpus.documents}
    if not rebuild and (report := check_up_to_date(corpus, store, name, settings)):
        report.seconds = time.perf_counter() - started
        if needs_calibration(settings, name, report.version):  # missing or unreadable
            report.calibration = calibrate_index(
                settings,
                name,
                embedder or load_embedder(settings),
                texts,
                show_progress=show_progress,
            )
        return report
    embedder = embedder or load_embedder(settings)
    before = _live_documents(store, name)
    report = sync_index(
        corpus,
        store,
        name,
        embedder,
        make_chunker(embedder, settings),
        rebuild=rebuild,
        show_progress=show_progress,
        engine=_engine(engine, settings, ray_address),
    )
    if report.written or needs_calibration(settings, name, report.version):
        changed = None
        if before is not None and not rebuild:
            hashes = {doc.id: doc.hash for doc in corpus.documents}
            changed = {i for i in hashes if before[0].get(i) != hashes[i]} | (
                set(before[0]) - set(hashes)
            )
        report.calibration = calibrate_index(
            settings,
            name,
            embedder,
            texts,
            previous_version=before[1] if before else None,
            changed=changed,
            show_progress=show_progress,
        )
    return report


def _live_documents(store: Store, name: str) -> tuple[dict[str, str], str] | None:
    """The live version's document hashes and its version, for an incremental calibration."""
    try:
        manifest = store.live_manifest(name)
    except (OSError, CorruptIndexError):
        return None
    if manifest is None:
        return None
    return {i: d["hash"] for i, d in manifest["documents"].items()}, manifest["version"]


def needs_calibration(settings: Settings, name: str, version: str | None) -> bool:
    """A calibrated gate is wanted and this version has no readable calibration."""
    if version is None or settings.refusal_gate == "fixed" or not settings.calibration_probes:
        return False
    try:
        read_calibration(settings, name, version)
    except CalibrationError:
        return not is_recorded_fallback(settings, name, version)
    return False


def _engine(name: str, settings: Settings, address: str | None) -> Engine:
    if name == "ray":
        from rag.ray_ingest import RayEngine

        return RayEngine(settings, address)
    if address:
        raise InputError("--ray-address needs --engine ray")
    if name != "local":
        raise InputError(f"unknown engine {name!r}: use local or ray")
    return LocalEngine()
