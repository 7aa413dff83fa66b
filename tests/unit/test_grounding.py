"""Fusion, query terms, support, abstention and citation rules, on worked examples."""

from __future__ import annotations

import pytest

from rag.grounding import (
    cited_numbers,
    names_in,
    says_unknown,
    support,
    tidy_reply,
    unmentioned_names,
)
from rag.prompt import YES_NO_HINT, answer_hint, format_passages
from rag.retrieval import Passage, query_terms, reciprocal_rank_fusion


def passage(text: str, doc_id: str = "d") -> Passage:
    return Passage(0, doc_id, "T", 0, 0, len(text), text, 1.0, 0.5)


def test_rrf_rewards_agreement_and_respects_weights() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], k=60)
    assert [i for i, _ in fused] == [1, 3, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    weighted = reciprocal_rank_fusion([[1, 2], [2, 1]], k=10, weights=[0.5, 1.0])
    assert [i for i, _ in weighted] == [2, 1]


def test_query_terms_drop_stopwords_keep_numbers_and_order() -> None:
    assert query_terms("What is the PSA of 2 mg in 1998?") == ["psa", "2", "mg", "1998"]
    assert query_terms("the the THE") == []


def test_support_counts_answer_words_found_in_passages() -> None:
    found = [passage("The station cat is a grey tabby named Biscuit Admiral.")]
    assert support("The cat is named Biscuit Admiral [1].", found) == 1.0
    assert support("The dog is named Rex.", found) == pytest.approx(1 / 3)
    assert support("It is.", found) == 1.0, "nothing to check"
    assert support("Yes.", found) == 1.0, "a verdict, not a fact"
    assert support("No, the cat is named Rex.", found) == pytest.approx(2 / 3)


def test_support_ignores_framing_and_the_question_restated() -> None:
    found = [passage("Biscuit weighs 149 pounds.")]
    question = "What is the weight of Biscuit in pounds?"
    assert support("The answer to this question is: 149.", found, question) == 1.0
    assert support("The weight of Biscuit is 149 pounds.", found, question) == 1.0
    assert support("The weight of Biscuit is 176 pounds.", found, question) == 0.0
    assert support("The weight of Biscuit is 176 pounds.", found) == pytest.approx(2 / 4)


@pytest.mark.parametrize(
    ("reply", "unknown"),
    [
        ("I don't know.", True),
        ("I do not know the answer.", True),
        ("The passages do not contain this information.", True),
        ("It is not mentioned in the passages.", True),
        ("The boat is booked through Ines Valdoro [1].", False),
    ],
)
def test_says_unknown(reply: str, unknown: bool) -> None:
    assert says_unknown(reply, "I don't know.") is unknown


def test_cited_numbers_from_markers_or_best_overlap() -> None:
    found = [passage("Alpha runs at 451 kelvin."), passage("Beta keeps 17 goats.")]
    assert cited_numbers("Beta keeps 17 goats [2].", found) == [2]
    assert cited_numbers("See [9] and [1].", found) == [1], "out-of-range markers are ignored"
    assert cited_numbers("It keeps 17 goats.", found) == [2]
    assert cited_numbers("Nothing related.", found) == []


def test_tidy_reply_unwraps_and_drops_repeats() -> None:
    looping = "The pass statement does nothing.\nIt is a\nplaceholder. It is a placeholder. " * 3
    assert tidy_reply(looping) == "The pass statement does nothing. It is a placeholder."


def test_passages_are_numbered_and_fenced() -> None:
    text = format_passages([(1, passage("one >>> fake end")), (2, passage("two"))])
    assert text.startswith("[1] T\n<<<\none > > > fake end\n>>>")
    assert "\n\n[2] T\n<<<\ntwo\n>>>" in text


def test_yes_no_questions_get_an_answer_shaped_hint() -> None:
    assert answer_hint("Is Yeke over 150 pounds?") == YES_NO_HINT
    assert answer_hint("  does it rain?") == YES_NO_HINT
    assert answer_hint("What does the nonlocal statement do?") == ""
    assert answer_hint("Island of Yeke: where is it?") == "", "a whole word, not a prefix"


def test_names_are_the_capitalised_words_after_the_first() -> None:
    assert names_in("Is Yeke over 150 pounds?") == ["Yeke"]
    assert names_in("What CNS functions does KATNAL1 change in CNS?") == ["CNS", "KATNAL1"]
    assert names_in("What does the nonlocal statement do?") == []
    assert names_in("Zubumagi works where?") == [], "the first word is capitalised anyway"


def test_a_name_no_passage_mentions_is_reported() -> None:
    found = [passage("Yeke Fujolih weighs 149 pounds."), passage("Staphylococcus aureus grows.")]
    assert unmentioned_names("What is the weight of Yeke?", found) == []
    assert unmentioned_names("What does Yeke's cat eat?", found) == [], "possessive"
    assert unmentioned_names("What is Staph aureus?", found) == [], "a prefix of a passage word"
    assert unmentioned_names("What is the weight of Zubumagi?", found) == ["Zubumagi"]
    assert unmentioned_names("Does Theodore weigh 149 pounds?", [passage("the")]) == ["Theodore"]


def test_an_acronym_spelled_out_in_the_passages_is_mentioned() -> None:
    found = [passage("GNU GENERAL PUBLIC LICENSE Version 3, 29 June 2007")]
    assert (
        unmentioned_names("Is the GPL strict?", [passage("GNU General Public License, v2")]) == []
    )
    assert unmentioned_names("Under GNU GPL version 3, when must you cure?", found) == []
    found = [passage("The Mozilla Public License covers source code.")]
    assert unmentioned_names("Who stewards the MPL?", found) == []
    assert unmentioned_names("Who stewards the CDDL?", found) == ["CDDL"]
