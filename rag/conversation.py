"""Follow-up questions made standalone from the earlier turns, before retrieval.

Retrieval, the relevance gate and the prompt all read one question, so "What colour is it?"
after "What is the name of the station cat?" must become "What colour is the station cat?"
first. Two ways are here: `rules` (pronouns replaced by the phrase the previous question was
about, or by the name its answer gave) and `model` (the generator asked to rewrite). On the
two-turn set in bench/conversations.jsonl the rules score better with the 135M SmolLM2
(bench/conversations.py prints the figures; docs/conversations.md records them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rag.config import Settings
from rag.errors import InputError

RewriteStrategy = Literal["rules", "model", "none"]


@dataclass(frozen=True)
class Turn:
    """One earlier exchange: what the user asked and what was answered (None if unknown)."""

    question: str
    answer: str | None = None


class ChatGenerator(Protocol):
    def generate(self, messages: list[dict[str, str]], **options: Any) -> str: ...


def check_history(history: Sequence[Turn], settings: Settings) -> None:
    """Refuse a conversation past RAG_MAX_HISTORY_TURNS or RAG_MAX_HISTORY_CHARS."""
    if len(history) > settings.max_history_turns:
        raise InputError(
            f"the conversation has {len(history)} earlier turns; the limit is "
            f"{settings.max_history_turns} (RAG_MAX_HISTORY_TURNS): start a new conversation"
        )
    chars = sum(len(t.question) + len(t.answer or "") for t in history)
    if chars > settings.max_history_chars:
        raise InputError(
            f"the earlier turns hold {chars} characters; the limit is "
            f"{settings.max_history_chars} (RAG_MAX_HISTORY_CHARS): start a new conversation"
        )


def recent_turns(history: Sequence[Turn], settings: Settings) -> list[Turn]:
    """The most recent turns within both bounds, for clients that resend whole conversations."""
    kept: list[Turn] = []
    chars = 0
    for turn in reversed(
        history[-settings.max_history_turns :] if settings.max_history_turns else []
    ):
        chars += len(turn.question) + len(turn.answer or "")
        if chars > settings.max_history_chars:
            break
        kept.append(turn)
    return kept[::-1]


def standalone_question(
    question: str,
    history: Sequence[Turn],
    *,
    strategy: RewriteStrategy = "rules",
    generator: ChatGenerator | None = None,
    max_chars: int | None = None,
) -> str:
    """`question` rewritten so that it can be understood without `history` (oldest first);
    the question itself when the rewrite would be longer than `max_chars`."""
    if not history or strategy == "none":
        return question
    if strategy == "model":
        if generator is None:
            raise InputError("rewriting follow-ups with the model needs a loaded generator")
        rewritten = rewrite_with_model(question, history, generator)
    else:
        # Each earlier question is made standalone first, so a third turn can lean on the second.
        previous: Turn | None = None
        for turn in history:
            asked = rewrite_with_rules(turn.question, previous) if previous else turn.question
            previous = Turn(asked, turn.answer)
        assert previous is not None
        rewritten = rewrite_with_rules(question, previous)
    return question if max_chars is not None and len(rewritten) > max_chars else rewritten


# --- rules ------------------------------------------------------------------------------------

# Content words up to which a question without a pronoun is read as an ellipsis of the earlier
# one; chosen on the tune halves of the panel's conversations (bench/follow_ups.py).
ELLIPTICAL_WORDS = 2

PERSONAL = {"he": "s", "she": "s", "him": "o", "her": "p", "his": "p", "hers": "o"}
NEUTER = {"it": "s", "its": "p", "they": "s", "them": "o", "their": "p", "theirs": "o"}
PLURAL = frozenset({"they", "them", "their", "theirs"})
DEMONSTRATIVE = re.compile(r"\b(this|that|these|those)\b(?!\s+(?:is|are|was|were)\b)", re.I)
WH = frozenset({"what", "who", "whom", "whose", "which", "where", "when", "why", "how"})
AUXILIARIES = frozenset(
    "is are was were do does did has have had can could may might must should will would".split()
)
DO_SUPPORT = frozenset({"do", "does", "did"})
# Words that end a noun phrase: verbs, auxiliaries, question words, most prepositions.
BOUNDARY = (
    AUXILIARIES
    | WH
    | frozenset(
        """be been shall that than and or but if to from with without by into over under about
    after before during since until called named kept keep keeps used use uses led lead leads
    run runs installed made make often always never usually commonly normally typically
    generally mostly also still ever""".split()
    )
)
# Prepositions that attach a phrase to the noun before them ("the gauge on the north jetty").
ATTACHING = frozenset({"of", "at", "in", "on", "for"})
DETERMINERS = frozenset({"the", "a", "an", "this", "that", "these", "those"})
# "the name of the station cat" is about the cat: these heads point at their of-complement.
RELATIONAL = frozenset(
    """name names number colour color kind type size part parts value values meaning
    purpose result effect length price""".split()
)
# Not names a follow-up's "it" stands for: titles cut from their name, days and months.
TITLES = frozenset({"dr", "mr", "mrs", "ms", "prof"})
CALENDAR = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday mondays tuesdays wednesdays
    thursdays fridays saturdays sundays january february march april may june july august
    september october november december""".split()
)
PROPER_NAME = re.compile(r"(?:Dr\.\s+)?[A-Z][\w'-]*(?:\s+(?:[A-Z][\w'-]*|of|the|de|van))*")


