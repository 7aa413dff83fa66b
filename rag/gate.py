"""The answer-time gate: refuse before generating when the passages do not hold the answer.

Index-time calibration (rag/calibration.py) measures the index on its own probe questions and
hands the gate one typed record, a `FittedGate`: the model that weighs the signals, its
threshold, and how it was fitted. This module reads that record (never the probes), measures a
question's signals the same way calibration did, and decides; where no record can be used it
falls back to the fixed thresholds and says why.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.answerability import SIGNAL_SETS, AnswerabilityModel, Signals, measure
from rag.errors import RagError
from rag.focus import Encoder, Sentence, rank_sentences
from rag.grounding import pinned_names
from rag.retrieval import Passage

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.store import Index

log = logging.getLogger(__name__)

# 4: the fitted gate kept apart from the probes ("gate"), probes carry their kind (near misses)
FORMAT = 4


class CalibrationError(RagError):
    """The calibration of an index could not be made or read; the gate falls back."""


@dataclass(frozen=True)
class FittedGate:
    """What calibration hands the gate: the model, its threshold, and how they were chosen."""

    index: str
    version: str
    model: AnswerabilityModel
    threshold: float
    target_false_refusal: float
    why: str  # in words: the probes, the signal set, the target
    figures: dict[str, Any] = field(default_factory=dict)  # shown by `rag indexes`

    @property
    def signals(self) -> str:
        """The name of the signal set the model weighs (RAG_CALIBRATION_SIGNALS)."""
        return next(k for k, v in SIGNAL_SETS.items() if v == self.model.features)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"model": self.model.as_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FittedGate:
        threshold = float(data["threshold"])
        if not 0.0 <= threshold <= 1.0 or math.isnan(threshold):
            raise ValueError(f"threshold {threshold} is outside [0, 1]")
        return cls(
            index=str(data["index"]),
            version=str(data["version"]),
            model=AnswerabilityModel.from_dict(data["model"]),
            threshold=threshold,
            target_false_refusal=float(data["target_false_refusal"]),
            why=str(data["why"]),
            figures=dict(data.get("figures") or {}),
        )


# -- where it is kept ---------------------------------------------------------------------


def calibration_path(settings: Settings, name: str, version: str) -> Path:
    """Beside the index, not in the model cache: a cache shared between index roots would
    hand one root's calibration to another root's index of the same name and version."""
    return settings.index_root / ".calibration" / name / f"{version}.json"


def read_calibration_file(settings: Settings, name: str, version: str) -> dict[str, Any]:
    """The calibration file of a version as JSON, or CalibrationError saying what is wrong."""
    path = calibration_path(settings, name, version)
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise CalibrationError(
            f"no calibration for index {name!r} version {version} ({path}); "
            f"run `rag index` on its corpus again to calibrate it"
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CalibrationError(
            f"the calibration file {path} is unreadable ({exc}); "
            "run `rag index` on its corpus again to recalibrate"
        ) from None
    if isinstance(data, dict) and "fallback" in data:
        raise CalibrationError(str(data["fallback"]))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise CalibrationError(
            f"the calibration file {path} is of format {found!r}, this version reads {FORMAT} "
            "(earlier ones had no near-miss probes); run `rag index` on its corpus again to "
            "recalibrate (nothing is re-embedded)"
        )
    return data


def read_gate(settings: Settings, name: str, version: str) -> FittedGate:
    """The fitted gate of a version, or CalibrationError saying what is wrong with it."""
    data = read_calibration_file(settings, name, version)
    path = calibration_path(settings, name, version)
    try:
        fitted = FittedGate.from_dict(data["gate"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(
            f"the calibration file {path} is unreadable ({exc}); "
            "run `rag index` on its corpus again to recalibrate"
        ) from None
    if fitted.version != version or fitted.index != name:
        raise CalibrationError(f"the calibration file {path} belongs to another index version")
    return fitted


def is_recorded_fallback(settings: Settings, name: str, version: str) -> bool:
    """Whether calibration recorded that this version cannot be calibrated (and why)."""
    try:
        data = json.loads(calibration_path(settings, name, version).read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "fallback" in data


# -- the signals, as calibration measured them ------------------------------------------------


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


# -- the rule in force ----------------------------------------------------------------------


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


def calibrated_gate(settings: Settings, fitted: FittedGate) -> Gate:
    """The gate a fitted record gives, with RAG_REFUSAL_THRESHOLD overriding its threshold."""
    if settings.refusal_threshold is not None:
        why = (
            "calibrated model, threshold set by RAG_REFUSAL_THRESHOLD "
            f"(calibrated: {fitted.threshold:.4f})"
        )
        return Gate("calibrated", why, settings.refusal_threshold, fitted.model)
    return Gate("calibrated", fitted.why, fitted.threshold, fitted.model)


def load_gate(settings: Settings, name: str, version: str) -> Gate:
    """The calibrated gate of this version, or the fixed thresholds, saying why (never silent)."""
    return _load(settings, name, version)[0]


def _load(settings: Settings, name: str, version: str) -> tuple[Gate, FittedGate | None]:
    if settings.refusal_gate == "fixed":
        return fixed_gate(settings, "RAG_REFUSAL_GATE=fixed"), None
    try:
        fitted = read_gate(settings, name, version)
    except CalibrationError as exc:
        if is_recorded_fallback(settings, name, version):
            log.info("%s; this index refuses by the fixed thresholds", exc)
        else:
            log.warning("%s; refusing by the fixed thresholds meanwhile", exc)
        return fixed_gate(settings, f"fallback: {exc}"), None
    return calibrated_gate(settings, fitted), fitted


def describe_calibration(settings: Settings, name: str, version: str) -> dict[str, Any]:
    """What `rag indexes` and `/indexes` show: the calibration, or which fallback is in force."""
    gate, fitted = _load(settings, name, version)
    out = gate.describe()
    if fitted is not None:
        out |= fitted.figures
    return out
