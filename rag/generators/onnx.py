"""The ONNX Runtime GenAI backend: the generator converted once to ONNX with int8 (or int4)
weights, decoded by onnxruntime-genai on the CPU.

int8 is the default because it keeps the answers: on fictional-people's 80 questions the rag
system scored 66.3% containment with int8 against 67.5% on the float32 torch path, and 46.3%
with int4, whose rounding of the already 4-bit GGUF weights rewords 88% of greedy answers.

Conversion (`convert`) dequantizes the source with transformers, writes a plain float folder,
then runs onnxruntime-genai's model builder on it. The result is cached under
RAG_CACHE_DIR, keyed by the source's SHA-256, the engine's version and the precision, and
written like an index: into a staging folder, checked, then renamed into place, so a failed
or interrupted conversion never leaves a half cache and never touches an earlier one.
Prompts are built and decoded by the same Hugging Face tokenizer as the transformers backend,
so both see identical token ids.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import GenerationTimeout, ModelLoadError, RagError
from rag.generators.base import Chat, Generation, WorkerGenerator, cut_at_stop
from rag.generators.source import GeneratorSource, resolve_source

log = logging.getLogger(__name__)
FORMAT = 2  # bump when the cached folder's layout or the builder's options change
MANIFEST = "rag-manifest.json"  # written last: a folder without it is not a finished cache


class ConversionDiskFull(RagError):
    """The disk filled while converting: nothing was cached; free space and retry (exit 1)."""


def engine_version() -> str:
    try:
        import onnxruntime_genai as og
    except ImportError:
        raise ModelLoadError(
            "RAG_GENERATOR_BACKEND=onnx needs onnxruntime-genai: pip install -e '.[onnx]'"
        ) from None
    return og.__version__


def cache_dir(settings: Settings, source: GeneratorSource) -> Path:
    """The converted model's folder: one per source content, engine version and precision."""
    key = f"{source.digest()}:{engine_version()}:{settings.generator_precision}:{FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return settings.model_cache / f"generator-onnx-{settings.generator_precision}-{digest}"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify(folder: Path) -> None:
    """Raise ModelLoadError naming the first file that is missing or altered."""
    manifest = folder / MANIFEST
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"the converted generator's manifest {manifest} is unreadable: {exc}"
        ) from None
    for name, expected in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != expected["bytes"]:
            raise ModelLoadError(
                f"the converted generator file {path} is missing or truncated: delete {folder} "
                "to convert again"
            )
        if file_digest(path) != expected["sha256"]:
            raise ModelLoadError(
                f"the converted generator file {path} was altered: delete {folder} to convert again"
            )


