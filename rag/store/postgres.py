"""The whole index in PostgreSQL: chunks, full text, vectors (pgvector HNSW) and manifests.

Nothing of a version lives on the machine that serves it, so any number of `rag serve`
processes with empty index roots serve the same index from one database (RAG_PG_DSN).

    rag_versions (index_name, version, manifest jsonb, created_at, retired_at)
    rag_current  (index_name, version)            the live version of each index
    rag_<key>_<tag>_c                             chunks of one version: rows, a tsvector
                                                  (GIN; filled by the trigger function
                                                  rag_chunk_tsv) and the vector (HNSW)
    rag_<key>_<tag>_t                             document frequency of each lexeme (for BM25)

A writer loads a new version's tables with COPY, builds their indexes, then publishes by
inserting its `rag_versions` row and switching `rag_current` in one transaction: readers see
the old version or the new one, never half of one. A reader keeps the tables of the version it
loaded; a version replaced by a newer one is dropped by a later writer once it has been retired
for `grace_seconds`, so requests in flight finish on it. Tables that no `rag_versions` row names
(a killed build) are dropped by the next writer of that index.

Lexical ranking is BM25 (k1 1.2, b 0.75, as SQLite FTS5 computes it) over PostgreSQL's
`english` text search configuration: the GIN index finds the chunks holding a query lexeme;
for each, `setweight` + `ts_filter` keep only the query's lexemes of its tsvector (both in C,
so the rest of the chunk's lexemes never reach SQL), whose position counts are the term
frequencies; idf comes from the version's document frequencies (table `_t`), the length from
`len` (words of title and text). Chunks that hold only common query words and so cannot enter
the top n are never scored (MaxScore, in `PostgresIndex.lexical_search`). On covidqa-dev's
chunks this recalls the gold document in the top 5 for 0.914 of the questions (FTS5 0.913);
idf x `ts_rank` of each lexeme, tried first, reached 0.908, and unnesting whole tsvectors
0.914 at four times the time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import queue
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from rag.chunking import Chunk
from rag.errors import (
    CorruptIndexError,
    IndexLockedError,
    IndexNotFoundError,
    InputError,
    RagError,
)
from rag.store.base import ChunkRow, Index
from rag.store.layout import FORMAT_VERSION, check_manifest, new_version, summary

LANGUAGE = "english"
T = TypeVar("T")
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64
MAX_EF_SEARCH = 1000  # pgvector's upper bound
EF_SEARCH = 400  # at least; see dense_search
LOADERS = min(4, os.cpu_count() or 1)  # parallel COPY streams of a bulk load
BUILD_MEMORY_MB = 4096  # most maintenance_work_mem a build asks for (1M chunks need ~2.3 GB)
COLUMNS = {  # what a chunk table must look like; a table altered by hand is refused
    "id": "bigint",
    "doc_id": "text",
    "chunk_no": "integer",
    "start": "integer",
    "end": "integer",
    "title": "text",
    "text": "text",
    "len": "integer",
    "tsv": "tsvector",
}
SCHEMA = """
CREATE TABLE IF NOT EXISTS rag_versions (
    index_name text NOT NULL,
    version text NOT NULL,
    manifest jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    PRIMARY KEY (index_name, version)
);
CREATE TABLE IF NOT EXISTS rag_current (
    index_name text PRIMARY KEY,
    version text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
)
"""
TERMS = """
SELECT q.lexeme, s.ndoc
FROM unnest(to_tsvector('{language}', %(text)s)) AS q
JOIN "{terms}" AS s ON s.word = q.lexeme
"""
SCORE = """
SELECT c.id, sum(t.idf * u.tf * 2.2 / (u.tf + 1.2 * (0.25 + 0.75 * c.len / %(avg)s))) AS score
FROM "{chunks}" AS c
CROSS JOIN LATERAL (
    SELECT lexeme, cardinality(positions) AS tf
    FROM unnest(ts_filter(setweight(c.tsv, 'A', %(lexemes)s::text[]), '{{a}}'))
) AS u
JOIN unnest(%(lexemes)s::text[], %(idfs)s::float8[]) AS t(lexeme, idf) ON t.lexeme = u.lexeme
WHERE c.tsv @@ (
    SELECT string_agg(quote_literal(m), ' | ')::tsquery FROM unnest(%(match)s::text[]) AS m
)
GROUP BY c.id
ORDER BY score DESC, c.id
LIMIT %(k)s
"""
TSV_TRIGGER = "rag_chunk_tsv"
TSV_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {TSV_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tsv IS NULL THEN
        NEW.tsv := to_tsvector('{LANGUAGE}', NEW.title || ' ' || NEW.text);
    END IF;
    RETURN NEW;
END $$
"""
BM25_BOUND = 2.2  # k1 + 1: a term adds less than idf x this to any chunk's score


