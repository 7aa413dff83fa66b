"""What every benchmark part shares: where the corpora are, a stopwatch, a target record."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON_REFERENCE = REPO / "corpora" / "python-reference"
COVIDQA = REPO.parent / "shared" / "data" / "covidqa-dev"


@dataclass
class Target:
    """One goal of the issue: the measured ratio or value, the bar it must clear, and whether."""

    name: str
    value: float
    goal: str
    met: bool

    def as_dict(self) -> dict:
        return asdict(self) | {"value": round(self.value, 4)}


@contextmanager
def stopwatch():
    """`with stopwatch() as t: ...` then `t()` is the elapsed seconds (final once it exits)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def quiet() -> None:
    """No progress bars or library chatter in the benchmark's output."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")
