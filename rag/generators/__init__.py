"""Generators: one protocol (`ChatGenerator`), one module per backend, one factory.

generator = load_generator(Settings())        # the backend RAG_GENERATOR_BACKEND names
generator.complete([{"role": "user", "content": "Hi"}]).text
"""

from __future__ import annotations

from rag.config import Settings
from rag.generators.base import (
    ChatGenerator,
    Generation,
    GenerationQueue,
    GeneratorUnavailable,
    QueueFull,
    WorkerGenerator,
)
from rag.generators.chat_model import GeneratorChatModel, to_chat

__all__ = [
    "ChatGenerator",
    "Generation",
    "GenerationQueue",
    "GeneratorChatModel",
    "GeneratorUnavailable",
    "QueueFull",
    "WorkerGenerator",
    "load_generator",
    "to_chat",
]


def load_generator(settings: Settings) -> ChatGenerator:
    """Load the configured generator with the backend RAG_GENERATOR_BACKEND names."""
    if settings.generator_backend == "openai":  # a model server answers: nothing loads here
        from rag.generators.openai_server import load_openai

        return load_openai(settings)
    if settings.generator_backend == "onnx":
        from rag.generators.onnx import load_onnx

        return load_onnx(settings)
    from rag.generators.transformers import load_transformers

    return load_transformers(settings)
