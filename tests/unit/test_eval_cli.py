"""`rag eval` refuses bad input with exit 2 and a message, before loading models or writing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.cli import app


def corpus(root: Path, text: str = "Orla Vantrig is 41 years old.") -> Path:
    root.mkdir()
    (root / "corpus.jsonl").write_text(
        json.dumps({"id": "p1", "title": "Orla", "text": text}) + "\n"
    )
    return root


def run(*args: str):
    return CliRunner().invoke(app, ["eval", *args])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-steps", "0", "step budget"),
        ("--max-steps", "-5", "step budget"),
        ("--max-minutes", "0", "time budget"),
        ("--max-minutes", "-1", "time budget"),
        ("--target", "0", "target"),
        ("--target", "1.01", "target"),
        ("--recipe", "dpo", "unknown recipe"),
        ("--rag-recipe", "magic", "unknown recipe"),
        ("--split", "half", "--split"),
        ("--systems", "closed,oracle", "--systems"),
    ],
)
def test_bad_settings_exit_2_and_write_nothing(tmp_path: Path, option, value, message):
    out = tmp_path / "out"
    result = run("--data", str(corpus(tmp_path / "d")), "--out", str(out), option, value)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_a_non_numeric_budget_exits_2(tmp_path: Path):
    out = tmp_path / "out"
    result = run("--data", str(corpus(tmp_path / "d")), "--out", str(out), "--max-steps", "lots")
    assert result.exit_code == 2
    assert "Invalid value" in result.output and not out.exists()


def test_a_corpus_without_questions_or_usable_sentences_exits_2(tmp_path: Path):
    out = tmp_path / "out"
    result = run("--data", str(corpus(tmp_path / "d", "no facts here.")), "--out", str(out))
    assert result.exit_code == 2
    assert "nothing to evaluate" in result.output and not out.exists()


def test_train_questions_about_unknown_documents_exit_2(tmp_path: Path):
    data = corpus(tmp_path / "d")
    q = {"id": "q", "question": "How old is Orla?", "answers": ["41"], "doc_id": "p1"}
    (data / "test.jsonl").write_text(json.dumps(q) + "\n")
    (data / "train.jsonl").write_text(json.dumps(q | {"doc_id": "p9"}) + "\n")
    out = tmp_path / "out"
    result = run("--data", str(data), "--out", str(out))
    assert result.exit_code == 2
    assert "not in the corpus" in result.output and not out.exists()