def index_key(name: str) -> str:
    """The table prefix of one index (names may hold characters tables cannot)."""
    return "rag_" + hashlib.sha1(name.encode()).hexdigest()[:8] + "_"


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", dsn)


class PostgresStore:
    """Indexes in one PostgreSQL database with pgvector."""

    kind = "postgres"

    def __init__(self, dsn: str | None, *, grace_seconds: float = 300.0) -> None:
        if not dsn:
            raise InputError(
                "the PostgreSQL store needs a database: set RAG_PG_DSN to a libpq URI, "
                "e.g. postgresql://user:password@localhost:5432/rag"
            )
        self.dsn = dsn
        self.grace_seconds = grace_seconds
        self.where = f"the database at {redact(dsn)}"
        self._meta: psycopg.Connection | None = None  # for the cheap, frequent queries
        self._meta_lock = threading.Lock()
        self._schema_ready = False

    # -- connections -------------------------------------------------------------------

    def connect(self) -> psycopg.Connection:
        """A new autocommit connection with the vector type registered and the schema made."""
        try:
            db = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[-1]
            raise RagError(
                f"cannot connect to PostgreSQL at RAG_PG_DSN ({self.where}): {reason}"
            ) from None
        try:
            if not self._schema_ready:
                self._make_schema(db)
            register_vector(db)
        except BaseException:
            db.close()
            raise
        return db

    def _make_schema(self, db: psycopg.Connection) -> None:
        present = db.execute(
            "SELECT to_regclass('rag_versions') IS NOT NULL AND to_regclass('rag_current') IS NOT "
            "NULL AND EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')"
        ).fetchone()[0]
        if present:  # a replica may have no right to create anything, and needs none
            self._schema_ready = True
            return
        try:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(hashtext('rag-schema'))")
                if (
                    db.execute("SELECT 1 FROM pg_extension WHERE extname='vector'").fetchone()
                    is None
                ):
                    db.execute("CREATE EXTENSION IF NOT EXISTS vector")
                for statement in SCHEMA.split(";"):
                    db.execute(statement)
        except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFile) as exc:
            raise RagError(
                f"{self.where} has no pgvector extension available ({exc}); install pgvector "
                "on the server (https://github.com/pgvector/pgvector)"
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise RagError(
                f"{self.where}: cannot create the pgvector extension or rag's tables ({exc}); "
                "run `CREATE EXTENSION vector` as a superuser, or grant CREATE to this user"
            ) from None
        self._schema_ready = True

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """A short metadata query on the store's one shared connection (reconnects once)."""
        with self._meta_lock:
            for attempt in (1, 2):
                if self._meta is None or self._meta.closed:
                    self._meta = self.connect()
                try:
                    return self._meta.execute(sql, params).fetchall()
                except psycopg.OperationalError as exc:
                    self._meta.close()
                    if attempt == 2:
                        raise RagError(f"lost the connection to {self.where}: {exc}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._meta_lock:
            if self._meta is not None:
                self._meta.close()

    # -- reading -----------------------------------------------------------------------

    def names(self) -> list[str]:
        return [r[0] for r in self.query("SELECT index_name FROM rag_current ORDER BY 1")]

    def live_version(self, name: str) -> str | None:
        rows = self.query("SELECT version FROM rag_current WHERE index_name = %s", (name,))
        return rows[0][0] if rows else None

    def live_manifest(self, name: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT v.manifest FROM rag_current c JOIN rag_versions v USING (index_name, version) "
            "WHERE c.index_name = %s",
            (name,),
        )
        return check_manifest(rows[0][0], f"{name!r} in {self.where}") if rows else None

    def is_tidy(self, name: str) -> bool:
        with contextlib.closing(self.connect()) as db:
            versions, tables = self._garbage(db, name)
        return not versions and not tables

    def open(self, name: str) -> PostgresIndex:
        manifest = self.live_manifest(name)
        if manifest is None:
            existing = self.names()
            known = f"; existing indexes: {', '.join(existing)}" if existing else "; none exist yet"
            raise IndexNotFoundError(
                f"no index named {name!r} in {self.where}{known}. Build one with "
                f"`rag index <corpus> --index {name}`"
            )
        if manifest.get("store") != self.kind:
            raise CorruptIndexError(f"index {name!r} in {self.where} has no PostgreSQL tables")
        with contextlib.closing(self.connect()) as db:
            check_tables(db, manifest, name)
        return PostgresIndex(name, manifest, Connections(self))

    def describe(self) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT c.index_name, v.manifest FROM rag_current c "
            "JOIN rag_versions v USING (index_name, version) ORDER BY 1"
        )
        out = []
        for name, manifest in rows:
            tables = [manifest["tables"]["chunks"], manifest["tables"]["terms"]]
            (size,) = self.query(
                "SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0) "
                "FROM unnest(%s::text[]) AS t",
                (tables,),
            )[0]
            out.append(summary(name, manifest, int(size) / 1e6))
        return out

    # -- writing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """A session advisory lock: released by the server if the writer dies."""
        db = self.connect()
        key = f"rag-index:{name}"
        got = False
        try:
            (got,) = db.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
            if not got:
                raise IndexLockedError(
                    f"another `rag index` is writing index {name!r} in {self.where}; "
                    "wait for it to finish"
                )
            yield
        finally:
            # Unlocked before the connection goes: the server ends a closed session a moment
            # later, and the next writer in this process would find the lock still held.
            if got:
                with contextlib.suppress(psycopg.Error):
                    db.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
            db.close()

    def clean(self, name: str) -> None:
        """Drop versions retired longer than the grace period and tables of killed builds."""
        with contextlib.closing(self.connect()) as db:
            versions, tables = self._garbage(db, name)
            for table in tables:
                db.execute(f'DROP TABLE IF EXISTS "{table}"')
            if versions:
                db.execute(
                    "DELETE FROM rag_versions WHERE index_name = %s AND version = ANY(%s)",
                    (name, versions),
                )

    def _garbage(self, db: psycopg.Connection, name: str) -> tuple[list[str], list[str]]:
        """(expired versions, tables to drop) of one index."""
        expired = db.execute(
            "SELECT version FROM rag_versions WHERE index_name = %s AND retired_at IS NOT NULL "
            "AND retired_at < now() - make_interval(secs => %s) AND version <> coalesce("
            "(SELECT version FROM rag_current WHERE index_name = %s), '')",
            (name, self.grace_seconds, name),
        ).fetchall()
        versions = [r[0] for r in expired]
        kept = db.execute(
            "SELECT manifest->'tables'->>'chunks', manifest->'tables'->>'terms' FROM rag_versions "
            "WHERE index_name = %s AND NOT (version = ANY(%s))",
            (name, versions),
        ).fetchall()
        keep = {t for row in kept for t in row}
        pattern = index_key(name).replace("_", r"\_") + "%"
        present = db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE %s",
            (pattern,),
        ).fetchall()
        return versions, sorted(t for (t,) in present if t not in keep)

    def writer(self, name: str, base: Index | None) -> PostgresWriter:
        assert base is None or isinstance(base, PostgresIndex)
        return PostgresWriter(self, name, base)


