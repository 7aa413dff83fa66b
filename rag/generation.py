"""Moved to rag/generators/; these names remain so branches written against them still import."""

from rag.generators import GeneratorChatModel as TransformersChatModel
from rag.generators import load_generator, to_chat
from rag.generators.transformers import TransformersGenerator as Generator
from rag.generators.transformers import load_pretrained

__all__ = ["Generator", "TransformersChatModel", "load_generator", "load_pretrained", "to_chat"]
