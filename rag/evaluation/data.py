"""Datasets in the shared format: corpus.jsonl, optional train.jsonl, test.jsonl."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rag.errors import InputError


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    doc_id: str | None
    kind: str | None = None


@dataclass(frozen=True)
class Dataset:
    root: Path
    corpus: Path
    test: list[Question]
    train: list[Question]

    @property
    def name(self) -> str:
        return self.root.resolve().name


def load_dataset(root: Path, limit: int | None = None) -> Dataset:
    """Read a dataset folder; `limit` keeps the first n test questions."""
    root = Path(root)
    corpus, test = root / "corpus.jsonl", root / "test.jsonl"
    for required in (corpus, test):
        if not required.is_file():
            raise InputError(
                f"{required} not found: a dataset folder holds corpus.jsonl and test.jsonl "
                "(see ../shared/data/README.md for the format)"
            )
    questions = _questions(test)
    train = _questions(root / "train.jsonl") if (root / "train.jsonl").is_file() else []
    return Dataset(root, corpus, questions[:limit] if limit else questions, train)


def _questions(path: Path) -> list[Question]:
    out = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            out.append(
                Question(
                    str(r["id"]), r["question"], list(r["answers"]), r.get("doc_id"), r.get("kind")
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path} line {number}: not a question record ({exc})") from None
    return out