def write_manifest(folder: Path, source: GeneratorSource, precision: str) -> None:
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": file_digest(p)}
        for p in sorted(folder.iterdir())
        if p.is_file()
    }
    manifest = {
        "source": source.name,
        "engine": f"onnxruntime-genai {engine_version()}",
        "precision": precision,
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def convert(settings: Settings, source: GeneratorSource) -> Path:
    """The converted model's folder, converting the source first when it is not cached."""
    target = cache_dir(settings, source)
    if (target / MANIFEST).is_file():
        return target
    if target.exists():  # a folder without a manifest was never finished by us
        raise ModelLoadError(
            f"the converted generator {target} is incomplete (no {MANIFEST}): delete it to "
            "convert again"
        )
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    started = time.perf_counter()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        build(source, staging, settings.generator_precision)
        write_manifest(staging, source, settings.generator_precision)
        staging.rename(target)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ConversionDiskFull(
                f"the disk filled while converting the generator into {staging}; nothing was cached"
            ) from None
        raise ModelLoadError(f"could not write the converted generator {staging}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %s in %.0f s into %s", source.name, time.perf_counter() - started, target)
    return target


def build(source: GeneratorSource, out: Path, precision: str) -> None:
    """Dequantize the source into a float folder, then run the model builder on it."""
    from rag.generators.transformers import load_pretrained, save_plain

    what = source.gguf or Path(source.location)
    try:
        tokenizer, model = load_pretrained(source.location, source.load_options)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        raise ModelLoadError(f"could not read the generator {what}: {exc}") from exc
    except Exception as exc:  # ValueError, KeyError...: a file transformers cannot read
        raise ModelLoadError(f"could not read the generator {what}: {exc}") from exc
    plain = out.with_name(out.name + "-float")
    shutil.rmtree(plain, ignore_errors=True)
    try:
        save_plain(model, tokenizer, plain)
        del model
        command = builder_command(plain, out, precision, plain / "builder-cache")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not (out / "genai_config.json").is_file():
            if "No space left" in done.stderr:
                raise OSError(errno.ENOSPC, "No space left on device")
            tail = "\n".join(done.stderr.strip().splitlines()[-3:])
            raise ModelLoadError(f"onnxruntime-genai could not convert {what}: {tail}")
        tokenizer.save_pretrained(out)  # the same tokenizer (and chat template) as transformers
    finally:
        shutil.rmtree(plain, ignore_errors=True)


def builder_command(
    plain: Path, out: Path, precision: str, cache: Path, extra: list[str] | None = None
) -> list[str]:
    """onnxruntime-genai's model builder from a float folder to a CPU model, `extra` options
    (KEY=VALUE) added to rag's own."""
    return [
        sys.executable, "-m", "onnxruntime_genai.models.builder",
        "-i", str(plain), "-o", str(out), "-p", precision, "-e", "cpu", "-c", str(cache),
        # logits of the last prompt token only: the 49k-word head over every prompt token
        # made time to first token on a 1,600-token prompt 3x slower than torch's
        "--extra_options", "prune_lm_head=true", *(extra or []),
    ]  # fmt: skip


class OnnxGenerator(WorkerGenerator):
    """Chat completion on an onnxruntime-genai model, one token at a time on the worker."""

    backend = "onnx"

    def __init__(self, model, tokenizer, name: str, settings: Settings) -> None:
        super().__init__(name, settings)
        self.model = model
        self.tokenizer = tokenizer

    def _ids(self, messages: Chat) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    def count_tokens(self, messages: Chat) -> int:
        return len(self._ids(messages))

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat_prompt(self, messages: Chat) -> str:
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def _decode(
        self,
        ids: list[int],
        max_new_tokens: int,
        temperature: float | None,
        deadline: float | None,
    ) -> Iterator[tuple[str, list[int], str | None]]:
        """(new text, tokens so far, finish reason or None) after each token, on the worker.

        Stops at the end-of-sequence token, a stop string, `max_new_tokens` or the deadline
        (finish reason "timeout").
        """
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        options: dict[str, Any] = {"max_length": len(ids) + max_new_tokens}
        if temperature is None:
            options["do_sample"] = False
        else:
            options.update(do_sample=True, temperature=temperature, top_k=50, top_p=1.0)
        params.set_search_options(**options)
        generator = og.Generator(self.model, params)
        generator.append_tokens([ids])
        tokens: list[int] = []
        sent = ""
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                yield "", tokens, "timeout"
                return
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            if token == self.tokenizer.eos_token_id:
                yield "", tokens, "stop"
                return
            tokens.append(token)
            text, stopped = cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True))
            # hold back a trailing partial character (an incomplete UTF-8 sequence)
            piece = text[len(sent) :] if not text.endswith("\ufffd") else ""
            sent += piece
            if stopped:
                yield piece, tokens, "stop"
                return
            if len(tokens) >= max_new_tokens or generator.is_done():
                yield piece, tokens, "length" if len(tokens) >= max_new_tokens else "stop"
                return
            yield piece, tokens, None

    def complete(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> Generation:
        """Complete a chat; raises GenerationTimeout when `max_time` seconds run out."""
        ids = self._ids(messages)
        limit = max_new_tokens or self.max_new_tokens
        sample = self.sampling(temperature)

        def work(left: float | None) -> Generation:
            deadline = None if left is None else time.monotonic() + left
            pieces: list[str] = []
            for piece, tokens, reason in self._decode(ids, limit, sample, deadline):
                pieces.append(piece)
                if reason == "timeout":
                    raise GenerationTimeout(f"generation ran past its {max_time:.1f} s deadline")
                if reason is not None:
                    return Generation("".join(pieces).strip(), len(ids), len(tokens), reason)
            raise AssertionError("the decoder ended without a finish reason")

        return self.wait(self.submit(max_time, work), max_time)

    def generate_batch(
        self, conversations: list[Chat], max_new_tokens: int | None = None
    ) -> list[str]:
        """One chat after another: per token the engine costs little, so there is no padding."""
        return [self.complete(chat, max_new_tokens).text for chat in conversations]

    def stream(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as they are decoded on the generation thread.

        Past `max_time` the stream simply ends: the client already holds what came.
        """
        import queue

        ids = self._ids(messages)
        limit = max_new_tokens or self.max_new_tokens
        sample = self.sampling(temperature)
        pieces: queue.SimpleQueue[str | None] = queue.SimpleQueue()

        def work(left: float | None) -> None:
            deadline = None if left is None else time.monotonic() + left
            try:
                for piece, _, _ in self._decode(ids, limit, sample, deadline):
                    if piece:
                        pieces.put(piece)
            finally:
                pieces.put(None)

        future = self.submit(max_time, work)
        future.add_done_callback(lambda f: f.cancelled() and pieces.put(None))
        while True:
            try:
                piece = pieces.get(timeout=None if max_time is None else max_time)
            except queue.Empty:
                future.cancel()
                raise GenerationTimeout(f"no token within {max_time:.1f} s") from None
            if piece is None:
                break
            yield piece
        if future.done() and not future.cancelled() and future.exception():
            raise future.exception()


def load_onnx(settings: Settings) -> OnnxGenerator:
    """Convert the configured generator when needed (cached), then load it."""
    engine_version()  # a clear error before anything heavy when the engine is missing
    source = resolve_source(settings)
    folder = convert(settings, source)
    verify(folder)
    try:
        import onnxruntime_genai as og
        from transformers import AutoTokenizer

        config = og.Config(str(folder))
        config.clear_providers()  # the CPU
        if settings.threads:
            config.overlay(
                json.dumps(
                    {
                        "model": {
                            "decoder": {
                                "session_options": {"intra_op_num_threads": settings.threads}
                            }
                        }
                    }
                )
            )
        model = og.Model(config)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        raise ModelLoadError(f"could not load the converted generator {folder}: {exc}") from exc
    log.info(
        "loaded generator %s (onnx %s) from %s", source.name, settings.generator_precision, folder
    )
    return OnnxGenerator(
        model, tokenizer, f"{source.name} [onnx {settings.generator_precision}]", settings
    )