def _words(question: str) -> list[str]:
    return re.findall(r"[\w'.-]+", question.rstrip("?.! "))


def _wh(words: list[str]) -> str:
    return next((w.lower() for w in words if w.lower() in WH), "")


def subject_phrase(question: str) -> str | None:
    """The noun phrase a question is about, read off its shape: "WH-phrase AUX subject rest".

    After "what/who + be" the subject runs to the end ("What is the name of the cat?"); after
    do-support or "when/where/how + be" the last word is the verb or predicate ("When was
    the station founded?"); without an auxiliary the object is taken ("Who led the survey?").
    """
    words = _words(question)
    lower = [w.lower() for w in words]
    aux = next((i for i, w in enumerate(lower) if w in AUXILIARIES), None)
    if aux is None or not any(w in WH for w in lower[:aux]):
        # "Who led the survey?", "Which station keeps goats?": the object after the verb.
        wh = next((i for i, w in enumerate(lower) if w in WH), None)
        if wh is None:
            return None
        verb = wh + (2 if lower[wh] in {"which", "what", "whose"} else 1)
        rest, keep_last = words[verb + 1 :], True
    else:
        rest = words[aux + 1 :]
        copula = lower[aux] not in DO_SUPPORT and lower[aux] not in {"has", "have", "had"}
        keep_last = copula and lower[aux - 1] in {"what", "who", "which"} and aux == 1
    if not keep_last:
        rest = rest[:-1]
        if rest and rest[0].lower() not in DETERMINERS and not rest[0][:1].isupper():
            rest = rest[:1]  # "Where do visitors sleep?": a bare noun, then the verb
    phrase: list[str] = []
    for index, word in enumerate(rest):
        low = word.lower()
        after = rest[index + 1] if index + 1 < len(rest) else ""
        if (
            low in ATTACHING
            and phrase
            and (low == "of" or after.lower() in DETERMINERS or after[:1].isupper())
        ):
            phrase.append(word)
            continue
        if low in BOUNDARY or low in ATTACHING:
            break
        capital_before = any(w[:1].isupper() for w in phrase[1:] or phrase)
        if lower[aux or 0] in DO_SUPPORT and capital_before and not word[:1].isupper():
            break  # "does the ship Gannet's Promise visit ...": the name ends the subject
        phrase.append(word)
    if not phrase or phrase[-1].lower() in DETERMINERS:
        return None
    return " ".join(phrase)


def topic_of(question: str) -> str | None:
    """The thing a question is about, past a relational head ("the name of X" is about X)."""
    phrase = subject_phrase(question)
    if phrase is None:
        return None
    match = re.match(r"(?:the|a|an)\s+(\w+)\s+of\s+(.+)$", phrase, re.I)
    if match and match.group(1).lower() in RELATIONAL:
        return match.group(2)
    return phrase


def name_in_answer(answer: str | None) -> str | None:
    """The first proper name of an answer ("Dr. Ottilie Brannock", "Kelpie House"), if any."""
    if not answer:
        return None
    body = re.sub(r"\[\d+\]", "", answer)
    for match in PROPER_NAME.finditer(body):
        name = match.group(0).strip()
        if match.start() == 0 and len(name.split()) == 1:
            continue  # a capital at the start of the sentence, not a name
        first = name.split()[0].lower()
        if name.lower().rstrip(".") in TITLES or first in CALENDAR:
            continue
        if first not in BOUNDARY | DETERMINERS | {"i", "yes", "no"}:
            return name
    return None


