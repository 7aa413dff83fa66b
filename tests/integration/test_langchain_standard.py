"""LangChain's own standard tests (package langchain-tests) against the real retriever and
embedder: what a LangChain user may assume of any retriever, e.g. `invoke(q, k=1)`.

Their async tests run under pytest-asyncio (`asyncio_mode = "auto"` in pyproject.toml): the
suite refuses subclasses that override its tests, even only to mark them."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from rag.embeddings import Embedder
from rag.indexing import index_corpus
from rag.retrieval import IndexRetriever
from rag.store import load_index

from ..conftest import SAMPLE

pytestmark = pytest.mark.slow
standard = pytest.importorskip(
    "langchain_tests.integration_tests", reason="langchain-tests is in the test extra"
)


@pytest.fixture(scope="module")
def sample_retriever_params(settings, embedder, tmp_path_factory) -> dict[str, Any]:
    corpus = shutil.copytree(SAMPLE, tmp_path_factory.mktemp("standard") / "sample")
    index_corpus(corpus, "standard", settings, embedder=embedder, show_progress=False)
    return {"index": load_index(settings.index_root, "standard"), "embedder": embedder}


class TestIndexRetriever(standard.RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _loaded(self, sample_retriever_params) -> None:
        self.params = sample_retriever_params

    @property
    def retriever_constructor(self) -> type[IndexRetriever]:
        return IndexRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return self.params

    @property
    def retriever_query_example(self) -> str:
        return "What is the name of the station cat?"


class TestEmbedder(standard.EmbeddingsIntegrationTests):
    @pytest.fixture(autouse=True)
    def _loaded(self, embedder: Embedder) -> None:
        self.loaded = embedder

    @property
    def embeddings_class(self) -> type[Embedder]:
        return Embedder

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": self.loaded.model, "name": self.loaded.name}
