"""pgvector specifics: one table per version, old ones dropped, a missing table named.

The behaviour shared with FAISS (incremental sync, killed builds, the CLI, answering) is tested
on both backends by the parametrized fixtures in conftest.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from rag.pgvector import table_prefix

from rag.errors import CorruptIndexError
from rag.indexing import index_corpus
from rag.store import load_index

from ..conftest import SAMPLE

pytestmark = pytest.mark.slow


def tables(dsn: str, directory: Path) -> set[str]:
    prefix = table_prefix(directory)
    with psycopg.connect(dsn) as db:
        rows = db.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (prefix + "%",)
        )
        return {r[0] for r in rows}


def live_table(settings, name: str) -> str:
    index = load_index(settings.index_root, name, dsn=settings.pg_dsn)
    try:
        return index.manifest["vectors"]["table"]
    finally:
        index.close()


@pytest.fixture
def pg_settings(settings, pg_dsn, tmp_path: Path):
    return settings.model_copy(
        update={"index_root": tmp_path / "indexes", "vector_store": "pgvector", "pg_dsn": pg_dsn}
    )


def test_each_version_has_a_table_and_old_ones_are_dropped(pg_settings, embedder, tmp_path):
    corpus = Path(shutil.copytree(SAMPLE, tmp_path / "sample"))
    directory = pg_settings.index_root / "t"
    dsn = pg_settings.pg_dsn

    index_corpus(corpus, "t", pg_settings, embedder=embedder, show_progress=False)
    first = live_table(pg_settings, "t")
    assert tables(dsn, directory) == {first}

    (corpus / "notes.txt").unlink()
    index_corpus(corpus, "t", pg_settings, embedder=embedder, show_progress=False)
    second = live_table(pg_settings, "t")
    assert second != first
    assert tables(dsn, directory) == {first, second}, "the previous one serves its readers"

    (corpus / "added.txt").write_text("The tide gauge is read at dawn by Ottoline.\n")
    index_corpus(corpus, "t", pg_settings, embedder=embedder, show_progress=False)
    third = live_table(pg_settings, "t")
    assert tables(dsn, directory) == {second, third}

    index = load_index(pg_settings.index_root, "t", dsn=dsn)
    try:
        with psycopg.connect(dsn) as db:
            (rows,) = db.execute(f'SELECT count(*) FROM "{third}"').fetchone()
        assert rows == index.size == index.manifest["counts"]["chunks"]
    finally:
        index.close()

    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f'DROP TABLE "{third}"')
    with pytest.raises(CorruptIndexError, match=third):
        load_index(pg_settings.index_root, "t", dsn=dsn)
