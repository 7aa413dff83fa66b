"""The calibrated gate: probes, the fitted model, its file, the fallbacks, and fair counting."""

from __future__ import annotations

import json
import random
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from rag.answerability import SIGNAL_SETS, AnswerabilityModel, Signals, fit
from rag.calibration import (
    Calibration,
    Probe,
    _fit_gate,
    _two_fold,
    calibrate,
    entity_names,
    held_elsewhere,
    probe_question,
    probe_questions,
    read_calibration,
    save_calibration,
    save_fallback,
    signals_of,
    swap_pairs,
    swap_question,
    without_sentence,
)
from rag.config import Settings
from rag.documents import Document
from rag.evaluation.data import Question
from rag.evaluation.refusal import choose_held, coverage_curve, split_held
from rag.gate import (
    CalibrationError,
    FittedGate,
    calibration_path,
    describe_calibration,
    load_gate,
    read_gate,
)
from rag.grounding import pinned_names
from rag.indexing import index_corpus
from rag.retrieval import Passage
from rag.store import load_index

FEATURES = SIGNAL_SETS["full"]


def signals(**values: float) -> Signals:
    return Signals(**({f.name: 0.0 for f in fields(Signals)} | values))


def model() -> AnswerabilityModel:
    rng = np.random.default_rng(0)
    ok = rng.normal(0.8, 0.1, size=(60, len(FEATURES)))
    no = rng.normal(0.3, 0.1, size=(60, len(FEATURES)))
    return fit(np.vstack([ok, no]), np.array([1.0] * 60 + [0.0] * 60), FEATURES)


def test_a_probe_drops_the_numbers_and_keeps_only_part_of_the_sentence() -> None:
    sentence = "The northern reactor was rebuilt in 1987 after the great flood destroyed its hall."
    question = probe_question(sentence, "Engineers from Oslo led the repairs.", random.Random(3))
    assert question is not None and question.endswith("?")
    words = question.rstrip("?").split()[1:]
    assert "1987" not in question
    sentence_words = [w for w in words if w.lower() in sentence.lower()]
    assert 0 < len(sentence_words) < len(sentence.split()) - 3
    assert probe_question("Yes it is.", "", random.Random(0)) is None  # nothing to ask about


def test_probes_spread_over_the_documents_and_repeat_for_a_seed() -> None:
    documents = {
        f"d{i}": " ".join(
            f"Station {i} keeps {n} goats named after planets near the coast." for n in range(5)
        )
        for i in range(6)
    }
    pairs = probe_questions(documents, 12, seed=1)
    assert len(pairs) == 12
    assert {d for d, *_ in pairs} == set(documents)
    assert probe_questions(documents, 12, seed=1) == pairs
    assert {d for d, *_ in probe_questions(documents, 12, seed=1, only={"d2"})} == {"d2"}


def test_the_fitted_model_ranks_answerable_signals_higher_and_survives_its_file() -> None:
    fitted = model()
    high = signals(**{f: 0.8 for f in FEATURES})
    low = signals(**{f: 0.3 for f in FEATURES})
    assert fitted.score(high) > 0.9 > 0.1 > fitted.score(low)
    again = AnswerabilityModel.from_dict(json.loads(json.dumps(fitted.as_dict())))
    assert again.score(high) == pytest.approx(fitted.score(high))
    broken = fitted.as_dict() | {"scale": [0.0] * len(FEATURES)}
    with pytest.raises(ValueError, match="scales"):
        AnswerabilityModel.from_dict(broken)


def calibration(settings: Settings, version: str = "v-1") -> Calibration:
    probe = Probe("d1", "What goats?", [0.8] * len(FEATURES), [0.3] * len(FEATURES))
    fitted = FittedGate("tiny", version, model(), 0.5, 0.1, "calibrated on 1 probe", {"probes": 1})
    return Calibration(fitted, {"answerable_refused": 0.1}, [probe], 1.0)


