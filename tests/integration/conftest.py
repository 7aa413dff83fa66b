"""Real models, loaded once per test session (the generator takes ~15-30 s to dequantize)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from rag.chain import Pipeline
from rag.config import Settings
from rag.embeddings import Embedder, load_embedder
from rag.generation import Generator, load_generator
from rag.indexing import index_corpus
from rag.store import load_index

from ..conftest import REPO, SAMPLE

pytestmark = pytest.mark.slow
RAG = [sys.executable, "-m", "rag.cli"]


def sample_questions() -> list[tuple[str, str, str]]:
    """(question, expected answer, gold document id) from corpora/sample-questions.md."""
    rows = []
    for line in (REPO / "corpora" / "sample-questions.md").read_text().splitlines():
        if re.match(r"\|\s*\d+\s*\|", line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.append((cells[1], cells[2], cells[3].strip("`")))
    assert len(rows) >= 8
    return rows


def run_rag(*args: str, env: dict[str, str] | None = None, timeout: int = 300):
    """Run the real CLI in a subprocess, as a user would."""
    return subprocess.run(
        [*RAG, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    return Settings(index_root=tmp_path_factory.mktemp("indexes"))


@pytest.fixture(scope="session")
def embedder(settings: Settings) -> Embedder:
    return load_embedder(settings)


@pytest.fixture(scope="session")
def generator(settings: Settings) -> Generator:
    return load_generator(settings)


@pytest.fixture(scope="session")
def sample_index(settings: Settings, embedder: Embedder, tmp_path_factory) -> str:
    corpus = tmp_path_factory.mktemp("corpus") / "sample"
    shutil.copytree(SAMPLE, corpus)
    index_corpus(corpus, "sample", settings, embedder=embedder, show_progress=False)
    return "sample"


@pytest.fixture(scope="session")
def pipeline(settings, embedder, generator, sample_index) -> Pipeline:
    return Pipeline(load_index(settings.index_root, sample_index), embedder, generator, settings)
