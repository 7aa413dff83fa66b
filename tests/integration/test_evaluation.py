"""All four systems end to end with the real model on a tiny dataset written by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.evaluation.finetune import FineTuneConfig
from rag.evaluation.report import write_report
from rag.evaluation.run import run_evaluation
from rag.evaluation.systems import SYSTEMS

pytestmark = pytest.mark.slow

PEOPLE = {
    "p1": ("Orla Vantrig", "Orla Vantrig is 41 years old. Orla Vantrig lives in Quessel."),
    "p2": ("Bram Ettow", "Bram Ettow is 29 years old. Bram Ettow lives in Harnock."),
    "p3": ("Ilse Moravec", "Ilse Moravec is 63 years old. Ilse Moravec lives in Tiberly."),
    "p4": ("Denn Ockray", "Denn Ockray is 35 years old. Denn Ockray lives in Falmire."),
}


def write_dataset(root: Path) -> Path:
    root.mkdir()
    lines = [{"id": i, "title": t, "text": x} for i, (t, x) in PEOPLE.items()]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    test, train = [], []
    for doc_id, (name, text) in PEOPLE.items():
        age, town = text.split(" is ")[1].split()[0], text.rsplit(" ", 1)[1].rstrip(".")
        test.append(
            {
                "id": f"age-{doc_id}",
                "question": f"How old is {name}?",
                "answers": [age],
                "doc_id": doc_id,
                "kind": "memorization",
            }
        )
        test.append(
            {
                "id": f"town-{doc_id}",
                "question": f"Where does {name} live?",
                "answers": [town],
                "doc_id": doc_id,
                "kind": "rephrased",
            }
        )
        train.append(
            {
                "id": f"tr-{doc_id}",
                "question": f"How old is {name}?",
                "answers": [age],
                "doc_id": doc_id,
            }
        )
    (root / "test.jsonl").write_text("\n".join(json.dumps(r) for r in test) + "\n")
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in train) + "\n")
    return root


def test_four_systems_end_to_end(settings, embedder, generator, tmp_path: Path) -> None:
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
        ft=FineTuneConfig(max_steps=2, seed=1),
        show_progress=False,
    )
    paths = write_report(out, run)
    assert [p.name for p in paths] == [
        "report.md",
        "results.json",
        "predictions.jsonl",
        "chart.png",
    ]
    results = json.loads((out / "results.json").read_text())
    assert list(results["systems"]) == list(SYSTEMS)
    setup = results["setup"]
    assert setup["questions"] == 6 and len(setup["held_out_documents"]) == 1
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
    assert results["prepare"]["finetune"]["steps"] == 2
    assert results["prepare"]["index"]["chunks"] == 3
    assert set(results["new_knowledge"]) == {"rag", "ft"}
    assert results["paired"]["verdict"] in (out / "report.md").read_text()
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
