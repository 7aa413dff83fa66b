"""Sentence selection picks the sentence that answers, keeps source numbers and neighbours."""

from __future__ import annotations

from rag.focus import GAP, focus_passages, split_sentences
from rag.retrieval import Passage
from tests.conftest import FakeEmbedder


def passage(text: str, title: str = "T") -> Passage:
    return Passage(1, "d", title, 0, 0, len(text), text, 0.5, 0.5)


PEOPLE = [
    passage("Suxa Nelo weighs 120 pounds. Suxa Nelo lives in Pakim. Suxa Nelo is a baker."),
    passage("Sufa Wade weighs 222 pounds. Sufa Wade lives in Lomowog. Sufa Wade is a pilot."),
]


def test_split_sentences_on_ends_and_blank_lines() -> None:
    text = "The first one is here. Is this the second one?\n\nA block\nwith a wrapped line\n\nLast!"
    assert split_sentences(text) == [
        "The first one is here.",
        "Is this the second one?",
        "A block\nwith a wrapped line\nLast!",
    ], "a fragment at the end joins the sentence before it"
    assert split_sentences("  \n\n ") == []


def test_headings_join_the_sentence_they_introduce() -> None:
    text = "# The pass statement\n\nIt does nothing at all. See also:\n\nPEP 8 on style."
    assert split_sentences(text) == [
        "# The pass statement\nIt does nothing at all.",
        "See also:\nPEP 8 on style.",
    ]
    assert split_sentences("Hi.") == ["Hi."], "a lone fragment is kept"


def test_the_best_sentence_is_chosen_under_its_source_number() -> None:
    shown = focus_passages("Where Sufa lives?", PEOPLE, FakeEmbedder(), sentences=1)
    assert [(n, p.text) for n, p in shown] == [(2, "Sufa Wade lives in Lomowog.")]
    assert shown[0][1].doc_id == "d", "everything but the text is the source's"


def test_shared_question_words_outweigh_a_closer_vector() -> None:
    decoy = [passage("Lives lives lives in Pakim."), PEOPLE[1]]
    by_vector = focus_passages("Sufa lives", decoy, FakeEmbedder(), 1, lexical_weight=0)
    assert by_vector[0][1].text == "Lives lives lives in Pakim.", "the fake's cosine prefers it"
    by_words = focus_passages("Sufa lives", decoy, FakeEmbedder(), 1, lexical_weight=0.5)
    assert by_words[0][1].text == "Sufa Wade lives in Lomowog."


def test_window_keeps_neighbours_and_marks_gaps() -> None:
    shown = focus_passages("Where Sufa lives?", PEOPLE, FakeEmbedder(), 1, window=1)
    assert [n for n, _ in shown] == [2]
    assert shown[0][1].text == PEOPLE[1].text, "the middle sentence and both neighbours"
    two = focus_passages("Sufa weighs? Sufa pilot?", PEOPLE[1:], FakeEmbedder(), 2)
    assert two[0][1].text == f"Sufa Wade weighs 222 pounds.{GAP}Sufa Wade is a pilot."


def test_zero_sentences_keeps_whole_passages() -> None:
    assert focus_passages("Where?", PEOPLE, FakeEmbedder(), 0) == [(1, PEOPLE[0]), (2, PEOPLE[1])]
    assert focus_passages("Where?", [], FakeEmbedder(), 3) == []
