"""bench/gpu.sh's table: the README's covidqa-dev columns, plus each run's device and s/step."""

from __future__ import annotations

from bench.gpu import finetune_cell, table


def interval(mean: float) -> dict[str, float]:
    return {"mean": mean, "low": mean - 0.05, "high": mean + 0.05}


def system(containment: float, f1: float, held: float | None, main: float) -> dict:
    return {
        "containment": interval(containment),
        "f1": interval(f1),
        "abstention_on_held_out": held,
        "abstained_on_main": main,
    }


def ft_run(steps: int, seconds: float, passes: float, device: str) -> dict:
    return {
        "steps": steps,
        "seconds": seconds,
        "passes": passes,
        "device": device,
        "converged": False,
        "config": {"recipe": "cpt"},
        "curve_ends": {
            "start": {"fit": 0.03, "test": {"all": 0.0}},
            "end": {"fit": 0.5, "test": {"all": 0.25}},
        },
    }


RESULTS = {
    "systems": {
        "closed": system(0.005, 0.10, 0.0, 0.0),
        "rag": system(0.325, 0.235, 0.64, 0.11),
        "ft": system(0.015, 0.117, 0.0, 0.0),
    },
    "prepare": {"index": {"seconds": 130.0}, "ft": ft_run(314, 31.4, 1.11, "cuda")},
}


def test_the_fine_tuning_cell_says_state_steps_passes_fit_and_test():
    cell = finetune_cell(RESULTS["prepare"]["ft"])
    assert cell == "not converged: 314 steps (1.11 passes), fit 3% -> 50%, test 0% -> 25%"
    assert finetune_cell({}) == ""


def test_the_table_has_a_row_per_system_with_device_and_seconds_per_step():
    header, rule, closed, rag, ft = table(RESULTS)
    assert header.count("|") == rule.count("|") == 9
    assert closed.startswith("| closed | 0.5% [-4.5%, 5.5%] | 10.0% | 0 |")
    assert "| 130 |" in rag and "| 64% / 11% |" in rag
    assert ft.startswith("| ft (cpt) | 1.5% ")
    assert ft.endswith("| 0% / 0% | cuda | 0.100 |")
