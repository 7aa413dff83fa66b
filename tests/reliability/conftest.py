"""Helpers for the reliability promises (docs/reliability.md).

Budgets scale with RAG_RELIABILITY_BUDGET (default 1): `make reliability` raises it to run the
crash loop, the load-while-reindexing run and the fuzzers longer than CI does.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from rag.documents import load_corpus
from rag.store import CURRENT, MANIFEST, load_index, sha256_file

from ..conftest import REPO

FAKE_RAG = [sys.executable, "-m", "tests.reliability.fake_cli"]
WORDS = (
    "harbour station reactor goat lighthouse tide beacon archive ledger copper winter signal "
    "ferry kelvin orbit granite meadow lantern compass anchor quarry glacier thistle falcon"
).split()


def budget() -> float:
    """How much longer than the CI default to run (RAG_RELIABILITY_BUDGET, default 1)."""
    return max(float(os.environ.get("RAG_RELIABILITY_BUDGET", "1")), 0.1)


def scaled(n: int) -> int:
    return max(1, round(n * budget()))


def fake_env(root: Path) -> dict[str, str]:
    """Environment for a `fake_cli` subprocess writing under `root`."""
    return {**os.environ, "RAG_INDEX_ROOT": str(root), "RAG_EMBEDDER": "fake-bow"}


def fake_rag(*args: str, root: Path, **popen) -> subprocess.Popen:
    """Start the real `rag` CLI (with the fake embedder) as a separate process."""
    return subprocess.Popen([*FAKE_RAG, *args], cwd=REPO, env=fake_env(root), **popen)


def run_fake_rag(*args: str, root: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FAKE_RAG, *args],
        cwd=REPO,
        env=fake_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def document_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + f" marker{rng.randrange(10**9)}"


def write_corpus(root: Path, documents: int, words: int, seed: int = 0) -> Path:
    """`documents` text files of `words` words each (deterministic for a seed)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(documents):
        (root / f"doc{n:05d}.txt").write_text(document_text(rng, words))
    return root


def corpus_state(corpus: Path) -> dict[str, str]:
    """{document id: content hash}, what a complete index of this corpus records."""
    return {doc.id: doc.hash for doc in load_corpus(corpus).documents}


def verify_index(root: Path, name: str) -> dict[str, str]:
    """Load the live version (checksums verified) and check it against itself in depth.

    Returns {document id: hash} from its manifest, for comparing with the corpus states the
    index may legitimately hold.
    """
    index = load_index(root, name)
    try:
        for filename, expected in index.manifest["files"].items():
            assert sha256_file(index.path / filename) == expected, filename
        listed = {*index.manifest["files"], MANIFEST}
        assert {p.name for p in index.path.iterdir()} == listed
        stored = {r[0] for r in index.db.execute("SELECT DISTINCT doc_id FROM chunks")}
        assert stored == set(index.manifest["documents"])
        (fts,) = index.db.execute("SELECT count(*) FROM chunks_fts").fetchone()
        assert fts == index.size == index.manifest["counts"]["chunks"]
        return {d: meta["hash"] for d, meta in index.manifest["documents"].items()}
    finally:
        index.close()


def leftovers(directory: Path) -> list[str]:
    """Entries beyond the lock, the pointer and the live version."""
    live = (directory / CURRENT).read_text().strip()
    return sorted(p.name for p in directory.iterdir() if p.name not in {".lock", CURRENT, live})


def fingerprint(state: dict[str, str]) -> str:
    return hashlib.sha256(repr(sorted(state.items())).encode()).hexdigest()[:10]


@pytest.fixture
def rng(request) -> random.Random:
    """Seeded per test; RAG_RELIABILITY_SEED replays a failing run."""
    seed = int(os.environ.get("RAG_RELIABILITY_SEED", random.randrange(10**6)))
    print(f"{request.node.name}: RAG_RELIABILITY_SEED={seed}")
    return random.Random(seed)