def test_a_saved_calibration_reads_back_and_decides(tmp_path: Path) -> None:
    settings = Settings(index_root=tmp_path)
    save_calibration(settings, calibration(settings))
    assert read_calibration(settings, "tiny", "v-1").threshold == 0.5
    gate = load_gate(settings, "tiny", "v-1")
    assert gate.kind == "calibrated"
    assert gate.refusal(signals(**{f: 0.8 for f in FEATURES})) is None
    assert "below the index's threshold" in gate.refusal(signals(**{f: 0.3 for f in FEATURES}))
    strict = load_gate(settings.model_copy(update={"refusal_threshold": 0.9999}), "tiny", "v-1")
    assert "RAG_REFUSAL_THRESHOLD" in strict.why
    assert strict.refusal(signals(**{f: 0.8 for f in FEATURES})) is not None


def test_a_missing_or_corrupted_calibration_falls_back_to_the_fixed_thresholds_and_says_so(
    tmp_path: Path,
) -> None:
    settings = Settings(index_root=tmp_path)
    gate = load_gate(settings, "tiny", "v-1")
    assert gate.kind == "fixed" and "no calibration" in gate.why and "rag index" in gate.why
    path = calibration_path(settings, "tiny", "v-1")
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "threshold": 7')
    gate = load_gate(settings, "tiny", "v-1")
    assert gate.kind == "fixed" and "unreadable" in gate.why and str(path) in gate.why
    assert gate.threshold == settings.min_sentence_score
    save_fallback(settings, "tiny", "v-1", "index 'tiny' has 2 document(s)")
    assert "2 document(s)" in load_gate(settings, "tiny", "v-1").why
    with pytest.raises(CalibrationError, match="2 document"):
        read_calibration(settings, "tiny", "v-1")


def test_out_of_range_overrides_are_refused_with_the_setting_named() -> None:
    with pytest.raises(ValidationError, match="refusal_threshold"):
        Settings(refusal_threshold=1.5)
    with pytest.raises(ValidationError, match="calibration_false_refusal"):
        Settings(calibration_false_refusal=0.7)


def test_a_corpus_of_two_documents_is_not_calibrated_and_rag_index_says_why(
    tmp_path: Path, fake_embedder
) -> None:
    corpus = tmp_path / "two"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha station keeps seventeen goats named after planets.\n")
    (corpus / "b.txt").write_text("Beta harbour has a lighthouse called Wenlock since 1901.\n")
    settings = Settings(index_root=tmp_path / "indexes")
    report = index_corpus(corpus, "two", settings, embedder=fake_embedder, show_progress=False)
    assert report.calibration["gate"] == "fixed"
    assert "2 document(s)" in report.calibration["why"]
    index = load_index(settings, "two")
    with pytest.raises(CalibrationError, match="at least 3"):
        calibrate(index, fake_embedder, settings, {"a": "x", "b": "y"})
    assert "2 document(s)" in load_gate(settings, "two", index.version).why


def doc(i: str, text: str) -> Document:
    return Document(i, i, text)


def test_a_held_out_question_is_unanswerable_only_when_no_remaining_document_holds_it() -> None:
    remaining = [doc("a", "The festival opened on 12 May in Harrowgate."), doc("b", "Rain fell.")]
    questions = [
        Question("q1", "When did the festival open?", ["12 May"], "gone"),
        Question("q2", "Who sang first?", ["Mira Olsen"], "gone"),
    ]
    unanswerable, still = split_held(questions, remaining)
    assert [q.id for q in unanswerable] == ["q2"]
    assert [q.id for q in still] == ["q1"]


