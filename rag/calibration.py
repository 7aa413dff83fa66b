"""What "no answer here" looks like for one index, measured on the index itself.

A fixed cosine or word-overlap threshold chosen on one corpus does not transfer to another, so
each index version is calibrated on probe questions made from its own documents: a probe from
document D asked of the whole index is answerable; asked of the index without D (D's chunks
left out of the results) it is not. The gate's signals (rag/answerability.py) are weighed by a
logistic model fitted on those pairs, and the threshold set so that a target share of the
answerable probes would be refused. The result is kept as JSON beside the index (one file per
version, under the index root), updated rather than redone when few documents change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.answerability import (
    SIGNAL_SETS,
    AnswerabilityModel,
    Signals,
    fit,
    measure,
    needs_ranking,
    stems,
)
from rag.errors import RagError
from rag.focus import Encoder, Sentence, rank_sentences, split_sentences
from rag.grounding import pinned_names, unmentioned_names
from rag.progress import progress
from rag.retrieval import Passage, query_terms, retrieve
from rag.store.layout import now

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.embeddings import Embedder
    from rag.store import Index

log = logging.getLogger(__name__)

FORMAT = 3  # 2: without rare_words, unanswerable probes may be None; 3: the names rule
MIN_DOCUMENTS = 3  # leaving one out must leave at least two to retrieve from
MIN_PAIRS = 8  # fewer probes than this cannot place a threshold
INCREMENTAL_SHARE = 0.1  # below this share of documents changed, keep the other probes
HELD_ELSEWHERE = 0.6  # share of a probe's hidden words one other sentence must state
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
QUESTION_WORDS = ("What", "Which", "How", "Who", "When", "Where")


class CalibrationError(RagError):
    """The calibration of an index could not be made or read; the gate falls back."""


@dataclass
class Probe:
    """One probe question and the signals it gave with its document and without it."""

    doc_id: str
    question: str
    answerable: list[float] | None  # None: retrieval missed the document even with it there
    unanswerable: list[float] | None  # None: the other documents hold its sentence's facts too
    # whether the chain's names rule lets it reach the gate (False: refused before it)
    answerable_named: bool = True
    unanswerable_named: bool = True


@dataclass
class Calibration:
    """A fitted gate for one index version, and how well it did on held-out probes."""

    index: str
    version: str
    model: AnswerabilityModel
    threshold: float
    target_false_refusal: float
    checked: dict[str, Any]  # two-fold estimate: refusal of each kind of probe, with counts
    probes: list[Probe]
    seconds: float
    reused_probes: int = 0
    created_at: str = field(default_factory=now)

    @property
    def signals(self) -> str:
        """The name of the signal set the model weighs (RAG_CALIBRATION_SIGNALS)."""
        return next(k for k, v in SIGNAL_SETS.items() if v == self.model.features)

    def summary(self) -> dict[str, Any]:
        """What `rag indexes` and `/indexes` say of it."""
        return {
            "state": "calibrated",
            "signals": self.signals,
            "threshold": round(self.threshold, 4),
            "target_false_refusal": self.target_false_refusal,
            "probes": len(self.probes),
            "unanswerable_probes": sum(p.unanswerable is not None for p in self.probes),
            "reused_probes": self.reused_probes,
            "checked": self.checked,
            "seconds": round(self.seconds, 2),
            "weights": dict(
                zip(self.model.features, [round(w, 3) for w in self.model.weights], strict=True)
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = self.model.as_dict()
        return {"format": FORMAT, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        threshold = float(data["threshold"])
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold {threshold} is outside [0, 1]")
        model = AnswerabilityModel.from_dict(data["model"])
        probes = [Probe(**p) for p in data["probes"]]
        for p in probes:
            if p.answerable is None and p.unanswerable is None:
                raise ValueError("a probe has no signals")
            for v in (p.answerable, p.unanswerable):
                if v is not None and len(v) != len(model.features):
                    raise ValueError("a probe's signals do not match the model's features")
        return cls(
            index=str(data["index"]),
            version=str(data["version"]),
            model=model,
            threshold=threshold,
            target_false_refusal=float(data["target_false_refusal"]),
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


def gate_signals(
    question: str,
    passages: list[Passage],
    embedder: Encoder,
    index: Index,
    settings: Settings,
    vector: np.ndarray | None = None,
    without: str | None = None,
    rank: bool = True,
) -> tuple[Signals, list[Sentence]]:
    """The signals the chain's gate reads, and the ranked sentences they came from: one
    function for the chain and the calibration, so both measure the same thing (`without`:
    a document calibration reads as absent from the index; `rank=False`: no sentence is
    embedded, and the signals that need them read 0, as a lexical calibration wants)."""
    lexical = settings.focus_lexical_weight
    ranked = rank_sentences(question, passages, embedder, lexical, vector) if rank else None
    pinned = bool(settings.check_names and pinned_names(question, passages, index, without))
    return measure(question, passages, ranked, lexical, pinned), ranked or []


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


def held_elsewhere(sentence: str, question: str, passages: list[Passage]) -> bool:
    """Whether some sentence of `passages` states what the probe's sentence does: most of the
    words the question left out (its likely answer) and its numbers, in one sentence.

    Documents that tell the same facts (pages about one event, a FAQ and its manual) leave a
    probe answerable without its document; counted as unanswerable, such probes taught the gate
    to refuse questions the index does answer.
    """
    hidden = (stems(sentence) - stems(question)) | set(NUMBER.findall(sentence))
    if len(hidden) < 2:
        return False
    for passage in passages:
        for other in split_sentences(passage.text):
            words = stems(other) | set(NUMBER.findall(other))
            if len(hidden & words) >= HELD_ELSEWHERE * len(hidden):
                return True
    return False


def _measure_probes(
    pairs: list[tuple[str, str, str]],
    index: Index,
    embedder: Embedder,
    settings: Settings,
    chunks_of: dict[str, int],
    features: tuple[str, ...],
    show_progress: bool = False,
) -> list[Probe]:
    rank = needs_ranking(features)
    vectors = embedder.encode([q for _, q, _ in pairs]) if pairs else []
    options = {
        "mode": settings.retrieval_mode,
        "rrf_k": settings.rrf_k,
        "dense_weight": settings.dense_weight,
    }
    retrieved = []
    asked = progress(
        zip(pairs, vectors, strict=True),
        total=len(pairs),
        desc="calibrating refusal",
        unit="probe",
        show=show_progress,
    )
    for (doc_id, question, _), vector in asked:
        found = retrieve(
            index,
            embedder,
            question,
            k=settings.k,
            candidates=settings.candidates,
            vector=vector,
            **options,
        )
        # Without D: search as deep as D has chunks, then leave D out.
        deep = settings.k + chunks_of.get(doc_id, 0)
        others = retrieve(
            index,
            embedder,
            question,
            k=deep,
            candidates=max(settings.candidates, deep) + chunks_of.get(doc_id, 0),
            vector=vector,
            **options,
        )
        retrieved.append((found, [p for p in others if p.doc_id != doc_id][: settings.k]))
    cache = SentenceCache(embedder)
    if rank:  # one batched call for every sentence the probes retrieved
        cache.add([t for a, b in retrieved for p in a + b for t in split_sentences(p.text)])
    probes = []
    for (doc_id, question, sentence), vector, (found, others) in zip(
        pairs, vectors, retrieved, strict=True
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
                n_no += 1
                refused_no += (
                    not p.unanswerable_named
                    or model.score(signals_of(p.unanswerable, features)) < threshold
                )
    return {
        "answerable_refused": round(refused_ok / n_ok, 4) if n_ok else None,
        "answerable_probes": n_ok,
        "unanswerable_refused": round(refused_no / n_no, 4) if n_no else None,
        "unanswerable_probes": n_no,
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
) -> Calibration:
    """Fit the gate for this index version; with `previous` and few `changed` documents, the
    probes of unchanged documents are kept and only the changed ones are measured anew."""
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
        pairs, index, embedder, settings, chunks_of, features, show_progress
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
    return Calibration(
        index=index.name,
        version=index.version,
        model=model,
        threshold=threshold,
        target_false_refusal=target,
        checked=_two_fold(probes, target, features, seed=0),
        probes=probes,
        seconds=time.perf_counter() - start,
        reused_probes=len(reused),
    )


# -- where it is kept ---------------------------------------------------------------------


def calibration_path(settings: Settings, name: str, version: str) -> Path:
    """Beside the index, not in the model cache: a cache shared between index roots would
    hand one root's calibration to another root's index of the same name and version."""
    return settings.index_root / ".calibration" / name / f"{version}.json"


def save_calibration(settings: Settings, calibration: Calibration) -> Path:
    """Written to a temporary file and renamed: a reader sees the old file or the new one."""
    path = calibration_path(settings, calibration.index, calibration.version)
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


def is_recorded_fallback(settings: Settings, name: str, version: str) -> bool:
    try:
        data = json.loads(calibration_path(settings, name, version).read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "fallback" in data


def read_calibration(settings: Settings, name: str, version: str) -> Calibration:
    """The calibration of a version, or CalibrationError saying what is wrong with it."""
    path = calibration_path(settings, name, version)
    try:
        data = json.loads(path.read_text("utf-8"))
        if isinstance(data, dict) and "fallback" in data:
            raise CalibrationError(str(data["fallback"]))
        calibration = Calibration.from_dict(data)
    except FileNotFoundError:
        raise CalibrationError(
            f"no calibration for index {name!r} version {version} ({path}); "
            f"run `rag index` on its corpus again to calibrate it"
        ) from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CalibrationError(
            f"the calibration file {path} is unreadable ({exc}); "
            "run `rag index` on its corpus again to recalibrate"
        ) from None
    if calibration.version != version or calibration.index != name:
        raise CalibrationError(f"the calibration file {path} belongs to another index version")
    return calibration


# -- the gate the chain uses --------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """The refusal rule in force for one loaded index, and why that one."""

    kind: str  # "calibrated" or "fixed"
    why: str  # where the rule comes from; for a fallback, what was wrong
    threshold: float
    model: AnswerabilityModel | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def score(self, signals: Signals) -> float:
        """Calibrated: P(answerable). Fixed: the best sentence's cosine + lexical bonus."""
        if self.model is not None:
            return self.model.score(signals)
        return signals.sentence + self.settings["focus_lexical_weight"] * signals.sentence_words

    def refusal(self, signals: Signals) -> str | None:
        """Why the question is refused, or None when the passages may hold its answer."""
        value = self.score(signals)
        if self.model is not None:
            if value < self.threshold:
                return (
                    f"answerability {value:.2f} is below the index's threshold {self.threshold:.2f}"
                )
            return None
        if signals.dense < self.settings["min_score"]:
            return "no passage scored above min_score"
        pinned = self.settings["pinned_names_pass"] and signals.pinned > 0
        if value < self.threshold and not pinned:
            return f"no sentence matched the question closely ({value:.2f})"
        return None

    def describe(self) -> dict[str, Any]:
        return {"gate": self.kind, "why": self.why, "threshold": round(self.threshold, 4)}


