"""Write an evaluation dataset in the shared format, checking its questions against the text.

Used by the exporters of corpora built from files on the machine (``licenses/``, ``manuals/``):
the documents are read at export time, the questions come from a committed ``questions.jsonl``,
and a gold answer that the exported text does not hold is an error, not a silent bad question.

``questions.jsonl`` holds test records (``id``, ``question``, ``answers``, ``doc_id``, ``kind``)
and, for unanswerable near misses, two optional check-only fields: ``near_doc`` (the document
the question is closest to) and ``absent`` (strings that must not occur in that document, or in
any document when ``near_doc`` is null). They are dropped from the exported ``test.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("corpora.export")
TEST_FIELDS = ("id", "question", "answers", "doc_id", "kind")
CHECK_FIELDS = ("near_doc", "absent")


class ExportError(Exception):
    """The dataset cannot be written as asked; the message says what to fix."""


@dataclass(frozen=True)
class SourceDocument:
    id: str
    title: str
    text: str


def normalise(text: str) -> str:
    """Lower case, runs of whitespace as one space: how gold answers are looked up."""
    return " ".join(text.lower().split())


def read_questions(path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExportError(f"{path} line {number}: not JSON ({exc})") from None
        missing = [f for f in TEST_FIELDS if f not in record]
        unknown = sorted(set(record) - set(TEST_FIELDS) - set(CHECK_FIELDS))
        if missing or unknown:
            raise ExportError(f"{path} line {number}: missing {missing}, unknown {unknown}")
        records.append(record)
    return records


def check_questions(
    questions: list[dict], documents: list[SourceDocument], expected_ids: Iterable[str]
) -> tuple[list[dict], list[str]]:
    """Return the questions to export and the problems found.

    A question about a document that is expected but absent from this machine is dropped with a
    warning; a doc_id that is not expected at all, or a gold answer the document does not hold, is
    a problem.
    """
    texts = {d.id: normalise(d.text) for d in documents}
    expected = set(expected_ids)
    kept, problems, seen = [], [], set()
    dropped: dict[str, int] = {}  # questions about documents missing here, per document
    for q in questions:
        qid, answers, doc_id, kind = q["id"], q["answers"], q["doc_id"], q["kind"]
        if qid in seen:
            problems.append(f"{qid}: duplicate id")
        seen.add(qid)
        if not isinstance(answers, list) or not all(isinstance(a, str) and a for a in answers):
            problems.append(f"{qid}: answers must be a list of non-empty strings")
            continue
        if kind == "unanswerable":
            if answers or doc_id is not None:
                problems.append(f"{qid}: an unanswerable question needs answers [] and doc_id null")
                continue
            near = q.get("near_doc")
            if near is not None and near not in expected:
                problems.append(f"{qid}: near_doc {near!r} is not a document of this corpus")
                continue
            pool = [texts[near]] if near in texts else [] if near else list(texts.values())
            found = [s for s in q.get("absent", []) if any(normalise(s) in t for t in pool)]
            if found:
                where = near or "the corpus"
                problems.append(f"{qid}: {found} occurs in {where}, so it may be answerable")
                continue
        else:
            if not answers or doc_id is None:
                problems.append(f"{qid}: an answerable question needs answers and a doc_id")
                continue
            if doc_id not in expected:
                problems.append(f"{qid}: doc_id {doc_id!r} is not a document of this corpus")
                continue
            if doc_id not in texts:
                dropped[doc_id] = dropped.get(doc_id, 0) + 1
                continue
            absent = [a for a in answers if normalise(a) not in texts[doc_id]]
            if absent:
                problems.append(f"{qid}: {absent} not found in {doc_id}")
                continue
        kept.append({f: q[f] for f in TEST_FIELDS})
    for doc_id, count in dropped.items():
        log.warning("%d question(s) about %s dropped: it is not on this machine", count, doc_id)
    return kept, problems


def _write_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Write next to `path`, then rename: a failed export never leaves half a file."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(partial, path)


def write_dataset(out: Path, documents: list[SourceDocument], questions: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(
        out / "corpus.jsonl", ({"id": d.id, "title": d.title, "text": d.text} for d in documents)
    )
    _write_jsonl(out / "test.jsonl", questions)


def export(
    argv: list[str] | None,
    description: str,
    default_out: Path,
    questions_path: Path,
    expected_ids: Iterable[str],
    read_documents: Callable[[], list[SourceDocument]],
) -> int:
    """The command line shared by the exporters: ``export.py [OUT]``; returns the exit code."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "out",
        nargs="?",
        type=Path,
        default=default_out,
        help=f"output folder (default: {default_out})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.INFO)
    try:
        documents = read_documents()
        if not documents:
            raise ExportError("none of the source documents is on this machine: nothing to export")
        questions, problems = check_questions(
            read_questions(questions_path), documents, expected_ids
        )
        if problems:
            raise ExportError(
                f"{len(problems)} question(s) in {questions_path} fail the check:\n  "
                + "\n  ".join(problems)
            )
        write_dataset(args.out, documents, questions)
    except (ExportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    unanswerable = sum(q["kind"] == "unanswerable" for q in questions)
    print(
        f"wrote {len(documents)} documents and {len(questions)} questions "
        f"({len(questions) - unanswerable} answerable, {unanswerable} unanswerable) to {args.out}"
    )
    return 0
