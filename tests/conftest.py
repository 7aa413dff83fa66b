"""Shared fixtures: a tiny corpus in tmp_path and a fake embedder for fast unit tests."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "corpora" / "sample"
NO_NETWORK = REPO / "tests" / "no_network"


def pytest_configure(config) -> None:
    """No test reaches the network: outbound sockets are refused here and in subprocesses."""
    # Choosing the answer steps asks a generator ~60 questions (a minute or two) per new index:
    # tests answer with the RAG_FOCUS_*/RAG_MIN_SUPPORT settings (the `sentence` candidate by
    # default); the choice itself is tested where a test sets RAG_ANSWER_STEPS=auto.
    os.environ.setdefault("RAG_ANSWER_STEPS", "settings")
    if os.environ.get("RAG_TEST_ALLOW_NETWORK") == "1":
        return
    from tests.no_network.sitecustomize import install

    install()
    paths = [str(NO_NETWORK), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


class FakeTokenizer:
    """Whitespace tokens: enough for the chunker's length function in unit tests."""

    def __call__(
        self, text: str, add_special_tokens: bool = False, verbose: bool = True
    ) -> dict[str, list[int]]:
        return {"input_ids": list(range(len(text.split())))}

    def decode(self, ids: list[int]) -> str:
        return " ".join("x" for _ in ids)


class FakeEmbedder:
    """Deterministic bag-of-words vectors (hashed words), normalised like the real one."""

    name = "fake-bow"
    dimension = 1024  # wide enough that unrelated words rarely collide
    max_seq_length = 256

    def __init__(self) -> None:
        self.tokenizer = FakeTokenizer()
        self.calls = 0

    def encode(self, texts, progress: bool = False) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1
            norm = np.linalg.norm(out[row])
            out[row] /= norm if norm else 1
        return out


class FakeGeneration:
    """The ChatGenerator protocol's other methods, for fakes that only script `generate`."""

    backend = "fake"

    def complete(self, messages, **options):
        from rag.generators import Generation

        text = self.generate(messages, **options)
        prompt = self.count_tokens(messages)
        return Generation(text, prompt, self.count_text_tokens(text), "stop")

    def count_tokens(self, messages) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def count_text_tokens(self, text: str) -> int:
        return len(text.split())


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """Four documents in three formats, each holding one distinctive fact."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "alpha.md").write_text("# Alpha\n\nThe alpha reactor runs at 451 kelvin every night.\n")
    (root / "beta.txt").write_text("Beta station keeps seventeen goats named after planets.\n")
    lines = [
        {"id": "g-1", "title": "Gamma", "text": "Gamma tower is painted ultramarine since 1987."},
        {"id": "g-2", "title": "Delta", "text": "Delta harbour has a lighthouse called Wenlock."},
    ]
    (root / "more.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root
