"""What each answer-time refusal rule would do, read off `rag eval` predictions (no model runs).

    python -m bench.refusal_rules reports/panel/*/

For the `rag` system's predictions in each output folder, the rules below decide which replies
become refusals; printed per folder: unanswerable questions refused (the dataset's own and the
held-out documents'), answerable questions refused, and the answer score of the answerable ones
(a refusal scores 0). Every rule only turns answers into refusals, so the figures are exact, not
estimates: the replies it keeps are the ones already scored.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Callable
from pathlib import Path

from rag.evaluation.data import load_dataset
from rag.evidence import missing_shape, shared_terms

UNKNOWN = "the model found no answer"
QUOTE = re.compile(r'"(.*)" \[\d+\]', re.DOTALL)
Rule = Callable[[dict], bool]


def quoted(p: dict) -> str:
    match = QUOTE.search(p["reply"])
    return match.group(1) if match else ""


def shapeless(p: dict) -> bool:
    return p["quoted"] and missing_shape(p["question"], quoted(p)) is not None


def terms_below(share: float) -> Rule:
    return lambda p: p["quoted"] and shared_terms(p["question"], quoted(p)) < share


RULES: dict[str, Rule] = {
    "in force (quote when the draft is unusable)": lambda p: False,
    "refuse when the model says it does not know": lambda p: (
        p["quoted"] and (p["reason"] or "").startswith(UNKNOWN)
    ),
    "refuse instead of any quote": lambda p: p["quoted"],
    "refuse a quote without the asked shape": shapeless,
    "refuse a quote with < 50% of the question's terms": terms_below(0.5),
    "refuse a quote with < 34% of the question's terms": terms_below(0.34),
    "shape, or < 34% of the terms": lambda p: shapeless(p) or terms_below(0.34)(p),
    "refuse any reply without the asked shape": lambda p: (
        missing_shape(p["question"], quoted(p) if p["quoted"] else p["reply"]) is not None
    ),
}


def refuses(rule: Rule, p: dict) -> bool:
    return p["abstained"] or bool(rule(p))


def figures(rows: list[dict], rule: Rule) -> tuple[float, float, float, int, int]:
    main = [p for p in rows if p["slice"] == "main"]
    none = [p for p in rows if p["slice"] in ("unanswerable", "held-out")]
    refused_none = statistics.fmean(refuses(rule, p) for p in none) if none else float("nan")
    refused_main = statistics.fmean(refuses(rule, p) for p in main) if main else float("nan")
    score = statistics.fmean(0.0 if refuses(rule, p) else p["score"] for p in main) if main else 0.0
    return refused_none, refused_main, score, len(none), len(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="rag eval --out folders")
    parser.add_argument("--system", default="rag")
    args = parser.parse_args()
    print("run                rule                                          unans.  ans.   score")
    for run in args.runs:
        path = run / "predictions.jsonl"
        if not path.is_file():
            continue
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        setup = json.loads((run / "results.json").read_text())["setup"]
        asked = {q.id: q.question for q in load_dataset(Path(setup["dataset"])).test}
        rows = [
            p | {"question": asked.get(p["question_id"], "")}
            for p in rows
            if p["system"] == args.system and p["question_id"] in asked
        ]
        for name, rule in RULES.items():
            none, main_, score, n_none, n_main = figures(rows, rule)
            print(
                f"{run.name:18s} {name:45s} {none:6.0%} {main_:6.0%} {score:6.1%}"
                f"  (n={n_none}/{n_main})"
            )


if __name__ == "__main__":
    main()
