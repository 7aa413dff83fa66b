"""Answer-quality metrics (SQuAD normalisation, exact match, token F1, containment) and
bootstrap intervals, including the paired difference between two systems."""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(a) for a in answers))


def f1_score(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD token F1, the best over the gold answers."""
    return max((_f1(prediction, a) for a in answers), default=0.0)


def _f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def containment(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a normalised gold answer appears inside the normalised prediction."""
    norm = f" {normalize_answer(prediction)} "
    return float(any(f" {normalize_answer(a)} " in norm for a in answers if normalize_answer(a)))


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int


def bootstrap(values: Sequence[float], *, samples: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap of the mean (95%)."""
    if not values:
        return Interval(0.0, 0.0, 0.0, 0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(samples))
    return Interval(
        sum(values) / n, means[int(0.025 * samples)], means[int(0.975 * samples) - 1], n
    )


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, samples: int = 2000, seed: int = 0
) -> Interval:
    """Mean of a - b over the same questions, resampling questions (not systems) together."""
    if len(a) != len(b):
        raise ValueError("paired comparison needs the same questions for both systems")
    return bootstrap([x - y for x, y in zip(a, b, strict=True)], samples=samples, seed=seed)
