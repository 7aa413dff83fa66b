"""One table from several `rag eval --systems naive,rag` runs: the panel, side by side.

    python -m bench.panel reports/panel/*/

Per run: the dataset, the metric it is scored by, the answerable questions, naive and rag's
answer score (with rag - naive, paired, and its 95% interval), rag's refusal of unanswerable
and answerable questions, its quoted share, the answer steps it chose and each system's p50
seconds per answer; conversations on a second line where the dataset has them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rag.evaluation.metrics import paired_bootstrap


def row(run: Path) -> list[str]:
    results = json.loads((run / "results.json").read_text())
    setup, systems = results["setup"], results["systems"]
    naive, rag = systems["naive"], systems["rag"]
    preds = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    main = {
        s: [p["score"] for p in preds if p["system"] == s and p["slice"] == "main"]
        for s in ("naive", "rag")
    }
    diff = paired_bootstrap(main["rag"], main["naive"])
    refusal = rag["refusal"]
    steps = (setup.get("answer_steps") or {}).get("rag") or {}
    for kept in sorted((run / "index" / ".answer-steps").glob("*/*.json"))[:1]:
        steps = steps or {"steps": json.loads(kept.read_text())["chosen"]}  # runs before 2bf8552
    quoted = rag.get("quoted") or {}
    out = [
        Path(setup["dataset"]).name,
        setup["metric"],
        str(setup["questions"]),
        f"{naive['score']['mean']:.1%}",
        f"**{rag['score']['mean']:.1%}**",
        f"{diff.mean:+.1%} [{diff.low:+.1%}, {diff.high:+.1%}]",
        f"{refusal['unanswerable_refused']['mean']:.0%} (n={refusal['unanswerable_refused']['n']})",
        f"{refusal['answerable_refused']['mean']:.0%}",
        f"{quoted.get('share', 0):.0%}",
        str(steps.get("steps", "-")).split(":")[0],
        f"{naive['latency_p50_s']:.1f} / {rag['latency_p50_s']:.1f}",
    ]
    return out


def conversation_row(run: Path) -> list[str] | None:
    systems = json.loads((run / "results.json").read_text())["systems"]
    if not systems["rag"].get("conversations"):
        return None
    n, r = systems["naive"]["conversations"], systems["rag"]["conversations"]
    return [
        f"{run.name} conversations",
        "f1",
        str(r["f1"]["n"]),
        f"{n['f1']['mean']:.1%}",
        f"**{r['f1']['mean']:.1%}**",
        f"{r['f1']['mean'] - n['f1']['mean']:+.1%}",
        f"{r['unanswerable_refused']['mean']:.0%} (n={r['unanswerable_refused']['n']})",
        f"{r['answerable_refused']['mean']:.0%}",
        "",
        "",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    print(
        "| dataset | metric | n | naive | rag | rag - naive [95% CI] | unanswerable refused "
        "| answerable refused | quoted | steps chosen | p50 s naive / rag |"
    )
    print("|---" * 11 + "|")
    for run in args.runs:
        if not (run / "results.json").is_file():
            continue
        print("| " + " | ".join(row(run)) + " |")
        if conv := conversation_row(run):
            print("| " + " | ".join(conv) + " |")


if __name__ == "__main__":
    main()
