"""A Word file and a PowerPoint deck, written by the tests, indexed beside the sample corpus with
the real embedder and FAISS, and answered and cited by the real SmolLM2 chain."""

from __future__ import annotations

import shutil

import pytest

from rag.chain import Pipeline
from rag.config import Settings
from rag.indexing import index_corpus
from rag.store import load_index

from ..conftest import SAMPLE
from ..office_files import write_docx, write_pptx

pytestmark = pytest.mark.slow
pytest.importorskip("pptx", reason="python-pptx is a dependency: pip install -e .")


@pytest.fixture(scope="module")
def office_pipeline(settings: Settings, embedder, generator, tmp_path_factory):
    corpus = tmp_path_factory.mktemp("office") / "corpus"
    shutil.copytree(SAMPLE, corpus)
    write_docx(corpus / "briefing.docx")
    (corpus / "plans").mkdir()
    write_pptx(corpus / "plans" / "winter.pptx")
    report = index_corpus(corpus, "office", settings, embedder=embedder, show_progress=False)
    assert report.skipped == [], report.skipped
    index = load_index(settings, "office")
    yield Pipeline(index, embedder, generator, settings)
    index.close()


@pytest.mark.parametrize(
    ("question", "expected", "doc_id"),
    [
        ("In which locker do the life jackets for the research boat hang?", "B7", "briefing.docx"),
        ("When do the drifting buoys go out?", "9 March", "plans/winter.pptx"),
    ],
)
def test_office_documents_are_answered_and_cited(
    office_pipeline: Pipeline, question: str, expected: str, doc_id: str
) -> None:
    answer = office_pipeline.ask(question)
    assert not answer.abstained, answer.reason
    assert expected in answer.answer, answer.answer
    cited = [s.doc_id for s in answer.sources if s.cited]
    assert doc_id in cited, (cited, answer.answer)
