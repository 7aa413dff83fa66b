"""Incremental sync with the real embedder equals a full rebuild; a killed build changes nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.indexing import index_corpus
from rag.retrieval import retrieve
from rag.store import load_index, open_store

from ..conftest import REPO, SAMPLE
from .conftest import sample_questions, settings_env

pytestmark = pytest.mark.slow


def results(settings, embedder, name: str) -> dict[str, list[tuple]]:
    index = load_index(settings, name)
    try:
        out = {}
        for question, _, _ in sample_questions():
            hits = retrieve(index, embedder, question, k=4, mode="hybrid")
            out[question] = [(p.doc_id, p.chunk, p.text, round(p.similarity, 5)) for p in hits]
        return out
    finally:
        index.close()


def test_incremental_equals_full_rebuild(index_settings, embedder, tmp_path: Path) -> None:
    settings = index_settings
    corpus = Path(shutil.copytree(SAMPLE, tmp_path / "sample"))
    index_corpus(corpus, "inc", settings, embedder=embedder, show_progress=False)
    handbook = corpus / "handbook.md"
    handbook.write_text(handbook.read_text().replace("every 17 days", "every 19 days"))
    (corpus / "notes.txt").unlink()
    (corpus / "added.txt").write_text("The lighthouse keeper's dog is called Pepperpot.\n")
    report = index_corpus(corpus, "inc", settings, embedder=embedder, show_progress=False)
    assert (report.new, report.changed, report.removed) == (1, 1, 1)
    index_corpus(corpus, "full", settings, embedder=embedder, show_progress=False)
    assert results(settings, embedder, "inc") == results(settings, embedder, "full")


def big_corpus(root: Path, documents: int = 400) -> Path:
    """Enough text that a build takes several seconds on two cores."""
    root.mkdir(parents=True)
    words = (SAMPLE / "handbook.md").read_text().split()
    for n in range(documents):
        text = " ".join([*words[(n * 7) % 50 :], f"marker{n}"])
        (root / f"doc{n:04d}.txt").write_text(text)
    return root


def test_killed_build_leaves_previous_index_loadable(
    index_settings, embedder, tmp_path: Path
) -> None:
    settings = index_settings
    corpus = big_corpus(tmp_path / "big")
    keep = sorted(corpus.iterdir())[:3]
    small = tmp_path / "small"
    small.mkdir()
    for file in keep:
        shutil.copy(file, small / file.name)
    index_corpus(small, "crash", settings, embedder=embedder, show_progress=False)
    before = load_index(settings, "crash")
    old_version, old_size = before.version, before.size
    before.close()

    store = open_store(settings)
    env = {**os.environ, **settings_env(settings)}
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "index", str(corpus), "--index", "crash", "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while store.is_tidy("crash"):  # until the build has written something of its own
        assert process.poll() is None, "the build ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # well inside the embedding phase
    process.send_signal(signal.SIGKILL)
    process.wait()

    after = load_index(settings, "crash")
    assert (after.version, after.size) == (old_version, old_size)
    after.close()
    assert not store.is_tidy("crash"), "killed mid-write"

    report = index_corpus(small, "crash", settings, embedder=embedder, show_progress=False)
    assert not report.written
    assert store.is_tidy("crash"), "the next writer cleans what the killed one left"
