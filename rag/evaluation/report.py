"""Write an evaluation's results: report.md, results.json, predictions.jsonl, chart.png."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str]:
    names = [
        "torch",
        "transformers",
        "sentence-transformers",
        "faiss-cpu",
        "peft",
        "langchain-core",
    ]
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except Exception:
            found[name] = "absent"
    return found | {"python": platform.python_version()}


def write_report(out: Path, run: dict[str, Any]) -> list[Path]:
    """All four outputs; returns their paths."""
    out = Path(out)
    results = run["results"] | {"versions": versions(), "git_commit": git_commit()}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    with open(out / "predictions.jsonl", "w") as handle:
        for row in run["predictions"]:
            handle.write(json.dumps(row, default=str) + "\n")
    draw_chart(results, out / "chart.png")
    (out / "report.md").write_text(markdown(results))
    return [out / n for n in ("report.md", "results.json", "predictions.jsonl", "chart.png")]


def pct(interval: dict[str, float]) -> str:
    return f"{interval['mean']:.1%} [{interval['low']:.1%}, {interval['high']:.1%}]"


def markdown(r: dict[str, Any]) -> str:
    setup, systems, prep = r["setup"], r["systems"], r["prepare"]
    lines = [
        f"# Retrieval vs fine-tuning: {Path(setup['dataset']).name}",
        "",
        f"**Verdict:** {r['paired'].get('verdict', 'rag and ft were not both run.')}",
        "",
        f"{setup['questions']} questions (seed {setup['seed']}), the same base model "
        f"({setup['generator']}) in every system. Intervals are 95% bootstrap intervals.",
        "",
        "## Answer quality",
        "",
        "| system | exact match | token F1 | answer containment |",
        "|---|---|---|---|",
    ]
    for name, s in systems.items():
        lines.append(
            f"| {name} | {pct(s['exact_match'])} | {pct(s['f1'])} | {pct(s['containment'])} |"
        )
    kinds = sorted({k for s in systems.values() for k in s["containment_by_kind"]})
    lines += [
        "",
        "### Containment by kind of question",
        "",
        "| system | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for name, s in systems.items():
        cells = [f"{s['containment_by_kind'].get(k, float('nan')):.1%}" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    k = setup["k"]
    lines += [
        "",
        "## Retrieval and grounding",
        "",
        f"| system | recall@{k} | MRR@10 | answered and supported |",
        "|---|---|---|---|",
    ]
    for name, s in systems.items():
        if f"recall@{k}" in s:
            lines.append(
                f"| {name} | {s[f'recall@{k}']:.1%} | {s['mrr@10']:.3f} | {s['supported']:.1%} |"
            )
    lines += [
        "",
        "## Abstention",
        "",
        f"On {setup['held_out_questions']} questions about {len(setup['held_out_documents'])} "
        "documents removed from the index and from fine-tuning: how often each system says it "
        "does not know (higher is better).",
        "",
        "| system | abstained (held out) | abstained (answerable) |",
        "|---|---|---|",
    ]
    for name, s in systems.items():
        held = s["abstention_on_held_out"]
        lines.append(
            f"| {name} | {'n/a' if held is None else f'{held:.1%}'} "
            f"| {s['abstained_on_main']:.1%} |"
        )
    lines += [
        "",
        "## Cost",
        "",
        "| system | preparation | prep time (s) | peak RSS (MB) | on disk (MB) "
        "| latency p50 / p95 (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in systems.items():
        kind = "finetune" if name.startswith("ft") else ("index" if name == "rag" else None)
        cells = ["none", "0", "-", "-"]
        if kind and kind in prep:
            p = prep[kind]
            what = (
                "index build"
                if kind == "index"
                else f"fine-tuning ({p['config']['recipe']}, {p['config']['method']})"
            )
            if p.get("reused"):
                what += ", reused from cache"
            cells = [what, f"{p['seconds']:.1f}", f"{p['peak_rss_mb']:.0f}", f"{p['size_mb']:.1f}"]
        if name == "ft+rag" and "index" in prep and "finetune" in prep:
            cells = [
                "both",
                f"{prep['index']['seconds'] + prep['finetune']['seconds']:.1f}",
                "-",
                "-",
            ]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {s['latency_p50_s']:.2f} / {s['latency_p95_s']:.2f} |"
        )
    nk = r.get("new_knowledge", {})
    if nk:
        lines += [
            "",
            "## Cost of new knowledge",
            "",
            "The held-out documents are added; each system is timed and then asked about them.",
            "",
            "| system | how | time (s) | containment after |",
            "|---|---|---|---|",
        ]
        for name, v in nk.items():
            lines.append(
                f"| {name} | {v['method']} | {v['seconds']:.1f} | {v['containment']:.1%} |"
            )
    lines += [
        "",
        "## Settings",
        "",
        "```json",
        json.dumps({**setup, "prepare": prep}, indent=1, default=str),
        "```",
        "",
        f"git commit {r['git_commit']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def draw_chart(r: dict[str, Any], path: Path) -> None:
    """Quality with intervals beside preparation cost on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(r["systems"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for offset, metric in ((-0.2, "containment"), (0.2, "f1")):
        means = [r["systems"][n][metric]["mean"] for n in names]
        lows = [m - r["systems"][n][metric]["low"] for n, m in zip(names, means, strict=True)]
        highs = [r["systems"][n][metric]["high"] - m for n, m in zip(names, means, strict=True)]
        left.bar(
            [i + offset for i in range(len(names))],
            means,
            width=0.4,
            label=metric,
            yerr=[lows, highs],
            capsize=4,
        )
    left.set_xticks(range(len(names)), names)
    left.set_ylim(0, 1)
    left.set_title("Answer quality (95% bootstrap intervals)")
    left.legend()
    prep = r["prepare"]
    costs = {
        "closed": 0.1,
        "rag": prep.get("index", {}).get("seconds", 0.1),
        "ft": prep.get("finetune", {}).get("seconds", 0.1),
    }
    costs["ft+rag"] = costs["rag"] + costs["ft"]
    right.bar(names, [max(costs.get(n, 0.1), 0.1) for n in names], color="tab:gray")
    right.set_yscale("log")
    right.set_ylabel("seconds (log scale)")
    right.set_title("Cost to prepare (closed: none)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
