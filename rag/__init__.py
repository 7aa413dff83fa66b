"""Retrieval-first question answering over a team's own documents with a small open model."""

__version__ = "0.1.0"
