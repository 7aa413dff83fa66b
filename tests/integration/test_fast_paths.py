"""The opt-in speed-ups against the exact paths: OpenVINO embeddings and batched generation."""

from __future__ import annotations

import numpy as np
import pytest

from rag.embeddings import load_embedder

pytestmark = pytest.mark.slow

TEXTS = [
    "What is the name of the station cat?",
    "The station cat is a grey tabby named Biscuit Admiral. " * 12,  # near the 256-token limit
    "Coronavirus transmission rose during winter.",
    "x",
]


def test_plain_transformers_vectors_equal_sentence_transformers(settings, embedder):
    """The packaged embedder skips importing sentence-transformers; its vectors must not move."""
    from sentence_transformers import SentenceTransformer

    from rag.embeddings import MeanPooledEncoder, resolve_embedder

    assert isinstance(embedder.model, MeanPooledEncoder)
    texts = [*TEXTS, "  padded with spaces  ", "long " * 400]  # the last one is truncated
    reference = SentenceTransformer(resolve_embedder(settings.embedder)[1], device="cpu")
    exact = reference.encode(texts, batch_size=3, normalize_embeddings=True)
    got = embedder.encode(texts)
    assert got.shape == exact.shape and got.dtype == np.float32
    assert np.abs(got - exact).max() < 1e-5
    assert embedder.max_seq_length == reference.max_seq_length
    assert embedder.tokenizer("a b")["input_ids"] == reference.tokenizer("a b")["input_ids"]


def test_a_layout_other_than_mean_pooling_loads_through_sentence_transformers(tmp_path):
    from rag.embeddings import mean_pooled_length

    assert mean_pooled_length(str(tmp_path)) is None  # no modules.json
    (tmp_path / "modules.json").write_text("not json")
    assert mean_pooled_length(str(tmp_path)) is None


def test_openvino_vectors_match_the_exact_ones(settings, embedder, tmp_path):
    pytest.importorskip("openvino")
    fast_settings = settings.model_copy(
        update={"embed_backend": "openvino", "cache_dir": tmp_path / "cache"}
    )
    fast = load_embedder(fast_settings)
    assert list((tmp_path / "cache").glob("embedder-*/model.xml"))  # converted once, kept
    exact, got = embedder.encode(TEXTS), fast.encode(TEXTS)
    assert got.shape == exact.shape and got.dtype == np.float32
    assert np.abs(got - exact).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    again = load_embedder(fast_settings)  # from the cache this time
    assert np.abs(again.encode(TEXTS[:1]) - exact[:1]).max() < 1e-4


def test_openvino_bf16_vectors_stay_close_to_the_exact_ones(settings, embedder, tmp_path):
    pytest.importorskip("openvino")
    fast_settings = settings.model_copy(
        update={
            "embed_backend": "openvino",
            "embed_precision": "bf16",
            "cache_dir": tmp_path / "cache",
        }
    )
    exact, got = embedder.encode(TEXTS), load_embedder(fast_settings).encode(TEXTS)
    assert got.dtype == np.float32
    cosines = np.sum(exact * got, axis=1)
    assert cosines.min() > 0.999, cosines
    assert np.argmax(got[1:] @ got[0]) == np.argmax(exact[1:] @ exact[0])  # same nearest


def test_bf16_without_openvino_is_a_settings_error():
    from pydantic import ValidationError

    from rag.config import Settings

    with pytest.raises(ValidationError, match="RAG_EMBED_BACKEND=openvino"):
        Settings(embed_precision="bf16")


def test_batched_generation_answers_each_chat(generator):
    chats = [
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        [{"role": "user", "content": "Name one primary colour."}],
    ]
    replies = generator.generate_batch(chats, max_new_tokens=12)
    assert len(replies) == 2
    assert "paris" in replies[0].lower()
    assert replies[0] == generator.generate(chats[0], max_new_tokens=12)
