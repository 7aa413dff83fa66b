"""Dataset loading for `rag eval`: generated cloze questions, the tune/report split, bad data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.documents import Document
from rag.errors import InputError
from rag.evaluation.data import Question, cloze_questions, in_split, load_dataset, split_of
from rag.evaluation.data import answer_metric as load_metric

DOCS = [
    Document("p1", "Orla Vantrig", "Orla Vantrig is 41 years old. She lives in Quessel today."),
    Document("p2", "Notes", "Short. This sentence has nothing to ask about at all."),
]


def write(root: Path, name: str, rows: list[dict]) -> None:
    root.mkdir(exist_ok=True)
    (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cloze_questions_blank_a_number_or_a_name_and_keep_the_document():
    questions = cloze_questions(DOCS)
    assert [(q.question, q.answers, q.doc_id, q.kind) for q in questions] == [
        (
            "Fill in the blank (Orla Vantrig): Orla Vantrig is ____ years old.",
            ["41"],
            "p1",
            "cloze-number",
        ),
        (
            "Fill in the blank (Orla Vantrig): She lives in ____ today.",
            ["Quessel"],
            "p1",
            "cloze-name",
        ),
    ]
    assert len({q.id for q in questions}) == 2


def test_cloze_questions_are_capped_per_document():
    doc = Document("d", "T", " ".join(f"Item number {i} is on the list." for i in range(30)))
    assert len(cloze_questions([doc], max_per_document=5)) == 5


def test_a_corpus_only_folder_gets_generated_questions(tmp_path: Path):
    write(
        tmp_path / "d",
        "corpus.jsonl",
        [{"id": d.id, "title": d.title, "text": d.text} for d in DOCS],
    )
    dataset = load_dataset(tmp_path / "d")
    assert dataset.generated and len(dataset.test) == 2 and dataset.train == []


def test_a_folder_of_markdown_documents_loads_with_the_corpus_loader(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "bell.md").write_text(
        "# Bell\n\nThe harbour bell was cast in 1871 by a smith.\n"
    )
    dataset = load_dataset(tmp_path / "docs")
    assert dataset.generated
    assert [q.answers for q in dataset.test] == [["1871"]]
    assert dataset.test[0].doc_id == dataset.documents[0].id


def test_no_questions_and_no_usable_sentence_is_an_error(tmp_path: Path):
    write(
        tmp_path / "d", "corpus.jsonl", [{"id": "x", "title": "X", "text": "nothing here to ask."}]
    )
    with pytest.raises(InputError, match=r"no test\.jsonl"):
        load_dataset(tmp_path / "d")


def test_train_questions_about_documents_not_in_the_corpus_are_an_error(tmp_path: Path):
    write(
        tmp_path / "d", "corpus.jsonl", [{"id": "p1", "title": "T", "text": "Born in 1900 here."}]
    )
    question = {"id": "q", "question": "When?", "answers": ["1900"], "doc_id": "p1"}
    write(tmp_path / "d", "test.jsonl", [question])
    write(tmp_path / "d", "train.jsonl", [question | {"doc_id": "nobody"}])
    with pytest.raises(InputError, match=r"train\.jsonl: 1 doc_id"):
        load_dataset(tmp_path / "d")


def test_the_split_halves_documents_stably_and_keeps_a_documents_questions_together():
    questions = [
        Question(f"q{i}-{j}", "?", ["a"], f"doc-{i}") for i in range(200) for j in range(3)
    ]
    tune, report = in_split(questions, "tune"), in_split(questions, "report")
    assert len(tune) + len(report) == len(questions)
    assert 0.35 < len(tune) / len(questions) < 0.65
    assert not {q.doc_id for q in tune} & {q.doc_id for q in report}
    assert in_split(questions, "all") == questions
    assert split_of(Question("x", "?", ["a"], "doc-7")) == split_of(
        Question("y", "!", ["b"], "doc-7")
    )
    assert split_of(Question("x", "?", ["a"], "doc-0")) == "report", "sha256('doc-0') is fixed"


def test_a_heading_never_runs_into_the_sentence_after_it():
    doc = Document(
        "d", "Register", "# Lumen Harbor\n\nThe generator Marrow-7 was installed in 2019.\n"
    )
    [question] = cloze_questions([doc])
    assert question.question == (
        "Fill in the blank (Register): The generator Marrow-7 was installed in ____."
    )
    assert question.answers == ["2019"], "the 7 of a name such as Marrow-7 is not the number"


def test_the_second_word_of_a_name_is_not_taken_for_a_name():
    doc = Document("p", "Orla Vantrig", "Orla Vantrig lives in Quessel near the sea.")
    [question] = cloze_questions([doc])
    assert question.answers == ["Quessel"]


def people_folder(root: Path, test_rows: list[dict], conversations: list[dict] | None = None):
    write(root, "corpus.jsonl", [{"id": d.id, "title": d.title, "text": d.text} for d in DOCS])
    write(root, "test.jsonl", test_rows)
    if conversations is not None:
        write(root, "conversations.jsonl", conversations)
    return root


def test_empty_answers_or_the_unanswerable_kind_mark_a_question_unanswerable(tmp_path: Path):
    rows = [
        {"id": "a", "question": "How old is Orla?", "answers": ["41"], "doc_id": "p1"},
        {"id": "b", "question": "Orla's shoe size?", "answers": [], "doc_id": None},
        {"id": "c", "question": "Her car?", "answers": [], "kind": "unanswerable"},
        {"id": "d", "question": "Her job?", "answers": [], "kind": "whatever-new-kind"},
    ]
    dataset = load_dataset(people_folder(tmp_path / "d", rows))
    assert [q.unanswerable for q in dataset.test] == [False, True, True, True]
    assert dataset.metric == "containment"


def test_a_question_marked_unanswerable_with_answers_is_refused_by_line(tmp_path: Path):
    rows = [
        {"id": "a", "question": "How old?", "answers": ["41"], "doc_id": "p1"},
        {"id": "b", "question": "Shoe size?", "answers": ["9"], "kind": "unanswerable"},
    ]
    with pytest.raises(InputError, match=r"line 2: kind is 'unanswerable' but it lists answers"):
        load_dataset(people_folder(tmp_path / "d", rows))


def test_written_answers_are_scored_by_token_f1():
    sentence = "Orla Vantrig is forty one years old and lives in the town of Quessel today."
    long = [Question("a", "q", [sentence], "p1"), Question("b", "q", [], None)]
    short = [Question(i, "q", ["41"], "p1") for i in "ab"] + [Question("c", "q", [sentence], "p1")]
    assert load_metric(long) == "f1" and load_metric(short) == "containment"
    assert load_metric([Question("b", "q", [], None)]) == "containment"


def test_conversations_load_with_their_history_paired(tmp_path: Path):
    conversation = {
        "id": "c1",
        "messages": [
            {"role": "user", "content": "Who is Orla Vantrig?"},
            {"role": "assistant", "content": "A person."},
            {"role": "user", "content": "How old is she?"},
        ],
        "answerable": True,
        "target": "She is 41.",
        "doc_ids": ["p1"],
    }
    rows = [{"id": "a", "question": "How old is Orla?", "answers": ["41"], "doc_id": "p1"}]
    dataset = load_dataset(people_folder(tmp_path / "d", rows, [conversation]))
    (c,) = dataset.conversations
    assert c.history == [("Who is Orla Vantrig?", "A person.")]
    assert c.question == "How old is she?" and not c.unanswerable
    assert in_split(dataset.conversations, split_of(c)) == [c]


@pytest.mark.parametrize(
    ("messages", "extra", "message"),
    [
        (
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
            {},
            "the last message must be the user's question",
        ),
        (
            [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
            {},
            "unknown role 'system'",
        ),
        ([{"role": "user", "content": "Hi"}], {"target": ""}, "needs a 'target' reply"),
        ([{"content": "Hi"}], {}, "not a conversation record"),
    ],
)
def test_a_bad_conversation_is_refused_by_line(tmp_path: Path, messages, extra, message):
    record = {"id": "c1", "messages": messages, "answerable": True, "target": "x"} | extra
    rows = [{"id": "a", "question": "How old is Orla?", "answers": ["41"], "doc_id": "p1"}]
    with pytest.raises(InputError, match=rf"conversations.jsonl line 1: .*{message}"):
        load_dataset(people_folder(tmp_path / "d", rows, [record]))
