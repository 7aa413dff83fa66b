"""Does a question's answer stand in its passages? Signals, and the model that weighs them.

A question about a document missing from the index still retrieves passages on its topic, so
no single fixed threshold on one score tells the two apart across corpora: the gate reads a
few signals of the retrieval and of the best-matching sentence, and weighs them with a small
logistic model fitted on the index's own probe questions (rag/calibration.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rag.focus import Sentence, split_sentences
from rag.retrieval import Passage, query_terms

# Signals the model weighs, by RAG_CALIBRATION_SIGNALS. `full` (the default) reads the best
# sentence, whose cosine needs every sentence the probes retrieve embedded: nearly all of
# calibration's time. `lexical` needs no sentence embedded (a calibration about 15x cheaper)
# and weighs the largest share of the question's words in one sentence instead. Measured with
# bench/refusal.py (unanswerable / answerable refused): on the tune halves lexical matched
# full (covidqa-dev 59%/14% against 61%/12%, fictional-people 100%/8% against 100%/0%), but on
# covidqa-dev's report half it refused 34% of the answerable questions (full: 15%), so it is
# not the default. Adding best_words to full changed nothing on the tune halves (59%/13%).
# Two more signals were measured and left out: the share of the question's words anywhere in
# the passages, and `rare_words` (its longest words found in them). Probes are made of their
# document's words, so answerable probes always score 1.0 on both, while real questions use
# words the documents lack (rare_words 0.74 on average on fictional-people's answerable
# questions): weighed, they refused a third of the answerable questions there (33%; 21%
# without rare_words, covidqa-dev 16% -> 14%).
SIGNAL_SETS: dict[str, tuple[str, ...]] = {
    "full": ("dense", "sentence", "sentence_words", "pinned"),
    "lexical": ("dense", "best_words", "pinned"),
}
RANKED = {"sentence", "sentence_words"}  # the signals that need the sentences embedded


def needs_ranking(features: tuple[str, ...]) -> bool:
    return bool(RANKED & set(features))


STEM = 5  # "weighs" and "weigh", "infects" and "infection": the same word to a question


def stems(text: str) -> set[str]:
    """The text's meaningful words, cut to their first letters so that inflections match."""
    return {word[:STEM] for word in query_terms(text)}


@dataclass(frozen=True)
class Signals:
    """What the gate measures of one question against its passages (each in [0, 1] or so)."""

    dense: float  # best passage cosine to the question
    sentence: float  # best sentence's cosine to the question (no lexical bonus; 0: not ranked)
    sentence_words: float  # share of the question's words in that sentence (0: not ranked)
    best_words: float  # the largest share of the question's words in any one passage sentence
    rare_words: float  # share of its longest words found in the passages (shown, not weighed)
    pinned: float  # 1.0 when a name of the question is known to the index only from these

    def vector(self, features: tuple[str, ...]) -> np.ndarray:
        return np.array([getattr(self, f) for f in features], dtype=np.float64)

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def measure(
    question: str,
    passages: list[Passage],
    ranked: list[Sentence] | None,
    lexical_weight: float,
    pinned: bool,
) -> Signals:
    """Signals from what the gate already computed: passages and their ranked sentences
    (None: not ranked, as a lexical calibration leaves them; the sentence signals read 0)."""
    terms = set(query_terms(question))
    best = ranked[0] if ranked else None
    if best is None or not terms:
        share = 0.0
    else:
        share = len(terms & set(query_terms(best.text))) / len(terms)
    cosine = (best.score - lexical_weight * share) if best else 0.0
    seen = (
        set().union(*(query_terms(p.title + " " + p.text) for p in passages)) if passages else set()
    )
    best_words = (
        max(
            (
                len(terms & set(query_terms(t))) / len(terms)
                for p in passages
                for t in split_sentences(p.text)
            ),
            default=0.0,
        )
        if terms
        else 0.0
    )
    rare = sorted(terms, key=len, reverse=True)[: max(1, len(terms) // 3)] if terms else []
    return Signals(
        dense=max((p.similarity for p in passages), default=0.0),
        sentence=float(cosine),
        sentence_words=share,
        best_words=best_words,
        rare_words=sum(t in seen for t in rare) / len(rare) if rare else 0.0,
        pinned=1.0 if pinned else 0.0,
    )


@dataclass(frozen=True)
class AnswerabilityModel:
    """Logistic regression over standardized signals: P(the passages hold the answer)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def score(self, signals: Signals) -> float:
        x = (signals.vector(self.features) - np.asarray(self.mean)) / np.asarray(self.scale)
        z = float(x @ np.asarray(self.weights) + self.bias)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnswerabilityModel:
        model = cls(
            features=tuple(data["features"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            weights=tuple(float(v) for v in data["weights"]),
            bias=float(data["bias"]),
        )
        sizes = {len(model.mean), len(model.scale), len(model.weights)}
        if model.features not in SIGNAL_SETS.values() or sizes != {len(model.features)}:
            known = " or ".join(str(v) for v in SIGNAL_SETS.values())
            raise ValueError(f"the model's features are {model.features}, expected {known}")
        if not all(math.isfinite(v) for v in (*model.mean, *model.weights, model.bias)):
            raise ValueError("the model holds a value that is not a finite number")
        if not all(v > 0 for v in model.scale):
            raise ValueError("the model's feature scales must be positive")
        return model


def fit(
    x: np.ndarray,
    y: np.ndarray,
    features: tuple[str, ...],
    l2: float = 1.0,
    steps: int = 500,
    rate: float = 0.5,
) -> AnswerabilityModel:
    """Fit by gradient descent on the mean log-loss plus an L2 penalty (weights only).

    Numpy alone: a few hundred probes and six features need no library, and the penalty keeps
    weights small where the probes cannot tell a feature's sign apart.
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    w = np.zeros(z.shape[1])
    b = 0.0
    n = len(y)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        gw = z.T @ (p - y) / n + l2 * w / n
        gb = float(np.mean(p - y))
        w -= rate * gw
        b -= rate * gb
    return AnswerabilityModel(
        features,
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        tuple(float(v) for v in w),
        float(b),
    )