def check_tables(db: psycopg.Connection, manifest: dict[str, Any], name: str) -> None:
    """The tables a manifest names exist, have rag's columns and hold its chunks."""
    chunks, terms = manifest["tables"]["chunks"], manifest["tables"]["terms"]
    for table in (chunks, terms):
        if db.execute("SELECT to_regclass(%s)", (f'"{table}"',)).fetchone()[0] is None:
            raise CorruptIndexError(
                f"table {table} of index {name!r} version {manifest['version']} is missing from "
                "the database; rebuild the index with `rag index ... --rebuild`"
            )
    found = dict(
        db.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (f'"{chunks}"',),
        ).fetchall()
    )
    dimension = int(manifest["embedder"]["dimension"])
    wanted = COLUMNS | {"embedding": f"vector({dimension})"}
    if found != wanted:
        wrong = sorted(set(found.items()) ^ set(wanted.items()))
        raise CorruptIndexError(
            f"table {chunks} of index {name!r} does not have rag's columns (differs in "
            f"{', '.join(f'{c} {t}' for c, t in wrong)}); was it altered by hand? "
            "Rebuild the index with `rag index ... --rebuild`"
        )
    (count,) = db.execute(f'SELECT count(*) FROM "{chunks}"').fetchone()
    if count != manifest["counts"]["chunks"]:
        raise CorruptIndexError(
            f"table {chunks} of index {name!r} holds {count} chunks but its manifest says "
            f"{manifest['counts']['chunks']}; rebuild the index"
        )


