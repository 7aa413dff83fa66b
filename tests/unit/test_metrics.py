"""Metrics against worked examples, including SQuAD's normalisation edge cases."""

from __future__ import annotations

import pytest

from rag.evaluation.metrics import (
    bootstrap,
    containment,
    exact_match,
    f1_score,
    normalize_answer,
    paired_bootstrap,
)
from rag.evaluation.retrieval import recall_at_k, reciprocal_rank, unique_in_order


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("The Cat!", "cat"),
        ("  a  dog,  AN apple ", "dog apple"),
        ("theory of the mind", "theory of mind"),  # 'the' inside words stays
        ("U.S.A.", "usa"),
        ("", ""),
        ("12,000 people", "12000 people"),
    ],
)
def test_squad_normalisation(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal


def test_exact_match_takes_the_best_gold_answer() -> None:
    assert exact_match("The Eiffel Tower.", ["eiffel tower", "tower"]) == 1.0
    assert exact_match("Eiffel", ["eiffel tower"]) == 0.0


def test_f1_worked_examples() -> None:
    # pred tokens: [cat, sat, on, mat]; gold: [cat, on, mat]: precision 3/4, recall 1 -> 6/7
    assert f1_score("the cat sat on the mat", ["a cat on the mat"]) == pytest.approx(6 / 7)
    assert f1_score("dog", ["cat"]) == 0.0
    assert f1_score("the", ["a"]) == 1.0, "both normalise to empty"
    assert f1_score("cat", ["dog", "cat"]) == 1.0
    assert f1_score("cat cat", ["cat"]) == pytest.approx(2 / 3)


def test_containment() -> None:
    assert containment("It weighs 126 pounds.", ["126"]) == 1.0
    assert containment("It weighs 1260 pounds.", ["126"]) == 0.0, "whole tokens only"
    assert containment("anything", [""]) == 0.0


def test_bootstrap_interval_brackets_the_mean() -> None:
    values = [1.0] * 30 + [0.0] * 70
    interval = bootstrap(values, seed=1)
    assert interval.mean == pytest.approx(0.3)
    assert 0.18 < interval.low < 0.3 < interval.high < 0.42
    assert bootstrap([1.0, 1.0]).low == 1.0
    assert bootstrap([]).n == 0


def test_paired_bootstrap_difference() -> None:
    a, b = [1.0] * 50 + [0.0] * 50, [0.0] * 100
    diff = paired_bootstrap(a, b, seed=3)
    assert diff.mean == pytest.approx(0.5) and diff.low > 0.35
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_retrieval_metrics() -> None:
    ranked = ["d3", "d1", "d1", "d7"]
    assert recall_at_k(ranked, "d1", 2) == 1.0 and recall_at_k(ranked, "d7", 3) == 0.0
    assert reciprocal_rank(unique_in_order(ranked), "d7") == pytest.approx(1 / 3)
    assert reciprocal_rank(ranked, "d9") == 0.0