def fixed_gate(settings: Settings, why: str) -> Gate:
    keys = ("min_score", "min_sentence_score", "pinned_names_pass", "focus_lexical_weight")
    return Gate(
        "fixed", why, settings.min_sentence_score, None, settings.model_dump(include=set(keys))
    )


def load_gate(settings: Settings, name: str, version: str) -> Gate:
    """The calibrated gate of this version, or the fixed thresholds, saying why (never silent)."""
    if settings.refusal_gate == "fixed":
        return fixed_gate(settings, "RAG_REFUSAL_GATE=fixed")
    try:
        calibration = read_calibration(settings, name, version)
    except CalibrationError as exc:
        if is_recorded_fallback(settings, name, version):
            log.info("%s; this index refuses by the fixed thresholds", exc)
        else:
            log.warning("%s; refusing by the fixed thresholds meanwhile", exc)
        return fixed_gate(settings, f"fallback: {exc}")
    if settings.refusal_threshold is not None:
        why = (
            "calibrated model, threshold set by RAG_REFUSAL_THRESHOLD "
            f"(calibrated: {calibration.threshold:.4f})"
        )
        return Gate("calibrated", why, settings.refusal_threshold, calibration.model)
    why = (
        f"calibrated on {len(calibration.probes)} probe questions, {calibration.signals} "
        f"signals, for {calibration.target_false_refusal:.0%} false refusal"
    )
    return Gate("calibrated", why, calibration.threshold, calibration.model)


def describe_calibration(settings: Settings, name: str, version: str) -> dict[str, Any]:
    """What `rag indexes` and `/indexes` show: the calibration, or which fallback is in force."""
    gate = load_gate(settings, name, version)
    out = gate.describe()
    if gate.kind == "calibrated":
        with contextlib.suppress(CalibrationError):  # replaced since: load_gate said so
            out |= read_calibration(settings, name, version).summary()
    return out


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
        return load_gate(settings, name, calibration.version).describe() | calibration.summary()
    except CalibrationError as exc:
        log.warning("%s; this index refuses by the fixed thresholds", exc)
        save_fallback(settings, name, index.version, str(exc))
        return fixed_gate(settings, f"fallback: {exc}").describe()
    finally:
        index.close()
