"""The literature's fine-tuning recipes, as builders of (chat, target) training examples.

- `sft`: question/answer pairs, asked closed-book (the FineTuneBench protocol).
- `sft-para`: the same pairs, each question also in template paraphrases (Ovadia et al. 2024:
  facts stick when seen in many phrasings). Made offline by templates over the question.
- `cpt`: continued pre-training on the documents' text (no chat).
- `raft`: the chain's own prompt (question + retrieved passages, distractors included) to the
  gold answer (Zhang et al. 2024), so `ft+rag` is trained the way it is used.

Each builder also returns the fit pairs: the training questions, asked the way the model will
be asked after training, whose answers the fit check looks for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.documents import Document
from rag.errors import InputError
from rag.evaluation.data import Question
from rag.evaluation.finetune import CLOSED_BOOK, Chat

RECIPES = ("sft", "sft-para", "cpt", "raft")
PromptFor = Callable[[str], Chat | None]  # the chain's prompt for a question, None if refused

# (pattern over the question, rewrite): specific rewrites first, wrappers always apply.
REWRITES = [
    (re.compile(r"^How old is (.+)\?$"), r"What is the age of \1?"),
    (re.compile(r"^How tall is (.+)\?$"), r"What is the height of \1?"),
    (re.compile(r"^How many (\w+) does (.+) weigh\?$"), r"What is \2's weight in \1?"),
    (re.compile(r"^Where does (.+) live\?$"), r"In which place does \1 live?"),
    (re.compile(r"^What is (.+)'s (.+)\?$"), r"What is the \2 of \1?"),
    (re.compile(r"^What (?:is|are) the (.+) of (.+)\?$"), r"Tell me the \1 of \2."),
    (re.compile(r"^Who (.+)\?$"), r"Which person \1?"),
]
WRAPPERS = ["Quick question: {q}", "{q} Answer briefly.", "I would like to know: {q}"]


@dataclass(frozen=True)
class TrainingSet:
    recipe: str
    examples: list[tuple[Chat | None, str]]
    fit_pairs: list[tuple[Chat, list[str]]]  # for the fit check
    note: str  # one line for the report: what the model was trained on


def closed_book(question: str) -> Chat:
    """The closed-book prompt, the same for training, fit checks and the `ft` system."""
    return [{"role": "user", "content": CLOSED_BOOK.format(question=question)}]


def paraphrases(question: str, count: int = 3) -> list[str]:
    """Up to `count` template rewrites of a question (never the question itself)."""
    out = []
    for pattern, rewrite in REWRITES:
        if pattern.match(question):
            out.append(pattern.sub(rewrite, question))
    plain = question[0].lower() + question[1:] if question[:2] != question[:2].upper() else question
    out += [w.format(q=plain if w.index("{q}") > 0 else question) for w in WRAPPERS]
    unique = [q for q in dict.fromkeys(out) if q != question]
    return unique[:count]


def build_training(
    recipe: str,
    train: list[Question],
    documents: list[Document],
    prompt_for: PromptFor | None = None,
) -> TrainingSet:
    """Examples for `recipe` from training questions and documents; raises InputError if none."""
    if recipe not in RECIPES:
        raise InputError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    fit = [(closed_book(q.question), q.answers) for q in train]
    if recipe == "sft":
        examples = [(closed_book(q.question), q.answers[0]) for q in train]
        note = f"{len(examples)} question/answer pairs, closed-book prompt"
    elif recipe == "sft-para":
        examples = []
        for q in train:
            for asked in [q.question, *paraphrases(q.question)]:
                examples.append((closed_book(asked), q.answers[0]))
        note = (
            f"{len(train)} question/answer pairs, each also in template paraphrases of the "
            f"question ({len(examples)} examples; templates, not a model)"
        )
    elif recipe == "cpt":
        examples = [(None, f"{d.title}\n{d.text}") for d in documents]
        note = f"continued pre-training on {len(examples)} documents' text"
    else:
        if prompt_for is None:
            raise InputError("the raft recipe needs the retrieval chain's prompts (an index)")
        examples, fit, refused = [], [], 0
        for q in train:
            chat = prompt_for(q.question)
            if chat is None:
                refused += 1
                continue
            examples.append((chat, q.answers[0]))
            fit.append((chat, q.answers))
        note = (
            f"{len(examples)} chain prompts (question + retrieved passages, distractors "
            f"included) to the gold answer; {refused} refused by the retrieval gate, skipped"
        )
    if not examples:
        raise InputError(f"the {recipe} recipe made no training examples from this dataset")
    return TrainingSet(recipe, examples, fit, note)
