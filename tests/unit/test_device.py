"""RAG_DEVICE: which device and precision the torch models get, decided without a GPU.

torch.cuda.is_available (and is_bf16_supported) are monkeypatched, so these run the same on a
machine with a GPU and on one without; the real GPU path is tests/integration/test_gpu.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from rag import device
from rag.config import Settings
from rag.errors import ModelLoadError
from rag.evaluation.finetune import fine_tune
from tests.unit.test_finetune import BOOK, CharTokenizer, LearningModel, config, examples


@pytest.fixture
def gpu(monkeypatch):
    """Set whether torch 'sees' a CUDA GPU, and whether it computes in bf16."""

    def see(available: bool, bf16: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)

    return see


def test_auto_is_the_default_and_the_setting_reads_the_environment(monkeypatch):
    monkeypatch.delenv("RAG_DEVICE", raising=False)
    assert Settings().device == "auto"
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    assert Settings().device == "cpu"
    monkeypatch.setenv("RAG_DEVICE", "tpu")
    with pytest.raises(ValidationError, match="auto"):
        Settings()


def test_auto_takes_the_gpu_when_torch_sees_one_and_the_cpu_otherwise(gpu):
    gpu(False)
    assert device.resolve_device("auto") == "cpu"
    gpu(True)
    assert device.resolve_device("auto") == "cuda"
    assert device.resolve_device("cuda") == "cuda"


def test_cpu_never_asks_torch_about_gpus(monkeypatch):
    def asked() -> bool:
        raise AssertionError("RAG_DEVICE=cpu looked for a GPU")

    monkeypatch.setattr(torch.cuda, "is_available", asked)
    assert device.resolve_device("cpu") == "cpu"


def test_cuda_without_a_gpu_is_a_load_error_that_says_what_to_do(gpu):
    gpu(False)
    with pytest.raises(ModelLoadError, match=r"RAG_DEVICE=cuda.*sees no CUDA GPU.*auto or cpu"):
        device.resolve_device("cuda")
    with pytest.raises(ModelLoadError, match="auto, cpu or cuda"):
        device.resolve_device("gpu")


def test_the_generator_computes_in_bf16_only_on_a_gpu_that_supports_it(gpu):
    gpu(True, bf16=True)
    assert device.generation_dtype("cuda") == torch.bfloat16
    assert device.generation_dtype("cpu") == torch.float32
    gpu(True, bf16=False)
    assert device.generation_dtype("cuda") == torch.float32


def test_a_gpu_that_only_emulates_bf16_generates_in_float32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(  # an older card: bf16 tensors work, emulated, with no bf16 units
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation
    )
    assert device.generation_dtype("cuda") == torch.float32
    assert not isinstance(device.training_precision("cuda"), torch.autocast)


def test_training_autocasts_to_bf16_on_a_gpu_and_not_on_the_cpu(gpu):
    gpu(True, bf16=True)
    with device.training_precision("cpu"):
        assert not torch.is_autocast_enabled("cpu")
    on_gpu = device.training_precision(torch.device("cuda"))
    assert isinstance(on_gpu, torch.autocast)
    assert (on_gpu.device, on_gpu.fast_dtype) == ("cuda", torch.bfloat16)
    gpu(True, bf16=False)
    assert not isinstance(device.training_precision("cuda"), torch.autocast)


def test_inputs_stay_as_they_are_on_the_cpu():
    inputs = {"input_ids": torch.tensor([[1, 2]])}
    assert device.on_device(inputs, torch.device("cpu")) is inputs
    assert device.model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert device.model_device(object()) == torch.device("cpu")  # a stand-in without weights


def test_a_generator_asked_for_cuda_without_one_fails_before_loading(gpu, tmp_path: Path):
    from rag.generators.transformers import load_transformers

    gpu(False)
    missing = tmp_path / "no-such-generator"  # it would fail to load if it got that far
    with pytest.raises(ModelLoadError, match="RAG_DEVICE=cuda"):
        load_transformers(Settings(generator=str(missing), device="cuda"))


def test_the_embedder_asked_for_cuda_without_one_fails_before_loading(gpu, tmp_path: Path):
    from rag.embeddings import load_embedder

    gpu(False)
    with pytest.raises(ModelLoadError, match="RAG_DEVICE=cuda"):
        load_embedder(Settings(embedder=str(tmp_path / "no-such-embedder"), device="cuda"))


def test_fine_tuning_on_the_cpu_records_its_device_and_passes(tmp_path: Path):
    class Gen:
        torch_model = LearningModel(BOOK, pace=1000)  # never fits: the step budget stops it
        tokenizer = CharTokenizer()
        name = "fake"

    _, result = fine_tune(
        Gen(),
        examples(),
        config(max_steps=15),
        tmp_path,
        show_progress=False,
    )
    assert (result.device, result.steps) == ("cpu", 15)
    assert result.passes == pytest.approx(15 * 2 / len(BOOK))  # batch 2 over 10 pairs
