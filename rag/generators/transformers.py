"""The transformers backend: a torch causal LM, the reference every backend is measured
against, and the one fine-tuning trains (`TransformersGenerator.torch_model`).

float32 on the CPU; on a GPU (RAG_DEVICE, rag/device.py) bfloat16 where the card supports it.
The packaged GGUF is dequantized by transformers (about 15 s); with RAG_GENERATOR_CACHE=true the
result is kept as float32 safetensors in the model cache, keyed by the GGUF file's content, and
moved to the device after loading, so one cache serves both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.device import generation_dtype, model_device, on_device, resolve_device
from rag.errors import GenerationTimeout, ModelLoadError
from rag.generators.base import STOP_STRINGS, Chat, Generation, WorkerGenerator, cut_at_stop
from rag.generators.source import GeneratorSource, resolve_source

log = logging.getLogger(__name__)


class TransformersGenerator(WorkerGenerator):
    """Greedy (by default) chat completion with a bounded number of new tokens."""

    backend = "transformers"

    def __init__(self, model, tokenizer, name: str, settings: Settings) -> None:
        super().__init__(name, settings)
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings

    @property
    def device(self) -> str:
        """Where the model runs: "cpu" or "cuda" (read from its weights)."""
        return model_device(self.model).type

    @property
    def torch_model(self):
        """The torch model itself, for fine-tuning; no other backend has one."""
        return self.model

    def with_model(self, model, name: str) -> TransformersGenerator:
        """A generator over another torch model (a fine-tuned copy) with this tokenizer."""
        return TransformersGenerator(model, self.tokenizer, name, self.settings)

    def run_on_worker(self, work, left):
        import torch

        with torch.inference_mode():
            return work(left)

    def _inputs(self, messages: Chat):
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return on_device(inputs, model_device(self.model))

    def _options(self, max_new_tokens: int | None, temperature: float | None) -> dict[str, Any]:
        sample = self.sampling(temperature)
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens or self.max_new_tokens,
            "do_sample": sample is not None,
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            "tokenizer": self.tokenizer,
        }
        if STOP_STRINGS:
            options["stop_strings"] = list(STOP_STRINGS)
        if sample is not None:
            options["temperature"] = sample
        else:  # silence warnings about sampling settings in the model's generation config
            options.update(temperature=None, top_p=None, top_k=None)
        return options

    def count_tokens(self, messages: Chat) -> int:
        return int(self._inputs(messages)["input_ids"].shape[1])

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat_prompt(self, messages: Chat) -> str:
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def complete(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> Generation:
        """Complete a chat; raises GenerationTimeout when `max_time` seconds run out."""
        import time

        inputs = self._inputs(messages)
        options = self._options(max_new_tokens, temperature)

        def work(left: float | None) -> Any:
            start = time.monotonic()
            output = self.model.generate(**inputs, **options, max_time=left)
            if left is not None and time.monotonic() - start >= left:
                raise GenerationTimeout(f"generation ran past its {max_time:.1f} s deadline")
            return output

        output = self.wait(self.submit(max_time, work), max_time)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        new_tokens = output[0][prompt_tokens:].cpu()
        raw = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        text, stopped = cut_at_stop(raw)
        ended = len(new_tokens) > 0 and int(new_tokens[-1]) == self.tokenizer.eos_token_id
        full = len(new_tokens) >= options["max_new_tokens"]
        return Generation(
            text=text.strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(new_tokens),
            finish_reason="length" if full and not ended and not stopped else "stop",
        )

    def generate_batch(
        self, conversations: list[Chat], max_new_tokens: int | None = None
    ) -> list[str]:
        """Complete several chats in one padded batch: on a CPU, decoding 4 sequences together
        costs little more per step than decoding one, so throughput grows with the batch."""
        if not conversations:
            return []
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"  # new tokens must follow each prompt directly
        try:
            inputs = self.tokenizer.apply_chat_template(
                conversations,
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
                padding=True,
            )
        finally:
            self.tokenizer.padding_side = side
        inputs = on_device(inputs, model_device(self.model))
        options = self._options(max_new_tokens, None)
        output = self.submit(None, lambda _: self.model.generate(**inputs, **options)).result()
        width = inputs["input_ids"].shape[1]
        return [
            cut_at_stop(self.tokenizer.decode(row[width:], skip_special_tokens=True))[0].strip()
            for row in output.cpu()
        ]

    def stream(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as they are generated on the generation thread.

        Past `max_time` the stream simply ends: the client already holds what came.
        """
        from transformers import TextIteratorStreamer

        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=max_time
        )
        options = self._options(max_new_tokens, temperature)

        def work(left: float | None) -> None:
            try:
                self.model.generate(**inputs, **options, streamer=streamer, max_time=left)
            except BaseException:
                streamer.end()  # wake the reader, then let the future carry the error
                raise

        future = self.submit(max_time, work)
        future.add_done_callback(lambda f: f.cancelled() and streamer.end())
        try:
            yield from streamer
        except queue.Empty:
            future.cancel()
            raise GenerationTimeout(f"no token within {max_time:.1f} s") from None
        if future.done() and not future.cancelled() and future.exception():
            raise future.exception()