def test_documents_are_held_out_until_enough_questions_are_unanswerable() -> None:
    documents = [doc(f"d{i}", f"Fact number {i} is unique.") for i in range(20)]
    questions = [
        Question(f"q{i}-{j}", "?", [f"answer {i} {j}"], f"d{i}")
        for i in range(20)
        for j in range(4)
    ]
    held = choose_held(questions, documents, random.Random(0), share=0.05, minimum=12)
    assert len(held) == 3  # 4 unanswerable questions each
    few = choose_held(questions, documents, random.Random(0), share=0.05, minimum=1000)
    assert len(few) == 10  # never more than half the documents asked about


def test_the_coverage_curve_rises_in_accuracy_as_the_threshold_rises() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, None]
    correct = [1.0, 1.0, 0.0, 0.0, 0.0]
    curve = coverage_curve(
        scores, correct, [True, True, True, True, False], [0.65, 0.2], [True, True]
    )
    assert curve[0]["answered"] == 0.8 and curve[0]["accuracy_of_answered"] == 0.5
    assert curve[-1]["answered"] == 0.2 and curve[-1]["accuracy_of_answered"] == 1.0
    # the lowest threshold drawn is the lowest answered score (0.6): 0.2 is refused there
    assert curve[0]["unanswerable_refused"] == 0.5 and curve[-1]["unanswerable_refused"] == 1.0


def passage(doc_id: str, text: str) -> Passage:
    return Passage(0, doc_id, doc_id, 0, 0, len(text), text, 0.5, 0.5)


def test_a_probe_whose_facts_another_document_states_is_not_counted_unanswerable() -> None:
    sentence = "The bridge at Varnholm reopened in 1987 after engineers replaced its cables."
    question = "When bridge Varnholm reopened?"
    repeated = passage("d2", "Years later the engineers replaced the cables; it reopened in 1987.")
    unrelated = passage("d3", "The bridge at Varnholm is painted red and crosses the river.")
    assert held_elsewhere(sentence, question, [unrelated, repeated])
    assert not held_elsewhere(sentence, question, [unrelated])
    assert not held_elsewhere(sentence, question, [])


def test_probes_fit_a_gate_at_the_target_and_a_two_fold_check_counts_only_labelled_ones() -> None:
    rng = np.random.default_rng(0)
    probes = [
        Probe(
            f"d{i % 10}",
            "q",
            list(rng.normal(0.8, 0.1, len(FEATURES))),
            None if i % 4 == 0 else list(rng.normal(0.3, 0.1, len(FEATURES))),
        )
        for i in range(80)
    ]
    model, threshold = _fit_gate(probes, 0.1, FEATURES)
    scores = [model.score(signals_of(p.answerable, FEATURES)) for p in probes]
    assert 0.05 <= np.mean(np.array(scores) < threshold) <= 0.15
    checked = _two_fold(probes, 0.1, FEATURES, seed=0)
    assert checked["unanswerable_probes"] == 60 and checked["answerable_probes"] == 80
    assert checked["unanswerable_refused"] > 0.9


def test_probes_the_names_rule_refuses_first_do_not_shape_the_gate() -> None:
    """The chain refuses a question naming what no passage mentions before the gate runs, so
    such probes are left out of the fit, yet still counted as refused by the two-fold check."""
    rng = np.random.default_rng(1)
    passing = [
        Probe(f"d{i % 10}", "q", list(rng.normal(0.8, 0.1, len(FEATURES))), None) for i in range(40)
    ]
    passing += [
        Probe(f"d{i % 10}", "q", None, list(rng.normal(0.3, 0.1, len(FEATURES)))) for i in range(40)
    ]
    # unanswerable probes with scores like answerable ones, but refused by the names rule
    named_out = [
        Probe(
            f"d{i % 10}",
            "q",
            None,
            list(rng.normal(0.8, 0.1, len(FEATURES))),
            unanswerable_named=False,
        )
        for i in range(40)
    ]
    model, _ = _fit_gate(passing + named_out, 0.1, FEATURES)
    alone, _ = _fit_gate(passing, 0.1, FEATURES)
    assert model.weights == alone.weights, "the names-refused probes changed the fit"
    checked = _two_fold(passing + named_out, 0.1, FEATURES, seed=0)
    assert checked["unanswerable_probes"] == 80 and checked["unanswerable_refused"] > 0.9
    # too few pass the names rule to place a model: all unanswerable probes are used
    few = passing[:40] + passing[40:45] + named_out
    assert (
        _fit_gate(few, 0.1, FEATURES)[0].weights
        != _fit_gate(passing[:40] + passing[40:45], 0.1, FEATURES)[0].weights
    )


