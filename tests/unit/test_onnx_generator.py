"""The onnx backend without the engine: its converted-model cache and its decoding loop.

A fake `onnxruntime_genai` module replays scripted tokens, so stop strings, finish reasons,
deadlines and streaming are checked exactly; conversion is faked by writing files.
"""

from __future__ import annotations

import errno
import sys
import time
import types
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import GenerationTimeout, ModelLoadError
from rag.generators import ChatGenerator, load_generator
from rag.generators import onnx as backend
from rag.generators.source import resolve_source

EOS = 0


class PieceTokenizer:
    """Token i is PIECES[i]; a chat becomes the ids of its words."""

    PIECES = ("<eos>", "Paris", " is", " the", " capital", ".", "\n\n", "More", " words")
    eos_token_id = EOS

    def decode(self, ids, skip_special_tokens=True) -> str:
        return "".join(self.PIECES[i] for i in ids if i != EOS)

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True):
        text = " ".join(m["content"] for m in messages)
        return text if not tokenize else list(range(1, 1 + len(text.split())))

    def __call__(self, text: str, **_) -> dict[str, list[str]]:
        return {"input_ids": text.split()}


def fake_engine(script: list[int], delay: float = 0.0) -> types.ModuleType:
    """An onnxruntime_genai stand-in whose generator emits `script`, then end-of-sequence."""
    og = types.ModuleType("onnxruntime_genai")
    og.__version__ = "0.0-fake"
    og.seen = []

    class GeneratorParams:
        def __init__(self, model) -> None:
            self.options = {}

        def set_search_options(self, **options) -> None:
            self.options = options

    class Generator:
        def __init__(self, model, params) -> None:
            self.params, self.step, self.prompt = params, -1, []

        def append_tokens(self, batch) -> None:
            self.prompt = list(batch[0])
            og.seen.append((self.prompt, self.params.options))

        def generate_next_token(self) -> None:
            time.sleep(delay)
            self.step += 1

        def get_next_tokens(self) -> list[int]:
            return [script[self.step] if self.step < len(script) else EOS]

        def is_done(self) -> bool:
            return len(self.prompt) + self.step + 1 >= self.params.options["max_length"]

    og.GeneratorParams, og.Generator = GeneratorParams, Generator
    return og


def generator(monkeypatch, script: list[int], delay: float = 0.0, **settings):
    og = fake_engine(script, delay)
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", og)
    return backend.OnnxGenerator(object(), PieceTokenizer(), "fake", Settings(**settings)), og


CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def test_a_stop_string_ends_the_answer_with_finish_reason_stop(monkeypatch):
    gen, og = generator(monkeypatch, [1, 2, 3, 4, 5, 6, 7, 8])
    result = gen.complete(CHAT)
    assert result.text == "Paris is the capital."
    assert result.finish_reason == "stop"
    assert result.prompt_tokens == 6 and result.completion_tokens == 6
    assert og.seen[0][1] == {"max_length": 6 + 80, "do_sample": False}  # greedy by default
    assert isinstance(gen, ChatGenerator)


def test_running_out_of_tokens_is_finish_reason_length(monkeypatch):
    gen, _ = generator(monkeypatch, [1, 2, 3, 4, 8, 8, 8])
    result = gen.complete(CHAT, max_new_tokens=3)
    assert (result.text, result.completion_tokens, result.finish_reason) == (
        "Paris is the",
        3,
        "length",
    )


def test_end_of_sequence_is_finish_reason_stop(monkeypatch):
    gen, _ = generator(monkeypatch, [1, 2])
    result = gen.complete(CHAT)
    assert (result.text, result.completion_tokens, result.finish_reason) == ("Paris is", 2, "stop")


def test_stream_yields_the_same_text_in_pieces(monkeypatch):
    gen, _ = generator(monkeypatch, [1, 2, 3, 4, 5, 6, 7])
    pieces = list(gen.stream(CHAT))
    assert pieces == ["Paris", " is", " the", " capital", "."]
    assert gen.generate_batch([CHAT, CHAT]) == ["Paris is the capital."] * 2
    assert gen.count_tokens(CHAT) == 6 and gen.count_text_tokens("Paris is") == 2


def test_sampling_options_reach_the_engine_only_when_asked(monkeypatch):
    gen, og = generator(monkeypatch, [1], do_sample=True, temperature=0.5)
    gen.complete(CHAT)
    assert og.seen[0][1]["do_sample"] is True and og.seen[0][1]["temperature"] == 0.5


def test_a_deadline_raises_generation_timeout_and_frees_the_worker(monkeypatch):
    gen, _ = generator(monkeypatch, [7] * 50, delay=0.05)
    with pytest.raises(GenerationTimeout):
        gen.complete(CHAT, max_time=0.2)
    started = time.monotonic()
    assert gen.complete(CHAT, max_new_tokens=1).text == "More"
    assert time.monotonic() - started < 1.0


