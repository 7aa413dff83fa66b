"""The whole index in PostgreSQL, on a real server (pgserver) with the fake embedder: versions
published in one transaction, readers kept on theirs, old ones dropped after the grace period,
replicas with empty index roots, and clear errors for a wrong DSN or tables altered by hand.

The behaviour shared with the folder store (incremental sync equals a rebuild, a killed build,
the CLI, answering) runs with the real embedder on both stores through conftest.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import ServiceState
from api.serving import ServedIndex
from rag.config import Settings
from rag.documents import load_corpus
from rag.errors import CorruptIndexError, IndexLockedError, IndexNotFoundError, RagError
from rag.indexing import check_up_to_date, sync_index
from rag.retrieval import retrieve
from rag.store import describe_indexes, list_indexes, load_index, open_store
from rag.store.postgres import PostgresStore, index_key

from ..unit.test_api import FakeGenerator
from ..unit.test_store import chunker
from .conftest import fresh_database

pytestmark = pytest.mark.slow


@pytest.fixture
def dsn(pg_dsn: str) -> str:
    return fresh_database(pg_dsn)


def sync(corpus: Path, store, embedder, name: str = "t"):
    return sync_index(
        load_corpus(corpus), store, name, embedder, chunker(embedder), show_progress=False
    )


def tables(dsn: str, name: str) -> set[str]:
    pattern = index_key(name).replace("_", r"\_") + "%"
    with psycopg.connect(dsn) as db:
        rows = db.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (pattern,))
        return {r[0] for r in rows}


def doc_ids(index, embedder, query: str, mode: str = "hybrid") -> list[str]:
    return [p.doc_id for p in retrieve(index, embedder, query, k=3, mode=mode)]


def test_everything_lives_in_the_database(tiny_corpus, fake_embedder, dsn, tmp_path) -> None:
    settings = Settings(
        index_root=tmp_path / "empty",
        vector_store="postgres",
        pg_dsn=dsn,
        embedder="fake-bow",
        chunk_size=40,
        chunk_overlap=5,
    )
    report = sync(tiny_corpus, open_store(settings), fake_embedder)
    assert (report.new, report.chunks) == (4, 4)
    assert not (tmp_path / "empty").exists(), "nothing is written on the machine"
    assert list_indexes(settings) == ["t"]
    (row,) = describe_indexes(settings)
    assert (row["store"], row["documents"], row["chunks"]) == ("postgres", 4, 4)

    index = load_index(settings, "t")
    try:
        assert index.manifest["vectors"]["kind"] == "hnsw"
        for mode in ("dense", "lexical", "hybrid"):
            assert doc_ids(index, fake_embedder, "goats named after planets", mode)[0] == "beta.txt"
        assert doc_ids(index, fake_embedder, "ultramarine", "lexical") == ["g-1"]
        passage = retrieve(index, fake_embedder, "Wenlock lighthouse", k=1)[0]
        assert (passage.doc_id, passage.title) == ("g-2", "Delta")
        assert "Wenlock" in passage.text and passage.similarity > 0.3
    finally:
        index.close()
    assert check_up_to_date(load_corpus(tiny_corpus), open_store(settings), "t", settings)


def test_pruned_word_search_equals_scoring_every_match(dsn) -> None:
    """MaxScore skips chunks that hold only common query words; the top n must not change."""
    rng = random.Random(7)
    common = ["water", "river", "stone", "city", "bridge"]
    rare = [f"{a}{b}" for a in ("zor", "quil", "marv", "tesk") for b in ("an", "op", "ix")]
    rows = []
    for i in range(600):
        words = rng.choices(common, k=rng.randint(3, 12))
        words += rng.sample(rare, k=rng.randint(0, 2))
        if i % 30 == 0:  # two rare words that always come together: 20 chunks, 40 postings
            words += ["kestrel", "ospreys"]
        rows.append((i, f"d{i // 10}", i % 10, 0, 10, f"title {i}", " ".join(words)))
    vectors = np.random.default_rng(0).standard_normal((len(rows), 8)).astype(np.float32)
    store = PostgresStore(dsn)
    with store.lock("w"):
        writer = store.writer("w", None)
        writer.add_chunks(rows, vectors)
        documents = {f"d{d}": {"hash": "", "title": "", "chunks": 10} for d in range(60)}
        writer.publish(
            {
                "name": "w",
                "embedder": {"name": "random", "dimension": 8, "max_seq_length": 16},
                "chunking": {},
                "counts": {"documents": 60, "chunks": len(rows)},
                "documents": documents,
            }
        )
    index = store.open("w")
    narrowed = []
    original = index.score_sql

    try:
        queries = [
            ["water", "zoran"],
            ["river", "stone", "quilop"],
            ["city", "bridge", "marvix", "teskan"],
            ["water", "river", "stone", "city", "bridge", "zorop"],
            ["bridge"],
            ["unknownword", "stone"],
            ["kestrel", "ospreys", "water"],
        ]
        with index.db() as db:
            execute = db.execute

            def spy(sql, params=None, **kw):  # which words each scoring query matched
                if sql is original:
                    narrowed.append(len(params["match"]) < len(params["lexemes"]))
                return execute(sql, params, **kw)

            db.execute = spy
            index.connections.idle.put(db)
        for words in queries:
            for n in (3, 10, 30, 50):
                pruned = index.lexical_search(words, n)
                full = index.score_all(words, n)
                assert [i for i, _ in pruned] == [i for i, _ in full], (words, n)
                assert [s for _, s in pruned] == pytest.approx([s for _, s in full])
        assert any(narrowed), "some query scored fewer words' chunks than it matched"
    finally:
        index.close()


def test_publish_is_atomic_and_readers_keep_their_version(tiny_corpus, fake_embedder, dsn):
    store = PostgresStore(dsn, grace_seconds=300)
    first = sync(tiny_corpus, store, fake_embedder).version
    reader = store.open("t")

    (tiny_corpus / "beta.txt").unlink()
    (tiny_corpus / "eps.txt").write_text("Epsilon quarry ships marble to Tallinn.\n")
    second = sync(tiny_corpus, store, fake_embedder)
    assert (second.new, second.removed, second.chunks_removed) == (1, 1, 1)
    assert store.live_version("t") == second.version != first

    # The reader loaded before the publish still answers from its own version, whole.
    assert reader.version == first
    assert doc_ids(reader, fake_embedder, "goats planets")[0] == "beta.txt"
    assert "eps.txt" not in doc_ids(reader, fake_embedder, "marble Tallinn")
    fresh = store.open("t")
    assert doc_ids(fresh, fake_embedder, "marble Tallinn")[0] == "eps.txt"
    assert "beta.txt" not in doc_ids(fresh, fake_embedder, "goats planets")
    reader.close()
    fresh.close()


def test_replaced_versions_are_dropped_after_the_grace_period(tiny_corpus, fake_embedder, dsn):
    patient = PostgresStore(dsn, grace_seconds=300)
    sync(tiny_corpus, patient, fake_embedder)
    (tiny_corpus / "a.txt").write_text("Alpha one.\n")
    sync(tiny_corpus, patient, fake_embedder)
    assert len(tables(dsn, "t")) == 4, "two versions, each chunks + terms: one is in grace"

    hasty = PostgresStore(dsn, grace_seconds=0)
    (tiny_corpus / "b.txt").write_text("Bravo two.\n")
    sync(tiny_corpus, hasty, fake_embedder)
    live = hasty.live_manifest("t")["tables"]
    assert tables(dsn, "t") == {live["chunks"], live["terms"]}
    (versions,) = hasty.query("SELECT count(*) FROM rag_versions WHERE index_name = 't'")[0]
    assert versions == 1


def test_killed_build_leaves_tables_that_the_next_writer_drops(tiny_corpus, fake_embedder, dsn):
    store = PostgresStore(dsn)
    sync(tiny_corpus, store, fake_embedder)
    live = store.open("t")
    writer = store.writer("t", live)  # a build that copied the live rows, then died
    writer.add_chunks([(99, "x", 0, 0, 1, "X", "x")], fake_embedder.encode(["x"]))
    writer.db.close()
    assert not store.is_tidy("t")
    assert store.live_version("t") == live.version, "nothing half-built is visible"
    (tiny_corpus / "c.txt").write_text("Charlie three.\n")
    assert sync(tiny_corpus, store, fake_embedder).new == 1
    assert store.is_tidy("t")
    live.close()


def test_one_writer_per_index_across_machines(tiny_corpus, fake_embedder, dsn) -> None:
    one, other = PostgresStore(dsn), PostgresStore(dsn)
    with one.lock("t"), pytest.raises(IndexLockedError, match="another `rag index`"):
        sync(tiny_corpus, other, fake_embedder)
    sync(tiny_corpus, other, fake_embedder)  # the lock went with the session


def test_clear_errors(tiny_corpus, fake_embedder, dsn) -> None:
    with pytest.raises(RagError, match="cannot connect to PostgreSQL at RAG_PG_DSN"):
        PostgresStore("postgresql://rag:secret@127.0.0.1:9/none").names()
    store = PostgresStore(dsn)
    with pytest.raises(IndexNotFoundError, match="no index named 'nope'"):
        store.open("nope")
    sync(tiny_corpus, store, fake_embedder)
    table = store.live_manifest("t")["tables"]["chunks"]
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f'ALTER TABLE "{table}" ADD COLUMN note text')
    with pytest.raises(CorruptIndexError, match="altered by hand"):
        store.open("t")
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f'DROP TABLE "{table}"')
    with pytest.raises(CorruptIndexError, match=f"table {table} .* is missing"):
        store.open("t")


def test_replicas_with_empty_roots_follow_every_publish(
    tiny_corpus, fake_embedder, dsn, tmp_path
) -> None:
    """Two services, nothing on their disks, one database: a publish reaches both."""
    store = PostgresStore(dsn)
    sync(tiny_corpus, store, fake_embedder)

    def replica(n: int) -> TestClient:
        settings = Settings(
            index_root=tmp_path / f"replica-{n}",
            vector_store="postgres",
            pg_dsn=dsn,
            embedder="fake-bow",
            min_score=0.3,
        )

        def loader(service: ServiceState) -> None:
            service.served["t"] = ServedIndex(settings, "t", fake_embedder, FakeGenerator())

        return TestClient(create_app(settings, ["t"], loader=loader, background=False))

    with replica(1) as one, replica(2) as two:
        for n in range(2):
            (tiny_corpus / f"new{n}.txt").write_text(f"Quokka number {n} lives on Rottnest.\n")
            version = sync(tiny_corpus, store, fake_embedder).version
            for client in (one, two):
                (served,) = client.get("/indexes").json()
                assert served["version"] == version
                hits = client.post("/search", json={"question": "quokka Rottnest", "index": "t"})
                assert hits.status_code == 200, hits.text
    assert not (tmp_path / "replica-1").exists() and not (tmp_path / "replica-2").exists()


def test_database_stopped_mid_publish(tiny_corpus, fake_embedder, tmp_path, monkeypatch):
    """`pg_ctl stop -m immediate` inside the publish transaction: nothing half-published is
    visible after the restart, the previous version is served, the next build completes."""
    import pgserver
    from pgserver import pg_ctl

    import rag.store.postgres as postgres

    server = pgserver.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    try:
        store = PostgresStore(server.get_uri())
        first = sync(tiny_corpus, store, fake_embedder).version

        def stop_then_encode(manifest):
            pg_ctl(["-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)
            return real_jsonb(manifest)

        real_jsonb = postgres.Jsonb
        monkeypatch.setattr(postgres, "Jsonb", stop_then_encode)  # after BEGIN, before INSERT
        (tiny_corpus / "new.txt").write_text("Zeta ferry leaves at noon for Skye.\n")
        with pytest.raises(RagError, match="nothing of this build was published"):
            sync(tiny_corpus, PostgresStore(server.get_uri()), fake_embedder)
        monkeypatch.setattr(postgres, "Jsonb", real_jsonb)

        server.ensure_postgres_running()  # crash recovery replays the WAL
        store = PostgresStore(server.get_uri())
        assert store.live_version("t") == first
        (versions,) = store.query("SELECT count(*) FROM rag_versions")[0]
        assert versions == 1, "no row of the interrupted publish survived"
        index = store.open("t")
        assert doc_ids(index, fake_embedder, "goats planets")[0] == "beta.txt"
        index.close()

        report = sync(tiny_corpus, store, fake_embedder)
        assert (report.new, store.live_version("t")) == (1, report.version)
        assert store.is_tidy("t"), "the interrupted build's tables were dropped"
    finally:
        server.cleanup()