class LexicalIndex:
    """Just what pinned_names reads: the lexical search, the chunks' documents, the manifest."""

    def __init__(self, docs: dict[str, list[str]]) -> None:
        self.rows = [(d, t) for d, texts in docs.items() for t in texts]
        self.manifest = {"documents": {d: {"chunks": len(t)} for d, t in docs.items()}}

    def lexical_search(self, terms: list[str], n: int) -> list[tuple[int, float]]:
        hits = [i for i, (_, t) in enumerate(self.rows) if terms[0] in t.lower()]
        return [(i, 1.0) for i in hits[:n]]

    def chunks(self, ids: list[int]) -> dict[int, Any]:
        return {i: SimpleNamespace(doc_id=self.rows[i][0]) for i in ids}


def test_a_name_is_pinned_without_the_left_out_document_as_it_would_be_in_an_index_without_it() -> (
    None
):
    index = LexicalIndex(
        {"a": ["Orlek founded the mill.", "Orlek sold it."], "b": ["Orlek's mill burned down."]}
    )
    shown = [Passage(2, "b", "b", 0, 0, 10, "Orlek's mill burned down.", 0.5, 0.5)]
    question = "When did Orlek found the mill?"
    assert pinned_names(question, shown, index) == []  # document a mentions Orlek too
    assert pinned_names(question, shown, index, without="a") == ["Orlek"]


class CountingEmbedder:
    """The fake embedder, recording every text it is asked to embed."""

    def __init__(self, inner) -> None:
        self.inner, self.texts = inner, []
        self.dimension, self.name = inner.dimension, inner.name
        self.tokenizer, self.max_seq_length = inner.tokenizer, inner.max_seq_length

    def encode(self, texts, progress: bool = False) -> np.ndarray:
        self.texts.extend(texts)
        return self.inner.encode(texts, progress)


def invented(i: int) -> str:
    """A document of sentences in words no other document uses: each fact is its own."""
    rng = random.Random(i)

    def word() -> str:
        return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))

    return " ".join(
        f"The {word()} of {word()} keeps {rng.randint(2, 900)} {word()} beside the {word()} "
        f"{word()}."
        for _ in range(6)
    )


def test_a_lexical_calibration_embeds_only_its_probe_questions_and_a_full_one_weighs_more(
    tmp_path: Path, fake_embedder
) -> None:
    corpus = tmp_path / "farm"
    corpus.mkdir()
    for i in range(12):  # one changed is under a tenth: its probes alone are measured again
        (corpus / f"s{i}.txt").write_text(invented(i) + "\n")
    settings = Settings(index_root=tmp_path / "indexes", calibration_probes=40, check_names=False)
    index_corpus(corpus, "farm", settings, embedder=fake_embedder, show_progress=False)
    index = load_index(settings, "farm")
    documents = {f"s{i}.txt": invented(i) for i in range(12)}
    assert set(documents) == set(index.manifest["documents"])
    counting = CountingEmbedder(fake_embedder)
    lexical_settings = settings.model_copy(update={"calibration_signals": "lexical"})
    lexical = calibrate(index, counting, lexical_settings, documents)
    assert lexical.signals == "lexical" and lexical.model.features == SIGNAL_SETS["lexical"]
    asked = [q for _, q, _ in probe_questions(documents, 40, seed=len(documents))]
    assert counting.texts == asked  # the probe questions, and no sentence
    counting.texts.clear()
    full = calibrate(index, counting, settings, documents)  # the default
    assert full.signals == "full" and full.model.features == SIGNAL_SETS["full"]
    assert len(counting.texts) > 2 * len(asked)  # the retrieved sentences too
    assert all(len(p.answerable or p.unanswerable) == 4 for p in full.probes)
    # a small update measured with the other signal set cannot reuse its probes
    again = calibrate(
        index, counting, lexical_settings, documents, previous=full, changed={"s0.txt"}
    )
    assert again.reused_probes == 0 and again.signals == "lexical"
    kept = calibrate(
        index, counting, lexical_settings, documents, previous=lexical, changed={"s0.txt"}
    )
    assert kept.reused_probes > 0 and kept.signals == "lexical"
    index.close()


