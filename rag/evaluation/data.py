"""Datasets in the shared format: corpus.jsonl, optional train.jsonl, optional test.jsonl.

A folder without test.jsonl (only corpus.jsonl, or plain .md/.txt documents) gets cloze
questions generated from its documents: teams rarely have a question set. A question with no
answers (or kind "unanswerable") is one whose right reply is a refusal; conversations.jsonl
holds multi-turn cases, asked through the same follow-up rewriting as the chat route.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from rag.documents import Document, load_corpus
from rag.errors import InputError

Split = Literal["tune", "report", "all"]
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
NUMBER = re.compile(r"(?<![\w.-])\d+(?:[.,]\d+)*(?![\w-])")
# A run of capitalised words that does not open the sentence: a name, a place, a title.
NAME = re.compile(r"(?<=[a-z,;:] )[A-Z][a-zA-Z]+(?: [A-Z][a-zA-Z]+)*")


UNANSWERABLE = "unanswerable"
ROLES = frozenset({"user", "assistant"})
# Gold answers longer than this (median words) are written sentences, not extracted spans:
# token F1 scores them, since a correct reply in its own words never contains a whole sentence.
SHORT_ANSWER_WORDS = 12


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    doc_id: str | None
    kind: str | None = None

    @property
    def unanswerable(self) -> bool:
        """No document holds the answer: the right reply is a refusal."""
        return not self.answers or self.kind == UNANSWERABLE


@dataclass(frozen=True)
class Conversation:
    """Earlier turns (oldest first, as (user, assistant) pairs) and the last user question."""

    id: str
    history: list[tuple[str, str | None]]
    question: str
    answerable: bool
    target: str
    doc_ids: list[str]

    @property
    def unanswerable(self) -> bool:
        return not self.answerable


T = TypeVar("T", "Question", "Conversation")


@dataclass(frozen=True)
class Dataset:
    root: Path
    documents: list[Document]
    test: list[Question]
    train: list[Question]
    generated: bool = False  # the questions were made from the documents (no test.jsonl)
    conversations: list[Conversation] = field(default_factory=list)

    @property
    def metric(self) -> str:
        """How answers are scored: containment for short gold answers, token F1 for long ones."""
        return answer_metric(self.test)

    @property
    def name(self) -> str:
        return self.root.resolve().name

    @property
    def corpus(self) -> Path:
        """What the project's corpus loader reads: corpus.jsonl, or the folder of documents."""
        jsonl = self.root / "corpus.jsonl"
        return jsonl if jsonl.is_file() else self.root


