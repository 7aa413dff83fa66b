"""`rag` with the fake bag-of-words embedder: the real CLI and on-disk code, without a model.

Run as `python -m tests.reliability.fake_cli index <corpus> --index <name>` from the repository
root, with RAG_EMBEDDER=fake-bow. Starting in under a second lets the crash loop and the
writer-race tests run dozens of real processes.
"""

from __future__ import annotations

import rag.indexing
from rag.cli import app
from tests.conftest import FakeEmbedder

rag.indexing.load_embedder = lambda settings: FakeEmbedder()

if __name__ == "__main__":
    app()
