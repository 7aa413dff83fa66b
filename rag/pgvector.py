"""Vectors in PostgreSQL with pgvector, through langchain-postgres's `PGVectorStore`.

Each version of an index gets its own table (`rag_<index hash>_<version tag>`): a writer
copies the live table, applies its removals and additions, and the version is published by
the same rename of `CURRENT` as with FAISS, so readers never see a half-written version. The
previous version's table is kept until the next write starts, for readers still holding it.
Chunk texts stay in the version's SQLite store (it also serves BM25); the table holds them too,
so that the table is a complete LangChain vector store on its own.

Needs the `pgvector` extra and `RAG_PG_DSN` (a libpq URI such as
`postgresql://user:pass@host/db`); the user must be allowed to `CREATE EXTENSION vector` or it
must exist already.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from langchain_core.embeddings import Embeddings
from langchain_postgres import Column, PGEngine, PGVectorStore

from rag.errors import CorruptIndexError, InputError, RagError

ID, CONTENT, EMBEDDING = "chunk_id", "content", "embedding"


class VectorsGiven(Embeddings):
    """rag embeds with its own embedder and hands over vectors; nothing is embedded here."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise RagError("the pgvector store is given vectors by rag's embedder")

    def embed_query(self, text: str) -> list[float]:
        raise RagError("the pgvector store is given vectors by rag's embedder")


def table_prefix(directory: Path) -> str:
    """Tables of one index: several index roots may share a database."""
    return "rag_" + hashlib.sha1(str(Path(directory).resolve()).encode()).hexdigest()[:10] + "_"


class PgvectorBackend:
    name = "pgvector"

    def __init__(self, dsn: str | None) -> None:
        if not dsn:
            raise InputError(
                "the pgvector vector store needs a database: set RAG_PG_DSN to a libpq URI, "
                "e.g. postgresql://user:password@localhost:5432/rag"
            )
        self.dsn = dsn

    def connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            raise RagError(f"cannot connect to PostgreSQL at RAG_PG_DSN: {exc}") from None

    def engine(self) -> PGEngine:
        rest = self.dsn.partition("://")[2]
        return PGEngine.from_connection_string(f"postgresql+psycopg://{rest}")

    def open(self, path: Path, entry: dict[str, Any]) -> PgvectorVectors:
        table = entry["table"]
        with self.connect() as db:
            found = db.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
            if found is None:
                raise CorruptIndexError(
                    f"the vectors of {path} (table {table}) are missing from the database at "
                    "RAG_PG_DSN; rebuild the index with `rag index ... --rebuild`"
                )
        return PgvectorVectors(self, table)

    def writer(
        self,
        directory: Path,
        tag: str,
        base: dict[str, Any] | None,
        base_path: Path | None,
        dimension: int,
    ) -> PgvectorWriter:
        return PgvectorWriter(self, table_prefix(directory) + tag, base, dimension)

    def prune(self, directory: Path, keep: list[dict[str, Any]]) -> None:
        wanted = {e["table"] for e in keep if e.get("backend") == self.name}
        pattern = table_prefix(directory).replace("_", r"\_") + "%"
        with self.connect() as db:
            rows = db.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename LIKE %s",
                (pattern,),
            ).fetchall()
            for (table,) in rows:
                if table not in wanted:
                    db.execute(f'DROP TABLE IF EXISTS "{table}"')


class PgvectorVectors:
    """Search through LangChain's `PGVectorStore` (cosine distance, exact scan)."""

    def __init__(self, backend: PgvectorBackend, table: str) -> None:
        self.backend = backend
        self.table = table
        self.db = backend.connect()
        self.engine = backend.engine()
        self.store = PGVectorStore.create_sync(
            self.engine, VectorsGiven(), table, id_column=ID, metadata_json_column=None
        )
        (self._size,) = self.db.execute(f'SELECT count(*) FROM "{table}"').fetchone()

    @property
    def size(self) -> int:
        return int(self._size)

    def search(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        if self.size == 0:
            return []
        hits = self.store.similarity_search_with_score_by_vector(query.tolist(), k=n)
        return [(int(doc.id), 1.0 - float(distance)) for doc, distance in hits]

    def similarity(self, query: np.ndarray, ids: list[int]) -> dict[int, float]:
        if not ids:
            return {}
        rows = self.db.execute(
            f'SELECT {ID}, 1 - ({EMBEDDING} <=> %s::vector) FROM "{self.table}" '
            f"WHERE {ID} = ANY(%s)",
            (vector_literal(query), [str(i) for i in ids]),
        ).fetchall()
        return {int(i): float(s) for i, s in rows}

    def close(self) -> None:
        self.db.close()
        self.engine._run_as_sync(self.engine.close())  # its event loop is LangChain's


class PgvectorWriter:
    def __init__(
        self, backend: PgvectorBackend, table: str, base: dict[str, Any] | None, dimension: int
    ) -> None:
        self.backend = backend
        self.table = table
        self.engine = backend.engine()
        with backend.connect() as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.engine.init_vectorstore_table(
            table,
            dimension,
            id_column=Column(ID, "TEXT", nullable=False),
            store_metadata=False,
            overwrite_existing=True,
        )
        if base is not None:
            with backend.connect() as db:
                db.execute(f'INSERT INTO "{table}" SELECT * FROM "{base["table"]}"')
        self.store = PGVectorStore.create_sync(
            self.engine, VectorsGiven(), table, id_column=ID, metadata_json_column=None
        )

    def add(self, ids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        self.store.add_embeddings(texts, vectors.tolist(), ids=[str(int(i)) for i in ids])

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.store.delete([str(int(i)) for i in ids])

    def save(self, directory: Path) -> dict[str, Any]:
        self.close()  # every statement has committed; the table is complete
        return {"backend": "pgvector", "table": self.table, "distance": "cosine"}

    def abandon(self) -> None:
        """Best effort: if the database is what failed, the next writer's prune drops it."""
        with contextlib.suppress(RagError, psycopg.Error):
            self.close()
            with self.backend.connect() as db:
                db.execute(f'DROP TABLE IF EXISTS "{self.table}"')

    def close(self) -> None:
        self.engine._run_as_sync(self.engine.close())


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.8g}" for x in vector) + "]"