class Connections:
    """The connections one loaded version queries through, reused across request threads."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.idle: queue.SimpleQueue[psycopg.Connection] = queue.SimpleQueue()
        self.closed = False

    @contextlib.contextmanager
    def get(self) -> Iterator[psycopg.Connection]:
        try:
            db = self.idle.get_nowait()
        except queue.Empty:
            db = self.store.connect()
        try:
            yield db
        except psycopg.Error:
            db.close()
            raise
        if self.closed or db.closed:
            db.close()
        else:
            self.idle.put(db)

    def close(self) -> None:
        self.closed = True
        while True:
            try:
                self.idle.get_nowait().close()
            except queue.Empty:
                return


class PostgresIndex(Index):
    """One version as its tables; queries go to those tables even after a newer publish."""

    def __init__(self, name: str, manifest: dict[str, Any], connections: Connections) -> None:
        self.name = name
        self.manifest = manifest
        self.connections = connections
        self.table = manifest["tables"]["chunks"]
        self.terms = manifest["tables"]["terms"]
        self.avg_length = float(manifest["lexical"]["avg_length"]) or 1.0
        self.terms_sql = TERMS.format(language=LANGUAGE, terms=self.terms)
        self.score_sql = SCORE.format(chunks=self.table)

    @contextlib.contextmanager
    def db(self) -> Iterator[psycopg.Connection]:
        try:
            with self.connections.get() as db:
                yield db
        except psycopg.errors.UndefinedTable:
            raise CorruptIndexError(
                f"version {self.version} of index {self.name!r} was dropped from the database "
                "(it was retired longer than RAG_PG_GRACE_SECONDS ago); reload the index"
            ) from None
        except psycopg.Error as exc:
            raise RagError(f"PostgreSQL query on index {self.name!r} failed: {exc}") from None

    def dense_search(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        # HNSW returns at most ef_search rows, so it must be above what is asked for; and on
        # covidqa-dev, ef_search 100 lost 1.2 points of dense recall@5 against exact search
        # (0.785 against 0.797): questions sit between chunks, where the graph search is
        # weakest. 400 found the exact top 10 of such queries (0.3 ms more per query there).
        ef = min(MAX_EF_SEARCH, max(EF_SEARCH, 4 * n))
        vector = np.asarray(query, dtype=np.float32)
        with self.db() as db, db.transaction():
            db.execute(f"SET LOCAL hnsw.ef_search = {ef}")
            rows = db.execute(
                f'SELECT id, -(embedding <#> %s) FROM "{self.table}" '
                "ORDER BY embedding <#> %s LIMIT %s",
                (vector, vector, n),
            ).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    def lexical_search(self, terms: list[str], n: int) -> list[tuple[int, float]]:
        """BM25's exact top n, scoring only chunks that can enter it (MaxScore).

        A query term adds less than idf x 2.2 to any score. The rarest terms' chunks, scored
        in full, give the n-th best score so far; the commonest terms whose bounds sum below
        it cannot lift a chunk holding only them into the top n, so only chunks holding one of
        the other terms are scored. In bench/postgres.py this cut the word search's p50 2.6x at
        50,000 chunks (78 to 30 ms) and 6.3x at a million, with the same top 50 for 220 of 220
        questions; scoring every match was what made hybrid slow here.
        """
        if not terms:
            return []
        with self.db() as db:
            weighted, params = self._weighted(db, terms, n)
            if not weighted:
                return []
            rarest, postings = [], 0
            for _, lexeme, ndoc in reversed(weighted):
                rarest.append(lexeme)
                postings += ndoc
                if postings >= n:
                    break
            rows = db.execute(self.score_sql, params | {"match": rarest}).fetchall()
            if len(rarest) < len(weighted):
                # Fewer than n chunks (words that share chunks): nothing can be skipped.
                threshold = float(rows[-1][1]) if len(rows) >= n else 0.0
                bounds, essential = 0.0, []
                for idf, lexeme, _ in weighted:
                    bounds += BM25_BOUND * idf
                    if bounds >= threshold:
                        essential.append(lexeme)
                if not set(essential) <= set(rarest):
                    rows = db.execute(self.score_sql, params | {"match": essential}).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    def score_all(self, terms: list[str], n: int) -> list[tuple[int, float]]:
        """BM25's top n by scoring every chunk that holds a query term: what lexical_search
        must equal, kept for tests and benchmarks."""
        with self.db() as db:
            _, params = self._weighted(db, terms, n)
            if not params["lexemes"]:
                return []
            rows = db.execute(self.score_sql, params | {"match": params["lexemes"]}).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    def _weighted(
        self, db: psycopg.Connection, terms: list[str], n: int
    ) -> tuple[list[tuple[float, str, int]], dict[str, Any]]:
        """The query's lexemes in this version as (idf, lexeme, chunks holding it), rarest
        last, and the scoring query's parameters for them."""
        found = db.execute(self.terms_sql, {"text": " ".join(terms)}).fetchall()
        weighted = sorted(
            (math.log(1 + (self.size - ndoc + 0.5) / (ndoc + 0.5)), lexeme, ndoc)
            for lexeme, ndoc in found
        )
        params = {
            "lexemes": [lexeme for _, lexeme, _ in weighted],
            "idfs": [idf for idf, _, _ in weighted],
            "avg": self.avg_length,
            "k": n,
        }
        return weighted, params

    def similarity(self, query: np.ndarray, ids: list[int]) -> dict[int, float]:
        if not ids:
            return {}
        vector = np.asarray(query, dtype=np.float32)
        with self.db() as db:
            rows = db.execute(
                f'SELECT id, -(embedding <#> %s) FROM "{self.table}" WHERE id = ANY(%s)',
                (vector, ids),
            ).fetchall()
        return {int(i): float(s) for i, s in rows}

    def chunks(self, ids: list[int]) -> dict[int, Chunk]:
        if not ids:
            return {}
        with self.db() as db:
            rows = db.execute(
                f'SELECT id, doc_id, chunk_no, start, "end", title, text FROM "{self.table}" '
                "WHERE id = ANY(%s)",
                (ids,),
            ).fetchall()
        return {row[0]: Chunk(*row[1:]) for row in rows}

    def close(self) -> None:
        self.connections.close()