def test_a_model_with_unknown_signals_is_refused_when_read() -> None:
    data = model().as_dict() | {"features": ["dense", "mood"]}
    with pytest.raises(ValueError, match="features"):
        AnswerabilityModel.from_dict(data)


def test_the_gate_reads_only_the_fitted_record_and_an_older_file_says_to_recalibrate(
    tmp_path: Path,
) -> None:
    settings = Settings(index_root=tmp_path)
    save_calibration(settings, calibration(settings))
    path = calibration_path(settings, "tiny", "v-1")
    data = json.loads(path.read_text())
    data["probes"] = "not read at answer time"
    path.write_text(json.dumps(data))
    fitted = read_gate(settings, "tiny", "v-1")
    assert fitted.threshold == 0.5 and fitted.signals == "full"
    assert load_gate(settings, "tiny", "v-1").why == "calibrated on 1 probe"
    with pytest.raises(CalibrationError, match="unreadable"):  # the probes are read at index time
        read_calibration(settings, "tiny", "v-1")
    path.write_text(json.dumps({"format": 3, "threshold": 0.5, "model": {}}))
    gate = load_gate(settings, "tiny", "v-1")
    assert gate.kind == "fixed" and "format 3" in gate.why and "rag index" in gate.why


def test_rag_indexes_shows_the_threshold_in_force_not_the_calibrated_one(tmp_path: Path) -> None:
    settings = Settings(index_root=tmp_path, refusal_threshold=0.8)
    save_calibration(settings, calibration(settings))
    shown = describe_calibration(settings, "tiny", "v-1")
    assert shown["threshold"] == 0.8 and "calibrated: 0.5000" in shown["why"]
    assert shown["probes"] == 1


def test_a_sentence_left_out_probe_keeps_the_topic_and_cuts_only_the_fact() -> None:
    sentence = "Orlek sold the mill in 1911 to a brewer from Aarhus."
    kept = passage("a", f"Orlek founded the mill on the river. {sentence} It burned in 1930.")
    other = passage("b", "The river floods every spring.")
    cut = without_sentence([kept, other], sentence)
    assert cut is not None and [p.doc_id for p in cut] == ["a", "b"]
    assert "1911" not in cut[0].text and "founded the mill" in cut[0].text
    assert cut[0].similarity == kept.similarity  # the rest of the chunk made it match
    # cut at a chunk border: the fact would still be half there, so no probe
    assert without_sentence([passage("a", "Orlek sold the mill in 1911 to a")], sentence) is None


def test_a_swapped_probe_asks_about_another_documents_own_entity() -> None:
    documents = {
        "a": "The mill was built by Orlek. Later Orlek sold it to Varna Brewing in 1911.",
        "b": "The lighthouse keeper Wenlock lit the lamp. In 1901 Wenlock painted it red.",
        "c": "A quiet harbour. Boats of Varna Brewing moor here.",
    }
    names = entity_names(documents)
    assert names["a"][0] == "Orlek" and names["b"][0] == "Wenlock"
    assert "Varna" not in names["a"][:1]  # shared by two documents: not a's own
    assert swap_question("When did Orlek sell the mill?", ["Orlek"], "Wenlock") == (
        "When did Wenlock sell the mill?"
    )
    assert swap_question("When was the mill sold?", ["Orlek"], "Wenlock") == (
        "When Wenlock was the mill sold?"
    )
    swaps = swap_pairs([("a", "When Orlek sold mill?", "Later Orlek sold it ...")], documents)
    assert swaps == [("a", "When Wenlock sold mill?", "Later Wenlock sold it ...", "Wenlock")]


