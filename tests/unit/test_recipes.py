"""Each fine-tuning recipe's example builder, and the template paraphrases."""

from __future__ import annotations

import pytest

from rag.documents import Document
from rag.errors import InputError
from rag.evaluation.data import Question
from rag.evaluation.recipes import build_training, closed_book, paraphrases

TRAIN = [
    Question("q1", "How old is Orla Vantrig?", ["41"], "p1"),
    Question("q2", "Where does Bram Ettow live?", ["Harnock"], "p2"),
]
DOCS = [
    Document("p1", "Orla Vantrig", "Orla Vantrig is 41 years old."),
    Document("p2", "Bram Ettow", "Bram Ettow lives in Harnock."),
]


def test_sft_trains_on_the_closed_book_prompt_to_the_first_answer():
    training = build_training("sft", TRAIN, DOCS)
    assert training.examples == [
        (closed_book("How old is Orla Vantrig?"), "41"),
        (closed_book("Where does Bram Ettow live?"), "Harnock"),
    ]
    assert training.fit_pairs == [(closed_book(q.question), q.answers) for q in TRAIN]


def test_paraphrases_rewrite_the_question_and_never_repeat_it():
    out = paraphrases("How old is Orla Vantrig?")
    assert out[0] == "What is the age of Orla Vantrig?"
    assert len(out) == 3 and len(set(out)) == 3
    assert "How old is Orla Vantrig?" not in out
    assert paraphrases("What is Orla Vantrig's occupation?")[0] == (
        "What is the occupation of Orla Vantrig?"
    )


def test_sft_para_adds_paraphrases_but_checks_the_fit_on_the_original_questions():
    training = build_training("sft-para", TRAIN, DOCS)
    asked = [chat[0]["content"] for chat, _ in training.examples]
    assert len(training.examples) == 8, "each of 2 questions + 3 paraphrases"
    assert closed_book("What is the age of Orla Vantrig?")[0]["content"] in asked
    assert {target for _, target in training.examples} == {"41", "Harnock"}
    assert training.fit_pairs == [(closed_book(q.question), q.answers) for q in TRAIN]
    assert "templates" in training.note


def test_cpt_trains_on_the_documents_text_without_a_chat():
    training = build_training("cpt", TRAIN, DOCS)
    assert training.examples == [
        (None, "Orla Vantrig\nOrla Vantrig is 41 years old."),
        (None, "Bram Ettow\nBram Ettow lives in Harnock."),
    ]
    assert len(training.fit_pairs) == 2, "the fit is still checked on the training questions"


def test_raft_trains_on_the_chains_prompt_and_skips_refused_questions():
    def prompt_for(question):
        if "Bram" in question:
            return None  # the retrieval gate refused
        return [
            {"role": "system", "content": "Answer from the passages."},
            {"role": "user", "content": f"[1] Orla Vantrig is 41.\n[2] distractor\n{question}"},
        ]

    training = build_training("raft", TRAIN, DOCS, prompt_for)
    assert training.examples == [(prompt_for(TRAIN[0].question), "41")]
    assert training.fit_pairs == [(prompt_for(TRAIN[0].question), ["41"])]
    assert "1 refused" in training.note


def test_raft_without_an_index_and_an_unknown_recipe_are_refused():
    with pytest.raises(InputError, match="raft"):
        build_training("raft", TRAIN, DOCS)
    with pytest.raises(InputError, match="unknown recipe"):
        build_training("dpo", TRAIN, DOCS)


def test_a_recipe_that_makes_nothing_is_an_error():
    with pytest.raises(InputError, match="no training examples"):
        build_training("sft", [], DOCS)