def load_transformers(settings: Settings) -> TransformersGenerator:
    """Load tokenizer and model on RAG_DEVICE, from a GGUF file when one is configured."""
    device = resolve_device(settings.device)  # a GPU asked for and absent fails before loading
    source = resolve_source(settings)
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    cache = dequantized_cache_dir(settings, source)
    cached = cache is not None and (cache / "config.json").is_file()
    try:
        if cached:
            tokenizer, model = load_pretrained(str(cache), {})
        else:
            tokenizer, model = load_pretrained(source.location, source.load_options)
            if cache is not None:
                save_dequantized(model, tokenizer, cache)
    except Exception as exc:  # OSError, ValueError, ImportError...: all mean "cannot load"
        raise ModelLoadError(f"could not load generator {settings.generator!r}: {exc}") from exc
    if device != "cpu":
        model.to(device=device, dtype=generation_dtype(device))
    model.eval()
    log.info(
        "loaded generator %s%s on %s (%s)",
        source.name,
        " from its cache" if cached else "",
        device,
        str(model.dtype).removeprefix("torch."),
    )
    return TransformersGenerator(model, tokenizer, source.name, settings)


def load_pretrained(location: str, extra: dict[str, str]):
    """(tokenizer, model) from a folder or hub id; `extra` may name a GGUF file in it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location, **extra)
    model = AutoModelForCausalLM.from_pretrained(location, **extra)
    return tokenizer, model


def dequantized_cache_dir(settings: Settings, source: GeneratorSource) -> Path | None:
    """Where the dequantized generator is kept, or None when there is nothing to cache.

    Only GGUF generators are cached (other formats load as fast as the cache would). The
    key is the GGUF file's SHA-256 and the transformers version, so a new file or a new
    dequantizer never serves stale weights.
    """
    if not settings.generator_cache or source.gguf is None or not source.gguf.is_file():
        return None
    import transformers

    digest = hashlib.sha256(transformers.__version__.encode())
    digest.update(source.digest().encode())
    return settings.model_cache / f"generator-{digest.hexdigest()[:16]}"


def save_plain(model, tokenizer, folder: Path) -> None:
    """Weights, config and tokenizer as an ordinary float model folder.

    transformers refuses `save_pretrained` on a model it dequantized from GGUF, although the
    tensors in hand are plain float32; converters also need `architectures`, which a config
    read from GGUF lacks.
    """
    from safetensors.torch import save_model

    folder.mkdir(parents=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = config.get("architectures") or [type(model).__name__]
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)


def save_dequantized(model, tokenizer, cache: Path) -> None:
    """Write into a staging folder beside, then rename into place: all or nothing."""
    staging = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save_plain(model, tokenizer, staging)
        staging.rename(cache)
    except OSError as exc:  # a full disk or a concurrent writer: the model in hand still works
        log.warning("could not cache the generator in %s: %s", cache, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
