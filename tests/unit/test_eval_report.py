"""The verdict per kind and the report's fine-tuning section and curves, from made-up results."""

from __future__ import annotations

from pathlib import Path

from rag.evaluation.report import draw_curves, markdown
from rag.evaluation.run import verdict_by_kind


def scores(values: list[int], kinds: list[str]) -> list[dict]:
    return [
        {"containment": float(v), "score": float(v), "kind": k}
        for v, k in zip(values, kinds, strict=True)
    ]


KINDS = ["memorization"] * 20 + ["comparison"] * 20
RESULTS = {"prepare": {"index": {"seconds": 1.0}, "ft": {"seconds": 100.0}}}


def test_the_verdict_names_the_winner_of_each_kind_and_says_where_ft_beats_rag():
    by_system = {
        "rag": scores([1] * 18 + [0] * 2 + [0] * 20, KINDS),
        "ft": scores([0] * 20 + [1] * 20, KINDS),
    }
    verdict = verdict_by_kind(RESULTS, by_system, seed=0)
    assert verdict["memorization"]["best"] == "rag"
    assert verdict["memorization"]["rag_minus"]["ft"]["winner"] == "rag"
    assert verdict["comparison"]["best"] == "ft"
    assert verdict["comparison"]["beats_rag"] == ["ft"]
    assert verdict["_prep_seconds"] == {"rag": 1.0, "ft": 100.0}
    assert verdict["_statement"].startswith("ft beats rag on comparison questions by 100.0%")


def test_a_tie_is_not_a_win():
    by_system = {"rag": scores([1, 0] * 20, KINDS), "ft": scores([0, 1] * 20, KINDS)}
    verdict = verdict_by_kind(RESULTS, by_system, seed=0)
    assert verdict["memorization"]["rag_minus"]["ft"]["winner"] == "tie"
    assert (
        verdict["_statement"]
        == "No system beats rag on any kind of question (paired 95% intervals)."
    )


def curve_point(step, seconds, fit, test):
    return {"step": step, "seconds": seconds, "loss": 1.0, "fit": fit, "test": test}


def finetune(converged: bool) -> dict:
    curve = [
        curve_point(0, 0.0, 0.0, {"memorization": 0.0, "all": 0.0}),
        curve_point(25, 40.0, 0.97 if converged else 0.6, {"memorization": 0.5, "all": 0.5}),
    ]
    return {
        "seconds": 40.0,
        "check_seconds": 9.0,
        "steps": 25,
        "converged": converged,
        "stopped": "reached the fit target" if converged else "step budget",
        "fit": curve[-1]["fit"],
        "target": 0.95,
        "reused": False,
        "peak_rss_mb": 1.0,
        "size_mb": 1.0,
        "trained_on": "150 question/answer pairs",
        "config": {"recipe": "sft", "method": "lora"},
        "curve": curve,
        "curve_ends": {"start": curve[0], "end": curve[-1]},
    }


def report(ft_converged: bool) -> dict:
    system = {
        "exact_match": {"mean": 0.5, "low": 0.4, "high": 0.6, "n": 2},
        "f1": {"mean": 0.5, "low": 0.4, "high": 0.6, "n": 2},
        "containment": {"mean": 0.5, "low": 0.4, "high": 0.6, "n": 2},
        "score_by_kind": {"memorization": {"mean": 0.5, "low": 0.0, "high": 1.0, "n": 2}},
        "latency_p50_s": 0.1,
        "latency_p95_s": 0.2,
        "abstained_on_main": 0.0,
        "abstention_on_held_out": None,
    }
    return {
        "setup": {
            "dataset": "x/fp",
            "seed": 0,
            "split": "report",
            "questions_in_split": 2,
            "split_rule": "by hash",
            "questions": 2,
            "generated_questions": None,
            "generator": "g",
            "k": 4,
            "held_out_questions": 0,
            "held_out_documents": [],
        },
        "systems": {"closed": system, "ft": system},
        "prepare": {"ft": finetune(ft_converged)},
        "paired": {},
        "git_commit": "abc",
        "versions": {},
    }


def test_the_report_never_calls_an_unconverged_run_converged():
    text = markdown(report(ft_converged=False))
    assert "**no** (step budget)" in text and "**yes**" not in text
    assert "0% → 60% (target 95%)" in text
    assert "split `report`" in text
    assert "**yes**" in markdown(report(ft_converged=True))


def test_the_learning_curves_are_drawn_as_a_png(tmp_path: Path):
    draw_curves(report(ft_converged=True), tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class LocalGenerator:
    name, backend = "smollm2", "transformers"


def test_the_report_says_on_which_backend_each_system_answered():
    import httpx

    from rag.config import Settings
    from rag.evaluation.report import backend_section
    from rag.evaluation.systems import answered_on
    from rag.generators.openai_server import OpenAIServerGenerator, ServedAndTrainable

    url = "http://127.0.0.1:8001/v1"
    with httpx.Client() as client:
        served = OpenAIServerGenerator(client, url, "smol", Settings())
        both = ServedAndTrainable(served, LocalGenerator())  # what rag eval runs with ft
        on = {
            "closed": answered_on(both),
            "rag": answered_on(both),
            "ft": answered_on(LocalGenerator(), trained=True),
            "ft+rag": answered_on(LocalGenerator(), trained=True),
        }
    assert on["rag"] == f"openai {url} model smol"
    assert on["ft"] == "transformers (local, trained)"
    assert answered_on(LocalGenerator()) == "transformers (local)"
    assert backend_section(on) == [
        "",
        f"Answered by: closed, rag on openai {url} model smol; "
        "ft, ft+rag on transformers (local, trained).",
    ]
    assert backend_section(None) == []  # reports written before the field existed
