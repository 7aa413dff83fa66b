"""Follow-ups made standalone (rag/conversation.py): the rules, the model path, the bounds."""

from __future__ import annotations

import pytest

from rag.config import Settings
from rag.conversation import Turn, check_history, standalone_question, topic_of
from rag.errors import InputError


@pytest.mark.parametrize(
    ("first", "answer", "follow_up", "standalone"),
    [
        (
            "What is the name of the station cat?",
            "Biscuit Admiral. [1]",
            "What colour is it?",
            "What colour is the station cat?",
        ),
        (
            "Who is the director of Lumen Harbor Research Station?",
            "The director is Dr. Ottilie Brannock. [1]",
            "Since when has she led the station?",
            "Since when has Dr. Ottilie Brannock led the station?",
        ),
        (
            "In which building do staff sleep?",
            "Staff sleep in Kelpie House. [1]",
            "How many bunks does it have?",
            "How many bunks does Kelpie House have?",
        ),
        (
            "On which days is the laundry room open?",
            None,
            "What heats its water?",
            "What heats the laundry room's water?",
        ),
        (
            "What are lambda expressions used for?",
            None,
            "Can they contain statements?",
            "Can lambda expressions contain statements?",
        ),
        (
            "How often does the supply ship Gannet's Promise visit Lumen Harbor?",
            None,
            "What does it take away?",
            "What does the supply ship Gannet's Promise take away?",
        ),
        (
            "What is the backup generator at Lumen Harbor called?",
            "Marrow-7.",
            "And the wind turbine?",
            "What is the wind turbine called?",
        ),
        (  # a standalone follow-up is left alone
            "What is the name of the station cat?",
            None,
            "What is the station's postal box number?",
            "What is the station's postal box number?",
        ),
    ],
)
def test_rules_replace_the_pronoun_with_its_referent(first, answer, follow_up, standalone):
    assert standalone_question(follow_up, [Turn(first, answer)]) == standalone


def test_a_third_turn_leans_on_the_rewritten_second() -> None:
    history = [
        Turn("What does the pass statement do?", "Nothing happens."),
        Turn("When is it useful?", "As a placeholder."),
    ]
    assert standalone_question("Where may it occur?", history) == (
        "Where may the pass statement occur?"
    )


def test_no_history_or_strategy_none_keeps_the_question() -> None:
    assert standalone_question("What colour is it?", []) == "What colour is it?"
    history = [Turn("What is the name of the station cat?")]
    assert standalone_question("What colour is it?", history, strategy="none") == (
        "What colour is it?"
    )


def test_topic_skips_relational_heads() -> None:
    assert topic_of("What is the name of the station cat?") == "the station cat"
    assert topic_of("When was Lumen Harbor Research Station founded?") == (
        "Lumen Harbor Research Station"
    )


class ScriptedGenerator:
    def __init__(self, reply: str) -> None:
        self.reply, self.seen = reply, []

    def generate(self, messages, **options) -> str:
        self.seen.append(messages)
        return self.reply


def test_model_strategy_asks_the_generator_with_the_conversation() -> None:
    generator = ScriptedGenerator("What colour is the station cat?\nextra line")
    history = [Turn("What is the name of the station cat?", "Biscuit Admiral.")]
    rewritten = standalone_question(
        "What colour is it?", history, strategy="model", generator=generator
    )
    assert rewritten == "What colour is the station cat?"
    prompt = generator.seen[0][-1]["content"]
    assert "Biscuit Admiral." in prompt and prompt.rstrip().endswith("Standalone question:")
    empty = standalone_question("Why?", history, strategy="model", generator=ScriptedGenerator(""))
    assert empty == "Why?"
    with pytest.raises(InputError):
        standalone_question("Why?", history, strategy="model")


def test_history_bounds_name_their_setting() -> None:
    settings = Settings(max_history_turns=2, max_history_chars=50)
    check_history([Turn("a?", "b")] * 2, settings)
    with pytest.raises(InputError, match="RAG_MAX_HISTORY_TURNS"):
        check_history([Turn("a?", "b")] * 3, settings)
    with pytest.raises(InputError, match="RAG_MAX_HISTORY_CHARS"):
        check_history([Turn("x" * 40, "y" * 11)], settings)


@pytest.mark.parametrize(
    ("answer", "follow_up", "standalone"),
    [  # a title cut from its name, or a weekday, is not what "his" or "its" stands for
        ("The survey was led by Dr.", "Where does he work?", "Where does the survey work?"),
        (None, "What heats its water?", "What heats the laundry room's water?"),
    ],
)
def test_cut_titles_and_weekdays_are_not_referents(answer, follow_up, standalone) -> None:
    first = {
        "Where does he work?": "Who led the survey?",
        "What heats its water?": "On which days is the laundry room open?",
    }[follow_up]
    answer = answer or "The laundry room is open on Tuesdays and Fridays."
    assert standalone_question(follow_up, [Turn(first, answer)]) == standalone


def test_recent_turns_keep_the_newest_within_both_bounds() -> None:
    from rag.conversation import recent_turns

    history = [Turn("one?", "a"), Turn("two?", "b"), Turn("three?", "c")]
    assert recent_turns(history, Settings(max_history_turns=2)) == history[1:]
    assert recent_turns(history, Settings(max_history_chars=12)) == history[1:]
    assert recent_turns(history, Settings(max_history_turns=0)) == []


def test_a_rewrite_past_max_chars_falls_back_to_the_question() -> None:
    history = [Turn("What is the name of the station cat?")]
    assert standalone_question("What colour is it?", history, max_chars=20) == "What colour is it?"


def test_a_new_question_is_not_glued_to_the_earlier_topic() -> None:
    history = [Turn("What does the nonlocal statement do?")]
    new = "What is the airspeed of an unladen swallow?"
    assert standalone_question(new, history) == new
    # a short ellipsis still leans on the earlier turn
    assert standalone_question("Any exceptions?", history) == (
        "Any exceptions (the nonlocal statement)?"
    )