def test_a_swapped_fact_counts_as_stated_only_in_a_sentence_naming_the_other_entity() -> None:
    sentence = "Later Wenlock sold the mill to a brewer in 1911."  # Orlek's, swapped
    question = "When Wenlock sold mill?"
    about_orlek = passage("a", "Later Orlek sold the mill to a brewer in 1911.")
    about_wenlock = passage("b", "Wenlock too sold a mill to a brewer in 1911.")
    assert held_elsewhere(sentence, question, [about_orlek])
    assert not held_elsewhere(sentence, question, [about_orlek], about="Wenlock")
    assert held_elsewhere(sentence, question, [about_orlek, about_wenlock], about="Wenlock")


def named_corpus(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Twelve documents, each about its own invented person: swap probes can be made."""
    corpus = tmp_path / "people"
    corpus.mkdir()
    documents = {}
    for i in range(12):
        person = f"Per{'abcdefghijkl'[i]}son"
        text = invented(i).replace("The ", f"The {person} ", 3)
        documents[f"p{i}.txt"] = text
        (corpus / f"p{i}.txt").write_text(text + "\n")
    return corpus, documents


def test_near_miss_probes_are_made_kept_apart_by_kind_and_counted_by_the_check(
    tmp_path: Path, fake_embedder
) -> None:
    corpus, documents = named_corpus(tmp_path)
    settings = Settings(index_root=tmp_path / "indexes", calibration_probes=40, check_names=False)
    index_corpus(corpus, "people", settings, embedder=fake_embedder, show_progress=False)
    index = load_index(settings, "people")
    none = calibrate(index, fake_embedder, settings, documents, kinds=())
    assert {p.kind for p in none.probes} == {"document"}
    assert "no near-miss" not in none.gate.why
    both = calibrate(index, fake_embedder, settings, documents, kinds=("sentence", "swap"))
    made = both.gate.figures["unanswerable_probes"]
    assert made["sentence"] > 0 and made["swap"] > 0
    assert all(p.answerable is None for p in both.probes if p.kind != "document")
    assert set(both.checked["unanswerable_refused_by_kind"]) == {"document", "sentence", "swap"}
    assert "near-miss" in both.gate.why
    # the document probes are measured the same way whatever near misses are made
    assert [p for p in both.probes if p.kind == "document"] == none.probes
    save_calibration(settings, both)
    again = read_calibration(settings, "people", index.version)
    assert [p.kind for p in again.probes] == [p.kind for p in both.probes]
    index.close()


def test_a_calibration_that_finds_no_near_miss_probe_says_so(tmp_path: Path, fake_embedder) -> None:
    corpus = tmp_path / "farm"
    corpus.mkdir()
    documents = {f"s{i}.txt": invented(i) for i in range(12)}  # no names: nothing to swap
    for name, text in documents.items():
        (corpus / name).write_text(text + "\n")
    settings = Settings(index_root=tmp_path / "indexes", calibration_probes=40, check_names=False)
    index_corpus(corpus, "farm", settings, embedder=fake_embedder, show_progress=False)
    index = load_index(settings, "farm")
    swapped_only = calibrate(index, fake_embedder, settings, documents, kinds=("swap",))
    assert "no near-miss probe found" in swapped_only.gate.why
    assert swapped_only.gate.figures["unanswerable_probes"]["swap"] == 0
    index.close()
