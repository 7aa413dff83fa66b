"""The transformers backend: its dequantized-GGUF cache (used when the GGUF file is unchanged,
rebuilt when it is not) and the Generation it reports.

A tiny random Llama stands in for the dequantized SmolLM2, so no real model is loaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rag.config import Settings
from rag.generators import transformers as backend

GGUF = "model.gguf"


def tiny_model_and_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1, "hello": 2, "world": 3}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return tokenizer, LlamaForCausalLM(config)


@pytest.fixture
def source(tmp_path: Path, monkeypatch) -> tuple[Path, list[str]]:
    """A generator folder with a fake GGUF file; loads from it are recorded, then faked."""
    folder = tmp_path / "generator"
    folder.mkdir()
    (folder / GGUF).write_bytes(b"version one")
    loads: list[str] = []
    real = backend.load_pretrained

    def load(location: str, extra: dict[str, str]):
        loads.append(location)
        if location == str(folder):  # "dequantizing the GGUF file"
            assert extra == {"gguf_file": GGUF}
            return tiny_model_and_tokenizer()
        return real(location, extra)

    monkeypatch.setattr(backend, "load_pretrained", load)
    return folder, loads


def settings(folder: Path, tmp_path: Path, cache: bool = True) -> Settings:
    return Settings(
        generator=str(folder),
        generator_gguf_file=GGUF,
        generator_cache=cache,
        cache_dir=tmp_path / "cache",
    )


def test_second_load_reads_the_cache_with_the_same_weights(source, tmp_path):
    folder, loads = source
    first = backend.load_transformers(settings(folder, tmp_path))
    second = backend.load_transformers(settings(folder, tmp_path))
    assert loads[0] == str(folder)
    assert loads[1] != str(folder) and Path(loads[1]).parent == tmp_path / "cache"
    assert list(Path(loads[1]).glob("*.safetensors"))
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert second.tokenizer("hello world")["input_ids"] == [2, 3]


def test_a_changed_gguf_file_is_dequantized_again(source, tmp_path):
    folder, loads = source
    backend.load_transformers(settings(folder, tmp_path))
    (folder / GGUF).write_bytes(b"version two")
    backend.load_transformers(settings(folder, tmp_path))
    assert loads == [str(folder), str(folder)]
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2


def test_no_cache_unless_asked(source, tmp_path):
    folder, loads = source
    backend.load_transformers(settings(folder, tmp_path, cache=False))
    backend.load_transformers(settings(folder, tmp_path, cache=False))
    assert loads == [str(folder), str(folder)]
    assert not (tmp_path / "cache").exists()


def test_complete_reports_tokens_and_why_it_stopped(monkeypatch):
    monkeypatch.setattr(backend, "STOP_STRINGS", ())  # a word-level vocabulary cannot match them
    tokenizer, model = tiny_model_and_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    head = torch.nn.Linear(8, 4)  # "world" (3) is always the next token: never <eos>
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 10.0]))
    model.lm_head = head
    generator = backend.TransformersGenerator(model, tokenizer, "tiny", Settings())
    chat = [{"role": "user", "content": "hello world hello"}]
    result = generator.complete(chat, max_new_tokens=3)
    assert result.prompt_tokens == generator.count_tokens(chat) == 3
    assert (result.completion_tokens, result.finish_reason) == (3, "length")
    assert result.text == "world world world"
    assert generator.torch_model is model
    assert generator.with_model(model, "copy").tokenizer is tokenizer


def test_the_cache_is_on_by_default_and_off_on_request(monkeypatch):
    monkeypatch.delenv("RAG_GENERATOR_CACHE", raising=False)
    assert Settings().generator_cache is True
    monkeypatch.setenv("RAG_GENERATOR_CACHE", "false")
    assert Settings().generator_cache is False


def test_the_cache_holds_no_pickle_and_no_staging_left(source, tmp_path):
    folder, _ = source
    backend.load_transformers(settings(folder, tmp_path))
    (cache,) = (tmp_path / "cache").iterdir()
    assert not cache.name.count(".tmp-"), "the staging folder is renamed into place"
    suffixes = {p.suffix for p in cache.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".safetensors", ".jinja", ".txt", ".model"}, suffixes