def test_a_stream_past_its_deadline_just_ends(monkeypatch):
    gen, _ = generator(monkeypatch, [8] * 50, delay=0.05)
    pieces = list(gen.stream(CHAT, max_time=0.3))
    assert 1 <= len(pieces) < 50


# --- the converted-model cache -------------------------------------------------------------


@pytest.fixture
def source_settings(tmp_path: Path, monkeypatch) -> Settings:
    """A generator folder with a fake GGUF; `build` is faked and counts its calls."""
    folder = tmp_path / "generator"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(b"weights one")
    monkeypatch.setattr(backend, "engine_version", lambda: "0.0-fake")
    return Settings(
        generator=str(folder),
        generator_gguf_file="model.gguf",
        generator_backend="onnx",
        cache_dir=tmp_path / "cache",
    )


def fake_build(calls: list[Path]):
    def build(source, out: Path, precision: str) -> None:
        calls.append(out)
        out.mkdir()
        (out / "model.onnx").write_bytes(b"graph " + source.gguf.read_bytes())
        (out / "genai_config.json").write_text("{}")

    return build


def test_conversion_is_cached_and_keyed_by_the_source_content(source_settings, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(backend, "build", fake_build(calls))
    source = resolve_source(source_settings)
    first = backend.convert(source_settings, source)
    assert backend.convert(source_settings, source) == first and len(calls) == 1
    backend.verify(first)
    assert (first / "model.onnx").read_bytes() == b"graph weights one"
    assert first.name.startswith("generator-onnx-int8-")
    source.gguf.write_bytes(b"weights two")
    second = backend.convert(source_settings, resolve_source(source_settings))
    assert second != first and len(calls) == 2
    int4 = source_settings.model_copy(update={"generator_precision": "int4"})
    assert backend.convert(int4, resolve_source(int4)) not in (first, second)
    assert not [p for p in first.parent.iterdir() if ".tmp-" in p.name]


def test_a_failed_conversion_leaves_no_cache_and_names_the_file(source_settings, monkeypatch):
    def broken(source, out: Path, precision: str) -> None:
        out.mkdir()
        (out / "model.onnx").write_bytes(b"half")
        raise ModelLoadError(f"onnxruntime-genai could not convert {source.gguf}: bad tensor")

    monkeypatch.setattr(backend, "build", broken)
    with pytest.raises(ModelLoadError, match=r"model\.gguf") as caught:
        backend.convert(source_settings, resolve_source(source_settings))
    assert caught.value.exit_code == 2
    assert not list((source_settings.model_cache).iterdir())


def test_a_full_disk_is_exit_1_and_keeps_the_previous_cache(source_settings, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(backend, "build", fake_build(calls))
    old = backend.convert(source_settings, resolve_source(source_settings))
    (source_settings.model_cache / "marker").write_text("x")
    resolve_source(source_settings).gguf.write_bytes(b"weights two")

    def full(source, out: Path, precision: str) -> None:
        out.mkdir()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(backend, "build", full)
    with pytest.raises(backend.ConversionDiskFull) as caught:
        backend.convert(source_settings, resolve_source(source_settings))
    assert caught.value.exit_code == 1
    assert sorted(p.name for p in source_settings.model_cache.iterdir()) == sorted(
        [old.name, "marker"]
    )
    backend.verify(old)


def test_a_corrupted_cache_is_refused_naming_the_file_and_left_alone(source_settings, monkeypatch):
    monkeypatch.setattr(backend, "build", fake_build([]))
    folder = backend.convert(source_settings, resolve_source(source_settings))
    (folder / "model.onnx").write_bytes(b"graph weights 0ne")  # same size, other bytes
    with pytest.raises(ModelLoadError, match=r"model\.onnx was altered") as caught:
        load_generator(source_settings)
    assert caught.value.exit_code == 2
    assert (folder / "model.onnx").read_bytes() == b"graph weights 0ne"
    (folder / "model.onnx").write_bytes(b"cut")
    with pytest.raises(ModelLoadError, match=r"model\.onnx is missing or truncated"):
        backend.verify(folder)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "absent", "does not exist"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "holds no model"),
    ],
)
def test_a_generator_folder_without_a_model_is_exit_2(tmp_path, make, message):
    folder = make(tmp_path)
    for backend_name in ("transformers", "onnx"):
        settings = Settings(generator=str(folder), generator_backend=backend_name)
        with pytest.raises(ModelLoadError, match=message) as caught:
            load_generator(settings)
        assert str(folder) in str(caught.value) and caught.value.exit_code == 2


def test_an_empty_gguf_file_is_exit_2_naming_it(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"")
    settings = Settings(generator=str(tmp_path), generator_gguf_file="model.gguf")
    with pytest.raises(ModelLoadError, match=r"model\.gguf is empty"):
        load_generator(settings)
