"""`rag index --engine ray` on a local Ray started here (2 CPUs) builds the same index as the
default path: same chunk ids and texts, vectors within 1e-5, same retrieval."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.indexing import index_corpus
from rag.retrieval import retrieve
from rag.store import load_index
from rag.store.faiss_vectors import all_vectors

from ..conftest import SAMPLE
from .conftest import sample_questions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    # On loopback: the tests refuse other addresses (tests/no_network), and Ray would look up
    # the machine's address by connecting a UDP socket outwards.
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def contents(settings, name: str) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    index = load_index(settings, name)
    try:
        ids, vectors = all_vectors(index.vectors.index)
        order = np.argsort(ids)
        chunks = index.chunks(ids.tolist())
        rows = [(int(i), *chunks[int(i)].__dict__.values()) for i in ids[order]]
        return rows, ids[order], vectors[order]
    finally:
        index.close()


def test_ray_builds_the_index_the_default_path_builds(
    local_ray, settings, embedder, tmp_path: Path
) -> None:
    corpus = Path(shutil.copytree(SAMPLE, tmp_path / "sample"))
    index_corpus(corpus, "plain", settings, embedder=embedder, show_progress=False)
    report = index_corpus(
        corpus, "ray", settings, embedder=embedder, show_progress=False, engine="ray"
    )
    assert report.chunks_added > 0

    rows_plain, ids_plain, vectors_plain = contents(settings, "plain")
    rows_ray, ids_ray, vectors_ray = contents(settings, "ray")
    assert rows_ray == rows_plain, "same chunk ids, documents, offsets and texts"
    assert np.array_equal(ids_ray, ids_plain)
    assert np.abs(vectors_ray - vectors_plain).max() < 1e-5

    plain, ray = load_index(settings, "plain"), load_index(settings, "ray")
    try:
        for question, _, _ in sample_questions():
            a = [(p.doc_id, p.chunk) for p in retrieve(plain, embedder, question, k=4)]
            b = [(p.doc_id, p.chunk) for p in retrieve(ray, embedder, question, k=4)]
            assert a == b, question
    finally:
        plain.close()
        ray.close()
