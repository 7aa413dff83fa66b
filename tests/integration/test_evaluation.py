"""All five systems and every recipe end to end, with the real models on a tiny dataset."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rag.evaluation.data import load_dataset
from rag.evaluation.finetune import fine_tune, sample_fit_probe
from rag.evaluation.recipes import build_training
from rag.evaluation.report import write_report
from rag.evaluation.run import run_evaluation
from rag.evaluation.systems import SYSTEMS

from ..evaluation_data import tiny_tuning, write_dataset

pytestmark = pytest.mark.slow


def test_all_systems_end_to_end(settings, embedder, generator, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "people")
    out = tmp_path / "report"
    run = run_evaluation(
        data,
        out,
        settings,
        embedder,
        generator,
        limit=6,
        seed=1,
        holdout=0.25,
        min_unanswerable=1,  # one removed document: the default would remove half of four
        tuning=tiny_tuning(),
        show_progress=False,
    )
    paths = write_report(out, run)
    assert [p.name for p in paths] == [
        "report.md",
        "results.json",
        "predictions.jsonl",
        "chart.png",
        "refusal.png",
        "curves.png",
    ]
    results = json.loads((out / "results.json").read_text())
    assert list(results["systems"]) == list(SYSTEMS)
    setup = results["setup"]
    assert setup["questions"] == 6 and len(setup["held_out_documents"]) == 1
    assert setup["split"] == "all" and setup["fine_tuning"]["ft+rag"] == "raft"
    assert setup["answering"]["focus_sentences"] == 1, "what shapes an answer is recorded"
    predictions = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    per_system = setup["questions"] + setup["held_out_questions"]
    assert len(predictions) == len(SYSTEMS) * per_system
    for name, summary in results["systems"].items():
        mine = [p for p in predictions if p["system"] == name and p["slice"] == "main"]
        mean = sum(p["containment"] for p in mine) / len(mine)
        assert summary["containment"]["mean"] == pytest.approx(mean), name
        assert summary["containment"]["low"] <= mean <= summary["containment"]["high"]
    assert results["systems"]["rag"]["recall@4"] == 1.0, "four one-paragraph documents"
    assert results["systems"]["naive"]["recall@4"] == 1.0, "naive retrieves top 3 chunks"
    assert results["prepare"]["naive"]["chunks"] == 3, "one 1000-character chunk per person"
    for name, recipe in (("ft", "sft"), ("ft+rag", "raft")):
        ft = results["prepare"][name]
        assert ft["config"]["recipe"] == recipe
        assert [p["step"] for p in ft["curve"]] == list(range(ft["steps"] + 1))
        assert ft["converged"] == (ft["fit"] >= 0.95)
        assert set(ft["curve"][0]["test"]) >= {"memorization", "rephrased", "all"}
    assert results["prepare"]["ft+rag"]["test_probe"] == "rag prompt"
    assert results["prepare"]["index"]["chunks"] == 3
    assert set(results["new_knowledge"]) == {"rag", "ft"}
    assert results["paired"]["verdict"] in (out / "report.md").read_text()
    assert results["verdict_by_kind"]["_statement"] in (out / "report.md").read_text()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "refusal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("recipe", ["sft-para", "cpt"])
def test_the_other_recipes_train_a_few_steps(generator, tmp_path: Path, recipe: str) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "people"))
    training = build_training(recipe, dataset.train, dataset.documents)
    config = replace(tiny_tuning().config, recipe=recipe)
    fit = sample_fit_probe(training.fit_pairs, config.fit_sample, config.seed)
    _, result = fine_tune(
        generator, training.examples, config, tmp_path / "cache", fit=fit, show_progress=False
    )
    assert result.steps == 2 and result.final_loss is not None and result.final_loss > 0
    assert [p.step for p in result.curve] == [0, 1, 2]
    assert result.converged == (result.fit >= 0.95)


def test_a_corpus_only_folder_is_evaluated_on_generated_questions(
    settings, embedder, generator, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "people")
    (data / "test.jsonl").unlink()
    (data / "train.jsonl").unlink()
    out = tmp_path / "report"
    run = run_evaluation(
        data,
        out,
        settings,
        embedder,
        generator,
        systems=("closed", "rag"),
        seed=1,
        holdout=0.25,
        split="report",
        show_progress=False,
    )
    write_report(out, run)
    setup = run["results"]["setup"]
    assert setup["generated_questions"]["count"] == 8, "two sentences with a number or name each"
    assert setup["split"] == "report"
    text = (out / "report.md").read_text()
    assert "8 questions were generated from its documents" in text
    assert "Orla Vantrig is ____ years old." in text or "____" in text
