"""What "no answer here" looks like for one index, measured on the index itself.

A fixed cosine or word-overlap threshold chosen on one corpus does not transfer to another, so
each index version is calibrated on probe questions made from its own documents: a probe from
document D asked of the whole index is answerable; asked of the index without D (D's chunks
left out of the results) it is not. The gate's signals (rag/answerability.py) are weighed by a
logistic model fitted on those pairs, and the threshold set so that a target share of the
answerable probes would be refused. The result is kept as JSON beside the index (one file per
version, under the index root), updated rather than redone when few documents change.

Answerable or not by document is only half of it: a question whose topic the index covers but
whose fact it does not state reads "relevant" on every signal. So calibration also makes
near-miss probes whose topic stays in the index (NEAR_MISS_KINDS). This module is the
index-time room; the answer-time gate (rag/gate.py) reads only the `FittedGate` it writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.answerability import (
    SIGNAL_SETS,
    AnswerabilityModel,
    Signals,
    fit,
    needs_ranking,
    stems,
)
from rag.focus import split_sentences
from rag.gate import (
    FORMAT,
    CalibrationError,
    FittedGate,
    calibrated_gate,
    calibration_path,
    fixed_gate,
    gate_signals,
    read_calibration_file,
)
from rag.grounding import names_in, unmentioned_names
from rag.progress import progress
from rag.retrieval import Passage, query_terms, retrieve
from rag.store.layout import now

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.embeddings import Embedder
    from rag.store import Index

log = logging.getLogger(__name__)

MIN_DOCUMENTS = 3  # leaving one out must leave at least two to retrieve from
MIN_PAIRS = 8  # fewer probes than this cannot place a threshold
INCREMENTAL_SHARE = 0.1  # below this share of documents changed, keep the other probes
HELD_ELSEWHERE = 0.6  # share of a probe's hidden words one other sentence must state
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
QUESTION_WORDS = ("What", "Which", "How", "Who", "When", "Where")


# Unanswerable probes whose topic stays in the index, by kind:
# "sentence": asked of the index with only the probe's sentence left out of its passages;
# "swap": the question asked about another document's entity, of the whole index.
NEAR_MISS_CANDIDATES = ("sentence", "swap")
PROBE_KINDS = ("document", *NEAR_MISS_CANDIDATES)
# The kinds made at `rag index`; bench/refusal.py measures what each adds.
NEAR_MISS_KINDS: tuple[str, ...] = ()


@dataclass
class Probe:
    """One probe question and the signals it gave with its answer and without it.

    kind "document": answerable with its document, unanswerable without it; a near-miss kind
    ("sentence", "swap") has only unanswerable signals, measured with its topic in the index.
    """

    doc_id: str
    question: str
    answerable: list[float] | None  # None: retrieval missed the document even with it there
    unanswerable: list[float] | None  # None: the other documents hold its sentence's facts too
    # whether the chain's names rule lets it reach the gate (False: refused before it)
    answerable_named: bool = True
    unanswerable_named: bool = True
    kind: str = "document"


@dataclass
class Calibration:
    """A fitted gate for one index version, the probes it was fitted on, and how it did."""

    gate: FittedGate
    checked: dict[str, Any]  # two-fold estimate: refusal of each kind of probe, with counts
    probes: list[Probe]
    seconds: float
    reused_probes: int = 0
    created_at: str = field(default_factory=now)

    @property
    def model(self) -> AnswerabilityModel:
        return self.gate.model

    @property
    def threshold(self) -> float:
        return self.gate.threshold

    @property
    def signals(self) -> str:
        return self.gate.signals

    def summary(self) -> dict[str, Any]:
        """What `rag index` reports of it (`rag indexes` shows the same, from the gate)."""
        return {"threshold": round(self.threshold, 4), **self.gate.figures}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gate"] = self.gate.as_dict()
        return {"format": FORMAT, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        gate = FittedGate.from_dict(data["gate"])
        probes = [Probe(**p) for p in data["probes"]]
        for p in probes:
            if p.answerable is None and p.unanswerable is None:
                raise ValueError("a probe has no signals")
            if p.kind not in PROBE_KINDS:
                raise ValueError(f"a probe of unknown kind {p.kind!r}")
            for v in (p.answerable, p.unanswerable):
                if v is not None and len(v) != len(gate.model.features):
                    raise ValueError("a probe's signals do not match the model's features")
        return cls(
            gate=gate,
            checked=dict(data["checked"]),
            probes=probes,
            seconds=float(data["seconds"]),
            reused_probes=int(data.get("reused_probes", 0)),
            created_at=str(data.get("created_at", "")),
        )


# -- probe questions ----------------------------------------------------------------------


def probe_question(
    sentence: str,
    context: str,
    rng: random.Random,
    keep: float = 0.4,
    borrow: float = 0.35,
    elsewhere: str = "",
) -> str | None:
    """A question-like query about a sentence: its numbers (the likely answers) dropped, some
    of its words kept, and some words borrowed from the sentences around it.

    People share only part of their question's words with the sentence that answers it (on
    covidqa-dev about 60%) and take the rest from the topic around it; a probe made of the
    sentence's own words alone matches it far better than any real question does, and a
    threshold set on such probes refuses most real ones.
    """
    content = [w for w in re.findall(r"[\w-]+", NUMBER.sub(" ", sentence)) if query_terms(w)]
    if len(content) < 3:
        return None
    kept = [w for w in content if rng.random() < keep] or content[:2]
    own = {w.lower() for w in content}
    around = [w for w in re.findall(r"[\w-]+", context) if query_terms(w) and w.lower() not in own]
    wanted = round(borrow * len(kept) / (1 - borrow))
    borrowed = rng.sample(around, min(wanted, len(around)))
    # and one word the document may not hold at all, as people use their own words too
    here = {w.lower() for w in re.findall(r"[\w-]+", sentence + " " + context)}
    foreign = [
        w
        for w in re.findall(r"[\w-]+", elsewhere)
        if query_terms(w) and len(w) > 3 and w.lower() not in here
    ]
    words = [*borrowed, *kept, *rng.sample(foreign, min(1, len(foreign)))]
    return f"{rng.choice(QUESTION_WORDS)} {' '.join(words)}?"


def probe_questions(
    documents: dict[str, str], count: int, seed: int = 0, only: set[str] | None = None
) -> list[tuple[str, str, str]]:
    """Up to `count` (doc_id, question, sentence asked about) spread over the documents (`only`
    limits them)."""
    rng = random.Random(seed)
    ids = sorted(documents if only is None else only & set(documents))
    rng.shuffle(ids)
    per_doc = max(1, -(-count // max(1, len(ids))))
    out: list[tuple[str, str, str]] = []
    for doc_id in ids:
        sentences = split_sentences(documents[doc_id])
        places = [i for i, t in enumerate(sentences) if 4 <= len(t.split()) <= 60]
        rng.shuffle(places)
        made = 0
        for i in places:
            if made >= per_doc or len(out) >= count:
                break
            context = " ".join(sentences[max(0, i - 2) : i] + sentences[i + 1 : i + 3])
            other = documents[ids[(ids.index(doc_id) + 1) % len(ids)]][:2000]
            question = probe_question(sentences[i], context, rng, elsewhere=other)
            if question:
                out.append((doc_id, question, sentences[i]))
                made += 1
    return out


# -- measuring ----------------------------------------------------------------------------


class SentenceCache:
    """An encoder that embeds each distinct text once: probes share most of their passages,
    and embedding their sentences again and again was nearly all of calibration's time."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.vectors: dict[str, np.ndarray] = {}

    def add(self, texts: list[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if todo:  # one batched call, sorted by length inside the embedder
            self.vectors.update(zip(todo, self.embedder.encode(todo), strict=True))

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self.add(texts)
        return np.stack([self.vectors[t] for t in texts])


def held_elsewhere(
    sentence: str, question: str, passages: list[Passage], about: str | None = None
) -> bool:
    """Whether some sentence of `passages` states what the probe's sentence does: most of the
    words the question left out (its likely answer) and its numbers, in one sentence (`about`:
    in one sentence that also names it, for a fact asked about another entity).

    Documents that tell the same facts (pages about one event, a FAQ and its manual) leave a
    probe answerable without its document; counted as unanswerable, such probes taught the gate
    to refuse questions the index does answer.
    """
    hidden = (stems(sentence) - stems(question)) | set(NUMBER.findall(sentence))
    if len(hidden) < 2:
        return False
    for passage in passages:
        for other in split_sentences(passage.text):
            if about is not None and about.lower() not in other.lower():
                continue
            words = stems(other) | set(NUMBER.findall(other))
            if len(hidden & words) >= HELD_ELSEWHERE * len(hidden):
                return True
    return False


# -- near misses: the topic stays in the index, the fact does not ----------------------------


def without_sentence(passages: list[Passage], sentence: str) -> list[Passage] | None:
    """The passages with `sentence` cut out, as retrieval would give them from an index whose
    document lacks just that sentence; None when no passage holds it whole (cut at a chunk
    border: the fact would still be half there). The passages keep their scores: the rest of
    the chunk is what made them match."""
    if not any(sentence in p.text for p in passages):
        return None
    cut = [replace(p, text=p.text.replace(sentence, " ").strip()) for p in passages]
    return [p for p in cut if p.text]


def entity_names(documents: dict[str, str], most: int = 3) -> dict[str, list[str]]:
    """Each document's own names, most used first: the capitalised words it uses that few other
    documents do (a person, a product, a place), never one the whole corpus shares."""
    counts = {  # split at every stop: a sentence's first word is capitalised, not a name
        d: Counter(n for t in SENTENCE_END.split(text) for n in names_in(t))
        for d, text in documents.items()
    }
    spread = Counter(n for c in counts.values() for n in c)
    rare = max(1, len(documents) // 50)
    return {
        d: sorted((n for n in c if spread[n] <= rare), key=lambda n: (spread[n], -c[n]))[:most]
        for d, c in counts.items()
    }


def swap_question(question: str, own: list[str], other: str) -> str:
    """The question asked about `other` instead: its document's names replaced by the other
    entity's, or the other entity named after the question word when it names none."""
    swapped = swap_names(question, own, other)
    if swapped != question:
        return swapped
    first, _, rest = question.partition(" ")
    return f"{first} {other} {rest}"


def swap_names(text: str, own: list[str], other: str) -> str:
    for name in own:
        text = re.sub(rf"\b{re.escape(name)}\b", other, text)
    return text


def swap_pairs(
    pairs: list[tuple[str, str, str]], documents: dict[str, str], seed: int = 0
) -> list[tuple[str, str, str, str]]:
    """(doc_id, swapped question, the fact it asks for: the sentence with the other entity's
    name, the other entity) for each probe whose document has a name of its own and some
    other document has a name it never mentions."""
    names = entity_names(documents)
    owners = sorted(d for d, n in names.items() if n)
    rng = random.Random(seed)
    out = []
    for doc_id, question, sentence in pairs:
        text = documents[doc_id].lower()
        choices = [names[d][0] for d in owners if d != doc_id and names[d][0].lower() not in text]
        if not names.get(doc_id) or not choices:
            continue
        other = rng.choice(choices)
        own = names[doc_id]
        out.append(
            (doc_id, swap_question(question, own, other), swap_names(sentence, own, other), other)
        )
    return out


def _retrieve(
    index: Index, embedder: Embedder, settings: Settings, question: str, vector, deeper: int = 0
) -> list[Passage]:
    k = settings.k + deeper
    return retrieve(
        index,
        embedder,
        question,
        k=k,
        candidates=max(settings.candidates, k) + deeper,
        vector=vector,
        mode=settings.retrieval_mode,
        rrf_k=settings.rrf_k,
        dense_weight=settings.dense_weight,
    )


def _measure_probes(
    pairs: list[tuple[str, str, str]],
    index: Index,
    embedder: Embedder,
    settings: Settings,
    chunks_of: dict[str, int],
    features: tuple[str, ...],
    documents: dict[str, str],
    kinds: tuple[str, ...] = NEAR_MISS_KINDS,
    show_progress: bool = False,
) -> list[Probe]:
    rank = needs_ranking(features)
    swaps = swap_pairs(pairs, documents) if "swap" in kinds else []
    asked_texts = [q for _, q, _ in pairs] + [q for _, q, _, _ in swaps]
    vectors = embedder.encode(asked_texts) if asked_texts else []
    retrieved, swapped = [], []
    asked = progress(
        range(len(asked_texts)),
        total=len(asked_texts),
        desc="calibrating refusal",
        unit="probe",
        show=show_progress,
    )
    for i in asked:
        if i >= len(pairs):
            swapped.append(_retrieve(index, embedder, settings, asked_texts[i], vectors[i]))
            continue
        doc_id, question, _ = pairs[i]
        found = _retrieve(index, embedder, settings, question, vectors[i])
        # Without D: search as deep as D has chunks, then leave D out.
        others = _retrieve(
            index, embedder, settings, question, vectors[i], chunks_of.get(doc_id, 0)
        )
        retrieved.append((found, [p for p in others if p.doc_id != doc_id][: settings.k]))
    cache = SentenceCache(embedder)
    if rank:  # one batched call for every sentence the probes retrieved
        every = [p for a, b in retrieved for p in a + b] + [p for s in swapped for p in s]
        cache.add([t for p in every for t in split_sentences(p.text)])
    probes = []

    def near_miss(doc_id: str, question: str, passages, vector, kind: str) -> Probe:
        """An unanswerable probe whose topic stays in the passages."""
        near, _ = gate_signals(question, passages, cache, index, settings, vector, rank=rank)
        return Probe(
            doc_id,
            question,
            None,
            near.vector(features).tolist(),
            unanswerable_named=named(question, passages, settings),
            kind=kind,
        )

    for (doc_id, question, sentence), vector, (found, others) in zip(
        pairs, vectors[: len(pairs)], retrieved, strict=True
    ):
        held = any(p.doc_id == doc_id for p in found)
        answerable, _ = gate_signals(question, found, cache, index, settings, vector, rank=rank)
        unanswerable, _ = gate_signals(
            question, others, cache, index, settings, vector, doc_id, rank=rank
        )
        elsewhere = held_elsewhere(sentence, question, others)
        if not held and elsewhere:
            continue
        probes.append(
            Probe(
                doc_id,
                question,
                answerable.vector(features).tolist() if held else None,
                None if elsewhere else unanswerable.vector(features).tolist(),
                named(question, found, settings),
                named(question, others, settings),
            )
        )
        rest = without_sentence(found, sentence) if held and "sentence" in kinds else None
        if rest and not held_elsewhere(sentence, question, rest):
            probes.append(near_miss(doc_id, question, rest, vector, "sentence"))
    for (doc_id, question, sentence, other), vector, found in zip(
        swaps, vectors[len(pairs) :], swapped, strict=True
    ):
        if not held_elsewhere(sentence, question, found, about=other):
            probes.append(near_miss(doc_id, question, found, vector, "swap"))
    return probes


def named(question: str, passages: list[Passage], settings: Settings) -> bool:
    """Whether the chain's names rule lets the question reach the gate at all: a name no
    passage mentions is refused before the gate is asked."""
    return not (settings.check_names and unmentioned_names(question, passages))


# -- fitting ------------------------------------------------------------------------------


def _gated(probes: list[Probe]) -> tuple[list[list[float]], list[list[float]]]:
    """The answerable and unanswerable signals the gate itself would see: probes the names
    rule refuses first never reach it, and weighing them teaches the gate a difference (a
    name the passages lack) that is already decided. Where too few unanswerable probes pass
    the names rule to place a model, all of them are used."""
    ok = [p.answerable for p in probes if p.answerable is not None and p.answerable_named]
    no = [p.unanswerable for p in probes if p.unanswerable is not None and p.unanswerable_named]
    if len(no) < MIN_PAIRS:
        no = [p.unanswerable for p in probes if p.unanswerable is not None]
    if len(ok) < MIN_PAIRS:
        ok = [p.answerable for p in probes if p.answerable is not None]
    return ok, no


def _arrays(probes: list[Probe]) -> tuple[np.ndarray, np.ndarray]:
    """Signal rows and labels (1: answerable) of the probes that reach the gate."""
    ok, no = _gated(probes)
    return np.array(ok + no), np.array([1.0] * len(ok) + [0.0] * len(no))


def _fit_gate(
    probes: list[Probe], target: float, features: tuple[str, ...]
) -> tuple[AnswerabilityModel, float]:
    """The model, and the threshold under which `target` of the answerable probes that reach
    the gate fall."""
    x, y = _arrays(probes)
    model = fit(x, y, features)
    ok, _ = _gated(probes)
    answerable = [model.score(signals_of(v, features)) for v in ok]
    return model, float(np.quantile(answerable, target))


def signals_of(values: list[float], features: tuple[str, ...]) -> Signals:
    """Signals from a probe's stored vector (the weighed features; the others read as 0)."""
    shown = {f.name: 0.0 for f in fields(Signals)}
    return Signals(**(shown | dict(zip(features, values, strict=True))))


def _two_fold(
    probes: list[Probe], target: float, features: tuple[str, ...], seed: int
) -> dict[str, Any]:
    """Fit on the probes of half the documents, score the other half, and the other way round."""
    docs = sorted({p.doc_id for p in probes})
    random.Random(seed).shuffle(docs)
    halves = [set(docs[::2]), set(docs[1::2])]
    refused_ok, refused_no, n_ok, n_no = 0, 0, 0, 0
    by_kind: dict[str, list[bool]] = {}
    for train, test in (halves, halves[::-1]):
        fit_on = [p for p in probes if p.doc_id in train]
        scored = [p for p in probes if p.doc_id in test]
        if sum(p.answerable is not None for p in fit_on) < 2 or not scored:
            continue
        model, threshold = _fit_gate(fit_on, target, features)
        for p in scored:  # the names rule refuses first, as in the chain
            if p.answerable is not None:
                n_ok += 1
                refused_ok += (
                    not p.answerable_named
                    or model.score(signals_of(p.answerable, features)) < threshold
                )
            if p.unanswerable is not None:
                no = (
                    not p.unanswerable_named
                    or model.score(signals_of(p.unanswerable, features)) < threshold
                )
                n_no += 1
                refused_no += no
                by_kind.setdefault(p.kind, []).append(no)
    return {
        "answerable_refused": round(refused_ok / n_ok, 4) if n_ok else None,
        "answerable_probes": n_ok,
        "unanswerable_refused": round(refused_no / n_no, 4) if n_no else None,
        "unanswerable_probes": n_no,
        "unanswerable_refused_by_kind": {
            k: round(sum(v) / len(v), 4) for k, v in sorted(by_kind.items())
        },
        "how": "two folds by document: fitted on one half's probes, counted on the other's",
    }


def calibrate(
    index: Index,
    embedder: Embedder,
    settings: Settings,
    documents: dict[str, str],
    previous: Calibration | None = None,
    changed: set[str] | None = None,
    show_progress: bool = False,
    kinds: tuple[str, ...] = NEAR_MISS_KINDS,
) -> Calibration:
    """Fit the gate for this index version; with `previous` and few `changed` documents, the
    probes of unchanged documents are kept and only the changed ones are measured anew
    (`kinds`: the near-miss probes made besides the leave-one-document-out ones)."""
    start = time.perf_counter()
    if len(documents) < MIN_DOCUMENTS:
        raise CalibrationError(
            f"index {index.name!r} has {len(documents)} document(s); calibration leaves one "
            f"out and needs at least {MIN_DOCUMENTS}"
        )
    count = settings.calibration_probes
    features = SIGNAL_SETS[settings.calibration_signals]
    chunks_of = {d: int(v.get("chunks", 0)) for d, v in index.manifest["documents"].items()}
    reused: list[Probe] = []
    todo: set[str] | None = None
    # Probes measured with another signal set cannot be weighed with this one: measure anew.
    if previous is not None and changed is not None and previous.model.features == features:
        share = len(changed) / len(documents)
        if share < INCREMENTAL_SHARE:
            reused = [
                p for p in previous.probes if p.doc_id in documents and p.doc_id not in changed
            ]
            todo = changed & set(documents)
            count = max(0, round(count * len(todo) / len(documents)))
    pairs = probe_questions(documents, count, seed=len(documents), only=todo) if count else []
    probes = reused + _measure_probes(
        pairs, index, embedder, settings, chunks_of, features, documents, kinds, show_progress
    )
    answerable = sum(p.answerable is not None for p in probes)
    if answerable < MIN_PAIRS:
        raise CalibrationError(
            f"index {index.name!r}: only {answerable} probe question(s) found their own "
            f"document (at least {MIN_PAIRS} are needed); the documents may be too short"
        )
    unanswerable = sum(p.unanswerable is not None for p in probes)
    if unanswerable < MIN_PAIRS:
        raise CalibrationError(
            f"index {index.name!r}: only {unanswerable} probe question(s) lost their answer "
            f"without their document (at least {MIN_PAIRS} are needed); the documents repeat "
            "each other's facts too much to tell what an unanswerable question looks like"
        )
    target = settings.calibration_false_refusal
    model, threshold = _fit_gate(probes, target, features)
    checked = _two_fold(probes, target, features, seed=0)
    seconds = time.perf_counter() - start
    gate = FittedGate(
        index=index.name,
        version=index.version,
        model=model,
        threshold=threshold,
        target_false_refusal=target,
        why=_why(probes, settings.calibration_signals, target, kinds),
        figures=_figures(probes, model, target, checked, seconds, len(reused)),
    )
    return Calibration(gate, checked, probes, seconds, reused_probes=len(reused))


def _why(probes: list[Probe], signals: str, target: float, kinds: tuple[str, ...]) -> str:
    """How the gate was fitted, in the words `rag indexes` shows."""
    near = Counter(p.kind for p in probes if p.kind != "document")
    found = ", ".join(f"{n} {k}" for k, n in sorted(near.items()))
    said = f" and {found} near-miss" if near else ""
    if kinds and not near:
        said = " (no near-miss probe found: it knows only questions about absent documents)"
    documents = sum(p.kind == "document" for p in probes)
    return (
        f"calibrated on {documents} probe questions{said}, {signals} signals, "
        f"for {target:.0%} false refusal"
    )


def _figures(
    probes: list[Probe],
    model: AnswerabilityModel,
    target: float,
    checked: dict[str, Any],
    seconds: float,
    reused: int,
) -> dict[str, Any]:
    """What `rag index` and `rag indexes` show of a calibration besides the rule itself."""
    signals = next(k for k, v in SIGNAL_SETS.items() if v == model.features)
    return {
        "state": "calibrated",
        "signals": signals,
        "target_false_refusal": target,
        "probes": sum(p.kind == "document" for p in probes),
        "unanswerable_probes": {
            kind: sum(p.unanswerable is not None and p.kind == kind for p in probes)
            for kind in PROBE_KINDS
        },
        "reused_probes": reused,
        "checked": checked,
        "seconds": round(seconds, 2),
        "weights": dict(zip(model.features, [round(w, 3) for w in model.weights], strict=True)),
    }


# -- where it is kept ---------------------------------------------------------------------


def save_calibration(settings: Settings, calibration: Calibration) -> Path:
    """Written to a temporary file and renamed: a reader sees the old file or the new one."""
    path = calibration_path(settings, calibration.gate.index, calibration.gate.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(calibration.as_dict()))
    os.replace(tmp, path)
    for old in path.parent.glob("*.json"):  # versions the index moved on from
        if old != path and old.stat().st_mtime < path.stat().st_mtime - 3600:
            old.unlink(missing_ok=True)
    return path


def save_fallback(settings: Settings, name: str, version: str, why: str) -> None:
    """Record that this version could not be calibrated, so each load says why (and no load
    tries again): the fixed thresholds are in force for it."""
    path = calibration_path(settings, name, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"format": FORMAT, "fallback": why, "version": version}))
    os.replace(tmp, path)


def read_calibration(settings: Settings, name: str, version: str) -> Calibration:
    """The calibration of a version with its probes, or CalibrationError saying what is wrong."""
    data = read_calibration_file(settings, name, version)
    path = calibration_path(settings, name, version)
    try:
        calibration = Calibration.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(
            f"the calibration file {path} is unreadable ({exc}); "
            "run `rag index` on its corpus again to recalibrate"
        ) from None
    if calibration.gate.version != version or calibration.gate.index != name:
        raise CalibrationError(f"the calibration file {path} belongs to another index version")
    return calibration


def calibrate_index(
    settings: Settings,
    name: str,
    embedder: Embedder,
    documents: dict[str, str],
    *,
    previous_version: str | None = None,
    changed: set[str] | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Calibrate the live version of `name` and keep the result; what `rag index` reports.

    `changed` (ids of documents added, changed or removed since `previous_version`) lets a
    small update keep the other documents' probes. A corpus that cannot be calibrated gets the
    fixed thresholds, and the summary says why.
    """
    from rag.store import load_index

    if settings.refusal_gate == "fixed":
        return fixed_gate(settings, "RAG_REFUSAL_GATE=fixed").describe()
    if settings.calibration_probes == 0:
        return fixed_gate(settings, "fallback: RAG_CALIBRATION_PROBES=0").describe()
    index = load_index(settings, name)
    try:
        previous = None
        if previous_version and changed is not None:
            with contextlib.suppress(CalibrationError):
                previous = read_calibration(settings, name, previous_version)
        calibration = calibrate(
            index, embedder, settings, documents, previous, changed, show_progress
        )
        save_calibration(settings, calibration)
        return calibrated_gate(settings, calibration.gate).describe() | calibration.gate.figures
    except CalibrationError as exc:
        log.warning("%s; this index refuses by the fixed thresholds", exc)
        save_fallback(settings, name, index.version, str(exc))
        return fixed_gate(settings, f"fallback: {exc}").describe()
    finally:
        index.close()
