"""The calibrated gate on a real corpus with documents removed: real embedder, real FAISS.

fictional-people (25 invented people; nothing can know them in advance) where ../shared/data
has it, else 30 topics of the Python reference with generated questions: five documents are
left out of the index, the rest indexed, which calibrates the gate. The gate alone decides before
generation, so these tests need no generator: they ask the pipeline's gate directly.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from rag.calibration import (
    NEAR_MISS_CANDIDATES,
    NEAR_MISS_KINDS,
    calibrate,
    read_calibration,
)
from rag.chain import Pipeline
from rag.config import Settings
from rag.documents import load_corpus
from rag.evaluation.data import load_dataset
from rag.evaluation.refusal import split_held
from rag.evaluation.run import write_corpus
from rag.focus import split_sentences
from rag.gate import Gate, calibrated_gate
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


def cut_answers(dataset, skip: set[str], documents: int, rng: random.Random):
    """Near misses made from real questions: in `documents` documents, the one sentence that
    states a question's answer is cut out, so the document (its topic) stays indexed and the
    fact does not. Returns the corpus to index and those questions, now unanswerable."""
    by_doc: dict[str, list] = {}
    for q in dataset.test:
        if q.doc_id and q.doc_id not in skip and q.answers:
            by_doc.setdefault(q.doc_id, []).append(q)
    cut, corpus = {}, []
    for doc in dataset.documents:
        if doc.id in skip:
            continue
        text = doc.text
        if len(cut) < documents and doc.id in by_doc:
            for q in rng.sample(by_doc[doc.id], len(by_doc[doc.id])):
                holding = [s for s in split_sentences(text) if q.answers[0] in s]
                if len(holding) == 1 and text.count(q.answers[0]) == 1:
                    text = text.replace(holding[0], " ")
                    cut[doc.id] = q
                    break
        corpus.append(replace(doc, text=text))
    near, _ = split_held(list(cut.values()), corpus)
    return corpus, near


@pytest.fixture(scope="module")
def near_misses(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("near-miss")
    dataset = load_dataset(DATA if DATA.is_dir() else python_reference(root / "python"))
    corpus, near = cut_answers(dataset, set(), 20, random.Random(0))
    settings = Settings(index_root=root / "indexes")
    path = write_corpus(corpus, root / "corpus" / "corpus.jsonl")
    index_corpus(path, "trimmed", settings, embedder=embedder, show_progress=False)
    texts = {d.id: d.text for d in corpus}
    cut = {q.id for q in near}
    answerable = [  # still stated in their own (trimmed) document
        q
        for q in dataset.test
        if q.doc_id and q.answers and q.id not in cut and q.answers[0] in texts[q.doc_id]
    ]
    return settings, texts, near, random.Random(1).sample(answerable, 60)


def near_miss_rates(near_misses, embedder, kinds: tuple[str, ...]) -> tuple[float, float]:
    """(near misses refused, answerable refused) by the gate calibrated with `kinds`."""
    settings, texts, near, answerable = near_misses
    index = load_index(settings, "trimmed")
    calibration = calibrate(index, embedder, settings, texts, kinds=kinds)
    made = calibration.gate.figures["unanswerable_probes"]
    assert all(made[k] > 0 for k in kinds), made  # a real corpus gives each kind
    pipeline = Pipeline(index, embedder, None, settings)
    pipeline.gate = calibrated_gate(settings, calibration.gate)
    no = sum(refused(pipeline, q.question) for q in near) / len(near)
    yes = sum(refused(pipeline, q.question) for q in answerable) / len(answerable)
    index.close()
    return no, yes


def test_near_miss_probes_are_made_on_a_real_corpus_and_keep_answerable_questions_answered(
    near_misses, embedder
) -> None:
    assert len(near_misses[2]) >= 8, "too few near misses made"
    for kinds in ((), *((k,) for k in NEAR_MISS_CANDIDATES)):
        no, yes = near_miss_rates(near_misses, embedder, kinds)
        # measured 2026-12-06: () 0% / 0%, sentence 0% / 0%, swap 27% / 12% (n=11 / 60)
        assert yes <= 0.2, (kinds, no, yes)


@pytest.mark.xfail(
    strict=True,
    reason="issue 27: no signal of the gate reads whether the fact is stated; near misses "
    "pass (measured 0% refused on fictional-people); strict, so a signal that reads flips it",
)
def test_a_question_whose_topic_is_indexed_but_whose_fact_is_not_is_refused(
    near_misses, embedder
) -> None:
    no, yes = near_miss_rates(near_misses, embedder, NEAR_MISS_KINDS)
    assert no >= 0.5 and yes <= 0.15, (no, yes)