def load_dataset(root: Path, max_per_document: int = 12) -> Dataset:
    """Read a dataset folder, generating cloze questions when it has no test.jsonl.

    Raises InputError for a missing folder, unreadable records, questions about documents the
    corpus lacks, or a corpus without a single usable sentence.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder: --data takes a dataset folder")
    corpus = root / "corpus.jsonl"
    documents = load_corpus(corpus if corpus.is_file() else root).documents
    train = _questions(root / "train.jsonl") if (root / "train.jsonl").is_file() else []
    if (root / "test.jsonl").is_file():
        test, generated = _questions(root / "test.jsonl"), False
    else:
        test, generated = cloze_questions(documents, max_per_document), True
        if not test:
            raise InputError(
                f"{root} has no test.jsonl and no sentence in its documents holds a number or "
                "a name to ask about: nothing to evaluate"
            )
    known = {d.id for d in documents}
    for name, questions in (("train.jsonl", train), ("test.jsonl", test)):
        stray = sorted({q.doc_id for q in questions if q.doc_id and q.doc_id not in known})
        if stray:
            raise InputError(
                f"{root / name}: {len(stray)} doc_id(s) not in the corpus, e.g. {stray[0]!r}"
            )
    conversations = []
    if (root / "conversations.jsonl").is_file():
        conversations = _conversations(root / "conversations.jsonl")
        stray = sorted({d for c in conversations for d in c.doc_ids if d not in known})
        if stray:
            raise InputError(
                f"{root / 'conversations.jsonl'}: {len(stray)} doc_id(s) not in the corpus, "
                f"e.g. {stray[0]!r}"
            )
    if not test and not conversations:
        raise InputError(f"{root / 'test.jsonl'} holds no questions")
    return Dataset(root, documents, test, train, generated, conversations)


def answer_metric(questions: list[Question]) -> str:
    """'containment' where the median gold answer is short, else 'f1' (written answers)."""
    lengths = sorted(len(q.answers[0].split()) for q in questions if q.answers)
    if not lengths:
        return "containment"
    return "containment" if lengths[len(lengths) // 2] <= SHORT_ANSWER_WORDS else "f1"


def _questions(path: Path) -> list[Question]:
    out = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            q = Question(
                str(r["id"]), r["question"], list(r["answers"]), r.get("doc_id"), r.get("kind")
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path} line {number}: not a question record ({exc})") from None
        if not isinstance(q.question, str) or not all(isinstance(a, str) for a in q.answers):
            raise InputError(f"{path} line {number}: question and answers must be text")
        if q.kind == UNANSWERABLE and q.answers:
            raise InputError(
                f"{path} line {number}: kind is 'unanswerable' but it lists answers; "
                'an unanswerable question has "answers": []'
            )
        out.append(q)
    return out


def _conversations(path: Path) -> list[Conversation]:
    """Conversations whose last message is the user's; anything else is refused by line."""
    out = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            r = json.loads(line)
            messages = [(str(m["role"]), str(m["content"])) for m in r["messages"]]
            conversation_id, answerable = str(r["id"]), bool(r.get("answerable", True))
            target, doc_ids = str(r.get("target") or ""), [str(d) for d in r.get("doc_ids") or []]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{where}: not a conversation record ({exc})") from None
        if not messages or messages[-1][0] != "user":
            raise InputError(f"{where}: the last message must be the user's question")
        if unknown := sorted({role for role, _ in messages} - ROLES):
            raise InputError(f"{where}: unknown role {unknown[0]!r} (user or assistant)")
        if answerable and not target:
            raise InputError(f"{where}: an answerable conversation needs a 'target' reply")
        history: list[tuple[str, str | None]] = []
        for role, content in messages[:-1]:
            if role == "user":
                history.append((content, None))
            elif history and history[-1][1] is None:
                history[-1] = (history[-1][0], content)
        out.append(
            Conversation(conversation_id, history, messages[-1][1], answerable, target, doc_ids)
        )
    return out


def sentences(text: str) -> list[str]:
    """Prose sentences of 5 to 60 words: paragraphs are split first, and Markdown headings,
    tables and code fences dropped, so a heading never runs into the sentence after it."""
    paragraphs, lines = [], []
    for line in [*text.splitlines(), ""]:
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "|", "```")):
            if lines:
                paragraphs.append(" ".join(lines))
            lines = []
        else:
            lines.append(stripped)
    found = [s for p in paragraphs for s in SENTENCE_END.split(" ".join(p.split()))]
    return [s for s in found if 5 <= len(s.split()) <= 60]


def cloze_questions(documents: list[Document], max_per_document: int = 12) -> list[Question]:
    """One fill-in-the-blank question per sentence that holds a number or a name.

    The blanked span is the answer (a number is preferred to a name); the question names the
    document's title so that it can be asked on its own; doc_id is the document.
    """
    out = []
    for doc in documents:
        made = 0
        for sentence in sentences(doc.text):
            if made >= max_per_document:
                break
            match = _blank(sentence, doc.title)
            if match is None:
                continue
            blank = sentence[: match.start()] + "____" + sentence[match.end() :]
            kind = "cloze-number" if match.re is NUMBER else "cloze-name"
            out.append(
                Question(
                    id=f"cloze-{doc.id}-{made}",
                    question=f"Fill in the blank ({doc.title}): {blank}",
                    answers=[match.group(0)],
                    doc_id=doc.id,
                    kind=kind,
                )
            )
            made += 1
    return out


def _blank(sentence: str, title: str) -> re.Match[str] | None:
    """The span to ask about: the first number, else the first whole name, never the title's."""
    for match in [*NUMBER.finditer(sentence), *NAME.finditer(sentence)]:
        before = sentence[: match.start()].split()
        inside_a_name = match.re is NAME and before and before[-1][:1].isupper()
        if match.group(0) not in title and not inside_a_name:
            return match
    return None


def split_of(question: Question | Conversation) -> Literal["tune", "report"]:
    """Which half a question belongs to, by a stable hash of its document (or its own id)."""
    if isinstance(question, Conversation):
        key = question.doc_ids[0] if question.doc_ids else f"conversation:{question.id}"
    else:
        key = question.doc_id if question.doc_id is not None else f"question:{question.id}"
    return "tune" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "report"


def in_split(questions: list[T], split: Split) -> list[T]:
    if split == "all":
        return list(questions)
    return [q for q in questions if split_of(q) == split]
