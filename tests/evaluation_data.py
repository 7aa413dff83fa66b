"""A tiny people dataset written into tmp_path, shared by the evaluation's tests."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from rag.evaluation.finetune import FineTuneConfig
from rag.evaluation.run import FineTuning

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


def tiny_tuning(**overrides) -> FineTuning:
    """A few steps, checked every step, so every code path runs in seconds."""
    config = FineTuneConfig(max_steps=2, check_every=1, fit_sample=4, seed=1)
    return FineTuning(replace(config, **overrides), test_probe_size=4)
