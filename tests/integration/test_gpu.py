"""RAG_DEVICE=cuda with the real models: skipped on a machine without a CUDA GPU.

bench/gpu.sh runs this file first; CI machines with a GPU run it with the rest.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rag.config import Settings
from rag.device import computes_in_bf16
from rag.embeddings import load_embedder
from rag.evaluation.data import load_dataset
from rag.evaluation.finetune import fine_tune, sample_fit_probe
from rag.evaluation.recipes import build_training
from rag.generators.transformers import load_transformers
from tests.evaluation_data import tiny_tuning, write_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
TEXTS = ["The station cat is a grey tabby named Biscuit Admiral.", "nonlocal", "x " * 300]


@pytest.fixture(scope="module")
def gpu_generator():
    return load_transformers(Settings(device="cuda"))


def test_the_embedder_gives_the_cpus_vectors_on_the_gpu() -> None:
    on_gpu = load_embedder(Settings(device="cuda"))
    on_cpu = load_embedder(Settings(device="cpu"))
    assert on_gpu.model.device == "cuda" and on_cpu.model.device == "cpu"
    np.testing.assert_allclose(on_gpu.encode(TEXTS), on_cpu.encode(TEXTS), atol=1e-4)


def test_the_generator_answers_on_the_gpu_in_bf16(gpu_generator) -> None:
    expected = torch.bfloat16 if computes_in_bf16() else torch.float32
    assert gpu_generator.device == "cuda"
    assert gpu_generator.torch_model.dtype == expected
    chat = [
        {
            "role": "user",
            "content": "The station cat is named Biscuit Admiral.\n\nWhat is the cat's name?",
        }
    ]
    reply = gpu_generator.complete(chat, max_new_tokens=24)
    assert "Biscuit" in reply.text, reply.text
    assert gpu_generator.generate_batch([chat, chat], max_new_tokens=8)[0]
    assert "".join(gpu_generator.stream(chat, max_new_tokens=8)).strip()


def test_fine_tuning_trains_on_the_gpu_and_hands_back_the_generators_dtype(
    gpu_generator, tmp_path: Path
) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "people"))
    training = build_training("sft", dataset.train, dataset.documents)
    config = replace(tiny_tuning().config, recipe="sft", max_steps=3)
    fit = sample_fit_probe(training.fit_pairs, config.fit_sample, config.seed)
    model, result = fine_tune(
        gpu_generator, training.examples, config, tmp_path / "cache", fit=fit, show_progress=False
    )
    base = gpu_generator.torch_model
    assert (result.device, result.steps) == ("cuda", 3)
    assert result.final_loss is not None and np.isfinite(result.final_loss)
    assert model.dtype == base.dtype and next(model.parameters()).device.type == "cuda"
    again, reused = fine_tune(
        gpu_generator, training.examples, config, tmp_path / "cache", fit=fit, show_progress=False
    )
    assert reused.reused and again.dtype == base.dtype
    assert next(again.parameters()).device.type == "cuda"
    assert gpu_generator.with_model(model, "tuned").complete(training.examples[0][0]).text
