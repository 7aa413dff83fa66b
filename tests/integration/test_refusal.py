"""The calibrated gate on a real corpus with documents removed: real embedder, real FAISS.

fictional-people (25 invented people; nothing can know them in advance) where ../shared/data
has it, else 30 topics of the Python reference with generated questions: five documents are
left out of the index, the rest indexed, which calibrates the gate. The gate alone decides before
generation, so these tests need no generator: they ask the pipeline's gate directly.
"""

from __future__ import annotations

import json
import random

import pytest

from rag.calibration import calibrate, read_calibration
from rag.chain import Pipeline
from rag.config import Settings
from rag.documents import load_corpus
from rag.evaluation.data import load_dataset
from rag.evaluation.refusal import split_held
from rag.evaluation.run import write_corpus
from rag.gate import Gate
from rag.indexing import index_corpus
from rag.store import load_index

from ..conftest import REPO
from .conftest import run_rag

DATA = REPO.parent / "shared" / "data" / "fictional-people"


@pytest.fixture(scope="module")
def removed(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("refusal")
    dataset = load_dataset(DATA if DATA.is_dir() else python_reference(root / "python"))
    held = set(random.Random(0).sample(sorted(d.id for d in dataset.documents), 5))
    remaining = [d for d in dataset.documents if d.id not in held]
    settings = Settings(index_root=root / "indexes")
    corpus = write_corpus(remaining, root / "corpus" / "corpus.jsonl")
    report = index_corpus(corpus, "people", settings, embedder=embedder, show_progress=False)
    unanswerable, _ = split_held([q for q in dataset.test if q.doc_id in held], remaining)
    answerable = [q for q in dataset.test if q.doc_id and q.doc_id not in held]
    return settings, report, corpus, dataset, held, unanswerable, answerable


def python_reference(folder):
    """30 topics of the Python reference, exported from this Python's own documentation."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "export", REPO / "corpora" / "python-reference" / "export.py"
    )
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    export.export_topics(folder / "all")
    folder.mkdir(exist_ok=True)
    for topic in sorted((folder / "all").glob("*.md"))[:30]:
        topic.rename(folder / topic.name)
    return folder


def refused(pipeline: Pipeline, question: str) -> bool:
    turn = pipeline._start(question)
    pipeline._gate(turn)
    return turn.refusal is not None


def test_indexing_calibrates_and_the_gate_refuses_what_the_index_cannot_answer(
    removed, embedder
) -> None:
    settings, report, _, _, _, unanswerable, answerable = removed
    assert report.calibration["gate"] == "calibrated", report.calibration
    index = load_index(settings, "people")
    calibration = read_calibration(settings, "people", index.version)
    assert len(calibration.probes) >= 60
    assert calibration.checked["answerable_probes"] > 0
    pipeline = Pipeline(index, embedder, None, settings)
    assert pipeline.gate.kind == "calibrated"
    assert len(unanswerable) >= 20
    no = sum(refused(pipeline, q.question) for q in unanswerable) / len(unanswerable)
    asked = random.Random(1).sample(answerable, 60)
    yes = sum(refused(pipeline, q.question) for q in asked) / len(asked)
    # bench/refusal.py gives the figures with intervals; these bounds only catch a broken gate
    assert no >= 0.6, f"refused {no:.0%} of questions about removed people"
    assert yes < no, f"refused {yes:.0%} of answerable questions, {no:.0%} of unanswerable"


def test_the_lexical_signal_set_calibrates_and_still_refuses_what_the_index_cannot_answer(
    removed, embedder
) -> None:
    settings, _, corpus, *_, unanswerable, answerable = removed
    lexical = settings.model_copy(update={"calibration_signals": "lexical"})
    index = load_index(settings, "people")
    texts = {d.id: d.text for d in load_corpus(corpus).documents}
    calibration = calibrate(index, embedder, lexical, texts)
    assert calibration.signals == "lexical" and len(calibration.probes) >= 60
    pipeline = Pipeline(index, embedder, None, settings)
    pipeline.gate = Gate("calibrated", "lexical", calibration.threshold, calibration.model)

    no = sum(refused(pipeline, q.question) for q in unanswerable) / len(unanswerable)
    asked = random.Random(1).sample(answerable, 60)
    yes = sum(refused(pipeline, q.question) for q in asked) / len(asked)
    assert no >= 0.6 and yes < no, (no, yes)


def test_a_small_update_keeps_the_other_documents_probes(removed, embedder) -> None:
    settings, _, corpus, dataset, held, _, _ = removed
    added = next(d for d in dataset.documents if d.id in held)
    with open(corpus, "a") as handle:
        handle.write(json.dumps({"id": added.id, "title": added.title, "text": added.text}) + "\n")
    report = index_corpus(corpus, "people", settings, embedder=embedder, show_progress=False)
    assert report.new == 1
    assert report.calibration["gate"] == "calibrated"
    assert report.calibration["reused_probes"] > 0.8 * report.calibration["probes"]


def test_rag_indexes_says_how_refusal_is_decided_and_a_corrupted_file_falls_back(
    removed,
) -> None:
    settings, *_ = removed
    env = {"RAG_INDEX_ROOT": str(settings.index_root)}
    listed = run_rag("indexes", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["refusal"]["gate"] == "calibrated" and 0 < row["refusal"]["threshold"] < 1
    path = settings.index_root / ".calibration" / "people" / f"{row['version']}.json"
    path.write_text(path.read_text()[:100])
    shown = run_rag("indexes", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "refusal: fixed thresholds" in shown.stdout and "unreadable" in shown.stdout
