"""Lexical search of a folder version with tantivy: BM25 that prunes (RAG_LEXICAL=tantivy).

SQLite FTS5 scores every chunk holding any query word, so its cost grows with the corpus
(170 ms to 560 ms p50 at a million chunks here). Tantivy keeps block-max scores in its
posting lists and skips blocks that cannot reach the current top n (block-max WAND), so the
cost grows with n and the query, not with the corpus. Its files live in `lexical/` of the
version folder, are listed with checksums in the manifest like the others, and are copied and
updated (delete by chunk id, add) when a writer builds the next version.
"""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

from rag.errors import CorruptIndexError, InputError

LEXICAL_DIR = "lexical"
LOCK_FILES = (".tantivy-meta.lock", ".tantivy-writer.lock")  # empty; made by tantivy itself


def _tantivy():
    try:
        import tantivy
    except ImportError:
        raise InputError("RAG_LEXICAL=tantivy needs tantivy: pip install -e '.[tantivy]'") from None
    return tantivy


def schema():
    builder = _tantivy().SchemaBuilder()
    builder.add_integer_field("id", stored=True, indexed=True, fast=True)
    builder.add_text_field("body", tokenizer_name="en_stem", index_option="freq")
    return builder.build()


class TantivySearch:
    """The tantivy index of a loaded version (read-only; its files are memory-mapped)."""

    def __init__(self, path: Path) -> None:
        try:
            self.index = _tantivy().Index.open(str(path))
        except ValueError as exc:
            raise CorruptIndexError(f"cannot read the lexical index {path}: {exc}") from None
        self.searcher = self.index.searcher()

    def search(self, terms: list[str], n: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the n best chunks holding any of the terms."""
        if not terms:
            return []
        query = self.index.parse_query(" ".join(terms), ["body"])  # terms are \\w+ words
        hits = self.searcher.search(query, n).hits
        return [(int(self.searcher.doc(address)["id"][0]), float(score)) for score, address in hits]


class TantivyWriter:
    """The lexical index of a version being built: a copy of the base's, then changes."""

    def __init__(self, path: Path, base: Path | None) -> None:
        tantivy = _tantivy()
        self.path = path
        if base is not None:
            shutil.copytree(base, path)
            for name in LOCK_FILES:
                (path / name).unlink(missing_ok=True)
        else:
            path.mkdir()
        self.index = tantivy.Index(schema(), path=str(path), reuse=base is not None)
        self.writer = self.index.writer(heap_size=128_000_000, num_threads=1)
        self.document = tantivy.Document

    def add(self, rows: list[tuple]) -> None:
        for row in rows:
            self.writer.add_document(self.document(id=int(row[0]), body=f"{row[5]}\n{row[6]}"))

    def remove(self, ids: list[int]) -> None:
        for chunk_id in ids:
            self.writer.delete_documents_by_term("id", int(chunk_id))

    def save(self) -> list[str]:
        """Commit, drop unused files and the lock files; the files to checksum."""
        self.writer.commit()
        self.writer.garbage_collect_files()
        self.writer.wait_merging_threads()
        del self.writer, self.index
        gc.collect()  # tantivy releases its directory lock when the objects go
        for name in LOCK_FILES:
            (self.path / name).unlink(missing_ok=True)
        return sorted(f"{LEXICAL_DIR}/{p.name}" for p in self.path.iterdir() if p.is_file())

    def abandon(self) -> None:
        self.writer = self.index = None
        gc.collect()