def referent(pronoun: str, previous: Turn) -> str | None:
    """What a pronoun in the follow-up most likely stands for."""
    wh = _wh(_words(previous.question))
    answer_name = name_in_answer(previous.answer)
    topic = topic_of(previous.question)
    if pronoun in PERSONAL:
        return answer_name if wh in {"who", "whom"} and answer_name else topic or answer_name
    if pronoun in PLURAL and topic and topic.split()[-1].lower().endswith("s"):
        return topic
    if wh in {"where", "which"} and answer_name and pronoun not in PLURAL:
        return answer_name  # "In which building ...?" "How many bunks does it have?"
    return topic


def rewrite_with_rules(question: str, previous: Turn, max_words: int | None = None) -> str:
    """Replace the follow-up's first pronoun (or demonstrative) with what it refers to."""
    pronouns = {**PERSONAL, **NEUTER}
    pattern = re.compile(r"\b(" + "|".join(pronouns) + r")\b", re.I)
    match = pattern.search(question)
    if match is None:
        demonstrative = DEMONSTRATIVE.search(question)
        if demonstrative is None:
            return elliptical(question, previous, max_words)
        topic = topic_of(previous.question)
        if topic is None:
            return question
        start, end = demonstrative.span()
        return question[:start] + topic + question[end:]
    pronoun = match.group(1).lower()
    target = referent(pronoun, previous)
    if not target:
        return question
    replacement = target + "'s" if pronouns[pronoun] == "p" and pronoun != "her" else target
    if (
        pronoun == "her"
        and re.match(r"\s+\w+", question[match.end() :])
        and not re.match(r"\s+(?:to|in|at|on|for|with|about|from|by)\b", question[match.end() :])
    ):
        replacement = target + "'s"  # "her office" rather than "her" the object
    start, end = match.span()
    if start == 0:
        replacement = replacement[:1].upper() + replacement[1:]
    return question[:start] + replacement + question[end:]


def elliptical(question: str, previous: Turn, max_words: int | None = None) -> str:
    """Questions without a pronoun: "And the tender?", or "the name" meaning the earlier one.

    A question of more than `max_words` content words of its own, none shared with the earlier
    one, is a new question ("What is the airspeed of an unladen swallow?"), not an ellipsis:
    gluing the earlier topic onto it sends retrieval to the wrong passages.
    """
    max_words = ELLIPTICAL_WORDS if max_words is None else max_words
    follow = re.match(r"^\s*(?:and|what about|how about)\s+(.+?)\??\s*$", question, re.I)
    topic = topic_of(previous.question)
    if follow and topic:
        return previous.question.replace(topic, follow.group(1), 1)
    own = set(_content(question))
    if topic and len(own) <= max_words and not own & set(_content(previous.question)):
        return f"{question.rstrip(' ?')} ({topic})?"
    return question


def _content(text: str) -> list[str]:
    from rag.retrieval import query_terms

    return query_terms(text)


# --- model ------------------------------------------------------------------------------------

REWRITE_SYSTEM = (
    "Rewrite the user's last question so that it can be understood without the conversation: "
    "replace words like it, she or they with what they refer to. Reply with the question only."
)
REWRITE_EXAMPLES = [
    (
        [Turn("Who wrote the ship's log?", "The captain, Anna Berg, wrote it.")],
        "When did she write it?",
        "When did Anna Berg write the ship's log?",
    ),
    (
        [Turn("What is the tallest tower in the city called?", "It is called Spire One.")],
        "How tall is it?",
        "How tall is Spire One?",
    ),
]


def _rewrite_turn(history: Sequence[Turn], question: str) -> str:
    lines = []
    for turn in history:
        lines.append(f"User: {turn.question}")
        if turn.answer:
            lines.append(f"Assistant: {turn.answer}")
    lines.append(f"User: {question}")
    return "Conversation:\n" + "\n".join(lines) + "\n\nStandalone question:"


def rewrite_with_model(question: str, history: Sequence[Turn], generator: ChatGenerator) -> str:
    """Ask the generator for the standalone question (few-shot); fall back to the question."""
    messages = [{"role": "system", "content": REWRITE_SYSTEM}]
    for past, asked, rewritten in REWRITE_EXAMPLES:
        messages.append({"role": "user", "content": _rewrite_turn(past, asked)})
        messages.append({"role": "assistant", "content": rewritten})
    messages.append({"role": "user", "content": _rewrite_turn(history, question)})
    reply = generator.generate(messages, max_new_tokens=48).strip().splitlines()
    rewritten = reply[0].strip().strip('"') if reply else ""
    return rewritten if len(rewritten) > 3 else question
