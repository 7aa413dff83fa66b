"""IndexRetriever as LangChain calls it: `invoke(query, k=...)` overrides the constructor's k."""

from __future__ import annotations

import pytest

from rag.documents import load_corpus
from rag.errors import InputError
from rag.indexing import sync_index
from rag.retrieval import IndexRetriever
from rag.store import load_index

from .test_store import chunker


@pytest.fixture
def retriever(tiny_corpus, tmp_path, fake_embedder) -> IndexRetriever:
    root = tmp_path / "indexes"
    corpus = load_corpus(tiny_corpus)
    sync_index(corpus, root, "tiny", fake_embedder, chunker(fake_embedder), show_progress=False)
    return IndexRetriever(index=load_index(root, "tiny"), embedder=fake_embedder, k=3)


def test_invoke_k_overrides_the_constructor_k(retriever: IndexRetriever) -> None:
    query = "Which station keeps goats?"
    assert len(retriever.invoke(query)) == 3
    one = retriever.invoke(query, k=1)
    assert len(one) == 1 and one[0].metadata["doc_id"] == "beta.txt"
    assert len(retriever.invoke(query, k=4)) == 4
    assert retriever.k == 3  # a per-call k leaves the retriever as it was


def test_invoke_mode_and_where_override_for_one_call(retriever: IndexRetriever) -> None:
    only = retriever.invoke("lighthouse", where={"doc_id": "g-2"}, mode="lexical")
    assert [d.metadata["doc_id"] for d in only] == ["g-2"]


@pytest.mark.parametrize("k", [0, -1, True, "2"])
def test_invoke_refuses_a_k_that_is_not_a_positive_integer(retriever, k) -> None:
    with pytest.raises(InputError, match="k must be"):
        retriever.invoke("goats", k=k)
