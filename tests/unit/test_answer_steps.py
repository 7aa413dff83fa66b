"""Answer steps chosen per index and generator: the questions, the choice, keeping it."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from rag.answer_steps import (
    CANDIDATES,
    choose,
    make_question,
    resolve_steps,
    steps_path,
    steps_questions,
    stored_choices,
)
from rag.chunking import Chunk
from rag.config import Settings

REPORT = [
    "Energex Corporation: annual report 2021",
    "In February the company achieved exploration success in the north basin. "
    "This success led to a boost in operating income, reaching an impressive $1.2 billion.",
]


class FakeIndex:
    name, version = "reports", "v-1"

    def __init__(self, texts: dict[str, str]) -> None:
        self.rows = {
            i: Chunk(doc, 0, 0, len(t), f"Report of {doc}", t)
            for i, (doc, t) in enumerate(texts.items())
        }
        self.size = len(self.rows)

    def chunks(self, ids: list[int]) -> dict[int, Chunk]:
        return {i: self.rows[i] for i in ids if i in self.rows}


class FakeGenerator:
    backend = "fake"

    def __init__(self, name: str = "tiny-model") -> None:
        self.name = name


def test_a_question_leaves_out_the_number_and_names_the_document():
    q = make_question(REPORT[1].split(". ")[1], REPORT[0], random.Random(0))
    assert q is not None and q.answer == "1.2 billion"[:3]
    assert "1.2" not in q.question and q.question.endswith(f"({REPORT[0]})?")
    assert make_question("It was 4.", "T", random.Random(0)) is None


def test_questions_spread_over_the_documents_first():
    index = FakeIndex(
        {f"d{i}": f"Plant {i} employs 40{i} people in the town of Arlow." for i in range(5)}
    )
    questions = steps_questions(index, 3)  # type: ignore[arg-type]
    assert len(questions) == 3 and len({q.doc_id for q in questions}) == 3
    few = steps_questions(FakeIndex({"d0": REPORT[1]}), 4)  # type: ignore[arg-type]
    assert sorted(q.answer for q in few) == ["1.2", "February"], "one document: both sentences"


def answers_when(right: set[str]):
    def answer(question, candidates):
        return [
            (("it was 1.2 billion" if steps.name in right else "about 3 billion"), False)
            for steps in candidates
        ]

    return answer


def test_the_candidate_that_answers_wins_and_ties_go_to_the_first():
    index = FakeIndex(
        {f"d{i}": f"Plant {i} employs 40{i} people in the town of Arlow." for i in range(3)}
    )
    questions = [q.__class__(q.question, "1.2", q.doc_id) for q in steps_questions(index, 3)]  # type: ignore[arg-type]
    cands = list(CANDIDATES.values())
    won, figures, asked = choose(questions, answers_when({"plain"}), cands, 60)
    assert won == "plain" and asked == 3 and figures["plain"]["answered_right"] == 1.0
    assert figures["sentence"]["answered_right"] == 0.0
    won, _, _ = choose(questions, answers_when({"passages", "sentences"}), cands, 60)
    assert won == "sentences"
    won, _, asked = choose(questions, answers_when(set()), cands, 0.0)
    assert asked == 1 and won == "sentence", "past the budget after the first round"


def test_the_choice_is_kept_read_back_and_made_again_when_unreadable(tmp_path: Path, caplog):
    settings = Settings(index_root=tmp_path, answer_steps="auto")
    index, generator = (
        FakeIndex({"d0": REPORT[1], "d1": REPORT[1].replace("1.2", "7")}),
        FakeGenerator(),
    )
    asked: list[str] = []

    def answer(question, candidates):
        asked.extend(steps.name for steps in candidates)
        return [(("1.2 billion" if s.name == "passages" else "no"), False) for s in candidates]

    steps, why = resolve_steps(settings, index, generator, answer)  # type: ignore[arg-type]
    assert steps.name == "passages" and "just now" in why
    path = steps_path(settings, "reports", generator)  # type: ignore[arg-type]
    assert json.loads(path.read_text())["chosen"] == "passages"
    count = len(asked)

    def never(question, candidates):
        raise AssertionError("a kept choice is not made again")

    steps, why = resolve_steps(settings, index, generator, never)  # type: ignore[arg-type]
    assert steps.name == "passages" and "v-1" in why and len(asked) == count
    (listed,) = stored_choices(settings, "reports")
    assert listed["chosen"] == "passages" and listed["generator"] == "fake:tiny-model"

    path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        steps, why = resolve_steps(settings, index, generator, answer)  # type: ignore[arg-type]
    assert "unreadable" in caplog.text and "choosing again" in caplog.text
    assert json.loads(path.read_text())["chosen"] == "passages", "rewritten whole"
    assert not list(path.parent.glob("*.tmp-*"))


def test_another_generator_gets_its_own_choice(tmp_path: Path):
    settings = Settings(index_root=tmp_path, answer_steps="auto")
    index = FakeIndex({"d0": REPORT[1]})
    resolve_steps(settings, index, FakeGenerator("a"), answers_when({"plain"}))  # type: ignore[arg-type]
    steps, _ = resolve_steps(settings, index, FakeGenerator("b"), answers_when({"sentences"}))  # type: ignore[arg-type]
    assert steps.name == "sentences"
    assert {c["chosen"] for c in stored_choices(settings, "reports")} == {"plain", "sentences"}
    # a file copied over from another generator is not trusted
    a = steps_path(settings, "reports", FakeGenerator("a"))  # type: ignore[arg-type]
    b = steps_path(settings, "reports", FakeGenerator("b"))  # type: ignore[arg-type]
    b.write_text(a.read_text())
    steps, why = resolve_steps(settings, index, FakeGenerator("b"), answers_when({"sentences"}))  # type: ignore[arg-type]
    assert steps.name == "sentences" and "just now" in why


@pytest.mark.parametrize("name", ["sentence", "sentences", "passages", "plain"])
def test_settings_name_the_steps_and_nothing_is_asked(tmp_path: Path, name: str):
    settings = Settings(index_root=tmp_path, answer_steps=name)
    steps, why = resolve_steps(settings, FakeIndex({}), FakeGenerator(), None)  # type: ignore[arg-type]
    assert steps == CANDIDATES[name] and why == f"RAG_ANSWER_STEPS={name}"


def test_settings_mode_takes_the_focus_and_support_values(tmp_path: Path):
    settings = Settings(
        index_root=tmp_path,
        answer_steps="settings",
        focus_sentences=3,
        min_support=0.4,
        answer_prompt="plain",
    )
    steps, _ = resolve_steps(settings, FakeIndex({}), FakeGenerator(), None)  # type: ignore[arg-type]
    assert (steps.focus_sentences, steps.prompt, steps.min_support) == (3, "plain", 0.4)


def test_an_index_with_nothing_to_ask_answers_with_whole_passages(tmp_path: Path):
    settings = Settings(index_root=tmp_path, answer_steps="auto")
    index = FakeIndex({"d0": "no numbers here, nor any names at all in this text."})
    steps, why = resolve_steps(settings, index, FakeGenerator(), None)  # type: ignore[arg-type]
    assert steps.name == "passages" and why.startswith("fallback")