def database_errors(method: Callable[..., T]) -> Callable[..., T]:
    """A writer's database failure as a RagError: the live version is untouched either way."""

    @functools.wraps(method)
    def guarded(self: PostgresWriter, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except psycopg.Error as exc:
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise RagError(
                f"PostgreSQL failed while writing index {self.name!r} ({reason}); nothing of "
                "this build was published, the previous version is still served. Run "
                "`rag index` again once the database is back"
            ) from None

    return guarded


class PostgresWriter:
    """Loads a version's tables with COPY, indexes them, then publishes in one transaction."""

    def __init__(self, store: PostgresStore, name: str, base: PostgresIndex | None) -> None:
        self.store = store
        self.name = name
        self.base = base
        prefix = index_key(name) + uuid.uuid4().hex[:12]
        self.chunks, self.terms = prefix + "_c", prefix + "_t"
        self.db = self.connect()
        self.loaders: list[psycopg.Connection] = []  # more COPY streams, for big batches
        self.dimension: int | None = None
        if base is not None:
            self._create(int(base.manifest["embedder"]["dimension"]))
            # The live rows keep their tsvector: computing it again was most of an update's copy.
            names = '"id", doc_id, chunk_no, start, "end", title, text, len, tsv, embedding'
            self.db.execute(
                f'INSERT INTO "{self.chunks}" ({names}) SELECT {names} FROM "{base.table}"'
            )

    def connect(self) -> psycopg.Connection:
        db = self.store.connect()
        # A killed writer's statements stop within a second instead of running to the end
        # (and holding locks the next writer's cleanup waits on); PostgreSQL 14 and later.
        with contextlib.suppress(psycopg.Error):
            db.execute("SET client_connection_check_interval = 1000")
        return db

    def _create(self, dimension: int) -> None:
        """The version's chunk table. Its tsvector is filled by a trigger when a row comes
        without one (COPY, in each loader's backend), and kept when it comes with one (the
        live rows an update copies); a generated column would compute every row again."""
        self.dimension = dimension
        if self.db.execute(f"SELECT to_regprocedure('{TSV_TRIGGER}()')").fetchone()[0] is None:
            with self.db.transaction():
                self.db.execute("SELECT pg_advisory_xact_lock(hashtext('rag-schema'))")
                self.db.execute(TSV_FUNCTION)
        self.db.execute(
            f'CREATE TABLE "{self.chunks}" ('
            "id bigint NOT NULL, doc_id text NOT NULL, chunk_no integer NOT NULL, "
            'start integer NOT NULL, "end" integer NOT NULL, title text NOT NULL, '
            "text text NOT NULL, len integer NOT NULL, tsv tsvector NOT NULL, "
            f"embedding vector({dimension}) NOT NULL)"
        )
        self.db.execute(
            f'CREATE TRIGGER tsv BEFORE INSERT ON "{self.chunks}" '
            f"FOR EACH ROW EXECUTE FUNCTION {TSV_TRIGGER}()"
        )

    @database_errors
    def remove_documents(self, doc_ids: list[str]) -> int:
        if not doc_ids or self.dimension is None:
            return 0
        cursor = self.db.execute(f'DELETE FROM "{self.chunks}" WHERE doc_id = ANY(%s)', (doc_ids,))
        return cursor.rowcount

    @database_errors
    def next_id(self) -> int:
        if self.dimension is None:
            return 0
        (top,) = self.db.execute(f'SELECT coalesce(max(id), -1) FROM "{self.chunks}"').fetchone()
        return int(top) + 1

    @database_errors
    def add_chunks(self, rows: list[ChunkRow], vectors: np.ndarray) -> None:
        """COPY in binary, split over LOADERS connections: the server's `to_tsvector` of each
        row, not the transfer, is what a single COPY waits on (4,100 against 10,100 chunks/s
        without the tsvector, measured here), and each connection gets its own backend."""
        if self.dimension is None:
            self._create(int(vectors.shape[1]))
        vectors = np.asarray(vectors, dtype=np.float32)
        parts = max(1, min(LOADERS, len(rows) // 2000))
        if parts == 1:
            self._copy(self.db, rows, vectors)
            return
        while len(self.loaders) < parts - 1:
            self.loaders.append(self.connect())
        bounds = np.linspace(0, len(rows), parts + 1).astype(int).tolist()
        with ThreadPoolExecutor(parts) as pool:
            jobs = [
                pool.submit(self._copy, db, rows[a:b], vectors[a:b])
                for db, a, b in zip([self.db, *self.loaders], bounds, bounds[1:], strict=False)
            ]
            for job in jobs:
                job.result()

    def _copy(self, db: psycopg.Connection, rows: list[ChunkRow], vectors: np.ndarray) -> None:
        columns = 'id, doc_id, chunk_no, start, "end", title, text, len, embedding'
        types = ["int8", "text", "int4", "int4", "int4", "text", "text", "int4", "vector"]
        copy = f'COPY "{self.chunks}" ({columns}) FROM STDIN (FORMAT BINARY)'
        with db.cursor() as cursor, cursor.copy(copy) as pipe:
            pipe.set_types(types)
            for row, vector in zip(rows, vectors, strict=True):
                pipe.write_row((*row, row[5].count(" ") + row[6].count(" ") + 2, vector))

    @database_errors
    def chunk_count(self) -> int:
        if self.dimension is None:
            return 0
        return int(self.db.execute(f'SELECT count(*) FROM "{self.chunks}"').fetchone()[0])

    def build_indexes(self) -> dict[str, Any]:
        """Primary key, then HNSW on the vectors beside GIN on the text and the document
        frequencies on a second connection: HNSW is most of the build (7.7 of 10.3 s at 50,000
        chunks here), and the two kinds of index can be built at once on one table."""
        db, chunks, terms = self.db, self.chunks, self.terms
        db.execute(f'ALTER TABLE "{chunks}" ADD PRIMARY KEY (id)')
        rows, avg = db.execute(f'SELECT count(*), coalesce(avg(len), 1) FROM "{chunks}"').fetchone()
        # HNSW builds fast only while its graph fits in maintenance_work_mem; about 2 kB a
        # 384-dimension vector with m 16. Past the cap, pgvector goes on building on disk.
        need = int(rows * (4 * (self.dimension or 0) + 600) * 1.25 / 2**20)
        db.execute(f"SET maintenance_work_mem = '{min(BUILD_MEMORY_MB, max(512, need))}MB'")
        if not self.loaders:
            self.loaders.append(self.connect())
        other = self.loaders[0]

        def text_side() -> None:
            other.execute(f'CREATE INDEX ON "{chunks}" USING gin (tsv)')
            other.execute(f'CREATE TABLE "{terms}" (word text PRIMARY KEY, ndoc integer NOT NULL)')
            other.execute(
                f'INSERT INTO "{terms}" SELECT word, ndoc FROM ts_stat(%s)',
                (f'SELECT tsv FROM "{chunks}"',),
            )
            other.execute(f'ANALYZE "{terms}"')

        with ThreadPoolExecutor(1) as pool:
            text = pool.submit(text_side)
            try:
                db.execute(
                    f'CREATE INDEX ON "{chunks}" USING hnsw (embedding vector_ip_ops) '
                    f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
                )
            finally:
                text.result()
        db.execute(f'ANALYZE "{chunks}"')
        return {"avg_length": float(avg), "language": LANGUAGE, "ranking": "bm25"}

    @database_errors
    def publish(self, manifest: dict[str, Any]) -> str:
        if self.dimension is None:
            self._create(int(manifest["embedder"]["dimension"]))
        lexical = self.build_indexes()
        version = new_version()
        manifest = dict(
            manifest,
            version=version,
            format_version=FORMAT_VERSION,
            store="postgres",
            files={},
            tables={"chunks": self.chunks, "terms": self.terms},
            lexical=lexical,
            vectors={
                "backend": "pgvector",
                "kind": "hnsw",
                "m": HNSW_M,
                "ef_construction": HNSW_EF_CONSTRUCTION,
                "distance": "inner product",
            },
        )
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO rag_versions (index_name, version, manifest) VALUES (%s, %s, %s)",
                (self.name, version, Jsonb(manifest)),
            )
            self.db.execute(
                "UPDATE rag_versions SET retired_at = now() WHERE index_name = %s AND version = "
                "(SELECT version FROM rag_current WHERE index_name = %s)",
                (self.name, self.name),
            )
            self.db.execute(
                "INSERT INTO rag_current (index_name, version) VALUES (%s, %s) "
                "ON CONFLICT (index_name) DO UPDATE SET version = excluded.version, "
                "published_at = now()",
                (self.name, version),
            )
        self.close()
        return version

    def close(self) -> None:
        for db in [self.db, *self.loaders]:
            db.close()

    def abandon(self) -> None:
        """Best effort: if the database is what failed, the next writer drops the tables."""
        with contextlib.suppress(psycopg.Error):
            if not self.db.closed:
                self.db.execute(f'DROP TABLE IF EXISTS "{self.chunks}", "{self.terms}"')
        self.close()
