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
    """The report, results, predictions and charts (refusal and curves when measured);
    returns their paths."""
    out = Path(out)
    results = run["results"] | {"versions": versions(), "git_commit": git_commit()}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    with open(out / "predictions.jsonl", "w") as handle:
        for row in run["predictions"]:
            handle.write(json.dumps(row, default=str) + "\n")
    draw_chart(results, out / "chart.png")
    paths = [out / n for n in ("report.md", "results.json", "predictions.jsonl", "chart.png")]
    if any("coverage_curve" in v for v in results["systems"].values()):
        draw_refusal(results, out / "refusal.png")
        paths.append(out / "refusal.png")
    if curves(results):
        draw_curves(results, out / "curves.png")
        paths.append(out / "curves.png")
    (out / "report.md").write_text(markdown(results))
    return paths


def curves(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fine-tuning runs that have a learning curve, by system."""
    prep = results["prepare"]
    return {
        name: prep[name]
        for name in ("ft", "ft+rag")
        if name in prep and prep[name].get("curve") and "shared_with" not in prep[name]
    }


def prep_seconds(results: dict[str, Any], system: str) -> float:
    """Seconds to prepare a system: its fine-tuning and/or its index build."""
    prep = results["prepare"]
    seconds = 0.0
    if system in ("rag", "ft+rag") and "index" in prep:
        seconds += prep["index"]["seconds"]
    if system == "naive" and "naive" in prep:
        seconds += prep["naive"]["seconds"]
    if system in ("ft", "ft+rag") and system in prep and "shared_with" not in prep[system]:
        seconds += prep[system]["seconds"]
    if system == "ft+rag" and prep.get("ft+rag", {}).get("shared_with") == "ft":
        seconds += prep["ft"]["seconds"]
    return seconds


def interval(f: dict[str, float]) -> str:
    """A refusal rate with its 95% interval and count."""
    if not f["n"]:
        return "n/a (0)"
    return f"{f['mean']:.0%} [{f['low']:.0%}, {f['high']:.0%}] ({f['n']})"


def pct(interval: dict[str, float]) -> str:
    return f"{interval['mean']:.1%} [{interval['low']:.1%}, {interval['high']:.1%}]"


METRIC_NAMES = {"containment": "answer containment", "f1": "token F1"}


def conversation_section(systems: dict[str, Any]) -> list[str]:
    """Answer score and refusal on conversations, each last turn made standalone first."""
    rows = {n: s["conversations"] for n, s in systems.items() if s.get("conversations")}
    if not rows:
        return []
    lines = [
        "",
        "### Conversations",
        "",
        "The last user turn of each conversation, made standalone by the same follow-up "
        "rewriting as `/v1/chat/completions`, then answered; token F1 against the reference "
        "reply on answerable ones, refusal on the others.",
        "",
        "| system | token F1 (answerable) | answerable refused | unanswerable refused "
        "| rewritten |",
        "|---|---|---|---|---|",
    ]
    for name, c in rows.items():
        lines.append(
            f"| {name} | {pct(c['f1'])} | {interval(c['answerable_refused'])} "
            f"| {interval(c['unanswerable_refused'])} | {c['rewritten']:.0%} |"
        )
    return lines


def markdown(r: dict[str, Any]) -> str:
    setup, systems, prep = r["setup"], r["systems"], r["prepare"]
    lines = [
        f"# Retrieval vs fine-tuning: {Path(setup['dataset']).name}",
        "",
        f"**Verdict:** {r['paired'].get('verdict', 'rag and ft were not both run.')}",
    ]
    statement = r.get("verdict_by_kind", {}).get("_statement")
    if statement:
        lines += ["", f"**By kind of question:** {statement}"]
    lines += [
        "",
        f"{setup['questions']} questions (seed {setup['seed']}, split `{setup['split']}`: "
        f"{setup['questions_in_split']} questions in it; {setup['split_rule']}), the same base "
        f"model ({setup['generator']}) in every system. Intervals are 95% bootstrap intervals.",
    ]
    lines += generated_section(setup.get("generated_questions"))
    lines += backend_section(setup.get("answered_on"))
    metric = setup.get("metric", "containment")
    lines += [
        "",
        "## Answer quality",
        "",
        f"Scored by **{METRIC_NAMES.get(metric, metric)}** ({setup.get('metric_rule', '')}). "
        "Quoted: replies that are a sentence of the passages, not the model's words, and their "
        "score.",
        "",
        "| system | exact match | token F1 | answer containment | quoted (score) |",
        "|---|---|---|---|---|",
    ]
    for name, s in systems.items():
        q = s.get("quoted") or {}
        quoted = f"{q['share']:.0%} ({q['score']:.0%})" if q.get("n") else "0%" if q else "-"
        lines.append(
            f"| {name} | {pct(s['exact_match'])} | {pct(s['f1'])} | {pct(s['containment'])} "
            f"| {quoted} |"
        )
    kinds = sorted({k for s in systems.values() for k in s["score_by_kind"]})
    lines += [
        "",
        f"### {METRIC_NAMES.get(metric, metric).capitalize()} by kind of question",
        "",
        "| system | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for name, s in systems.items():
        by_kind = s["score_by_kind"]
        cells = [pct(by_kind[k]) if k in by_kind else "-" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += verdict_section(r.get("verdict_by_kind", {}))
    lines += finetune_section(r)
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
            supported = f"{s['supported']:.1%}" if name != "naive" else "no check"
            lines.append(f"| {name} | {s[f'recall@{k}']:.1%} | {s['mrr@10']:.3f} | {supported} |")
    lines += [
        "",
        "## Refusal",
        "",
        f"{len(setup['held_out_documents'])} documents were removed from the index and from "
        f"fine-tuning. Of the {setup['held_out_questions']} questions about them, "
        f"{setup.get('unanswerable_questions', setup['held_out_questions'])} have no answer in "
        "any document left in the index (unanswerable: refusing is right); the other "
        f"{setup.get('still_answerable_questions', 0)} are still answerable from other "
        "documents and are counted apart. Each cell: share refused, 95% interval, questions.",
        "",
        "| system | unanswerable refused (higher is better) | answerable refused (lower) "
        "| still answerable refused |",
        "|---|---|---|---|",
    ]
    for name, s in systems.items():
        f = s.get("refusal")
        if f is None:
            continue
        lines.append(
            f"| {name} | {interval(f['unanswerable_refused'])} "
            f"| {interval(f['answerable_refused'])} | {interval(f['still_answerable_refused'])} |"
        )
    if setup.get("native_unanswerable_questions"):
        lines.append(
            f"\nThe unanswerable column also holds the dataset's own "
            f"{setup['native_unanswerable_questions']} unanswerable questions, asked of the "
            "whole index."
        )
    lines += conversation_section(systems)
    for name, steps in (setup.get("answer_steps") or {}).items():
        if steps:
            lines.append(
                f"\n{name} answered with the answer steps {steps['steps']} ({steps['why']})."
            )
    for name, gate in setup.get("refusal_gates", {}).items():
        lines.append(f"\n{name} refuses by the {gate['gate']} gate: {gate['why']}.")
    if any("coverage_curve" in s for s in systems.values()):
        lines += [
            "",
            "refusal.png: answered share against the accuracy (containment) of what was "
            "answered, as the gate's threshold rises from the one in force.",
        ]
    lines += cost_section(r)
    nk = r.get("new_knowledge", {})
    if nk:
        lines += [
            "",
            "## Cost of new knowledge",
            "",
            "The held-out documents are added; each system is timed and then asked about them. "
            "Per fact: the time over the training questions on those documents.",
            "",
            "| system | how | time (s) | per new fact (s) | containment after |",
            "|---|---|---|---|---|",
        ]
        for name, v in nk.items():
            lines.append(
                f"| {name} | {v['method']} | {v['seconds']:.1f} "
                f"| {v['seconds_per_fact']:.3f} ({v['facts']} facts) | {v['containment']:.1%} |"
            )
    lines += [
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(
            {**setup, "prepare": {n: _without_curve(p) for n, p in prep.items()}},
            indent=1,
            default=str,
        ),
        "```",
        "",
        f"git commit {r['git_commit']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def _without_curve(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if k not in ("curve", "curve_ends")}


def backend_section(answered_on: dict[str, str] | None) -> list[str]:
    """Which backend answered each system: a model server answers closed, naive and rag, while
    the fine-tuned systems always answer in this process."""
    if not answered_on:
        return []
    systems_by_backend: dict[str, list[str]] = {}
    for system, backend in answered_on.items():
        systems_by_backend.setdefault(backend, []).append(system)
    parts = [f"{', '.join(names)} on {backend}" for backend, names in systems_by_backend.items()]
    return ["", f"Answered by: {'; '.join(parts)}."]


def generated_section(generated: dict[str, Any] | None) -> list[str]:
    if not generated:
        return []
    lines = [
        "",
        f"**Generated questions:** the dataset has no test.jsonl, so {generated['count']} "
        f"questions were generated from its documents ({generated['how']}). Examples:",
        "",
    ]
    for q in generated["examples"]:
        lines.append(f"- {q['question']} → `{q['answers'][0]}` ({q['doc_id']})")
    return lines


def verdict_section(by_kind: dict[str, Any]) -> list[str]:
    kinds = [k for k in by_kind if not k.startswith("_")]
    if not kinds:
        return []
    others = list(by_kind[kinds[0]]["rag_minus"])
    prep = by_kind["_prep_seconds"]
    lines = [
        "",
        "## Verdict per kind of question",
        "",
        "Paired difference rag - system in the answer score on the same questions (95% CI); the "
        "winner is the system whose interval excludes zero.",
        "",
        "| kind | n | best | " + " | ".join(f"rag - {n}" for n in others) + " |",
        "|---|---|---|" + "---|" * len(others),
    ]
    for kind in kinds:
        v = by_kind[kind]
        cells = []
        for name in others:
            d = v["rag_minus"][name]
            mark = "" if d["winner"] == "tie" else f" **{d['winner']}**"
            cells.append(f"{d['mean']:+.1%} [{d['low']:+.1%}, {d['high']:+.1%}]{mark}")
        best = f"{v['best']} ({v['score'][v['best']]:.1%})"
        lines.append(f"| {kind} | {v['questions']} | {best} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Preparation: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in prep.items())
        + ".",
    ]
    return lines


def finetune_section(r: dict[str, Any]) -> list[str]:
    runs = {n: p for n, p in r["prepare"].items() if n in ("ft", "ft+rag")}
    if not runs:
        return []
    lines = [
        "",
        "## Fine-tuning: did it fit its training data?",
        "",
        "A run stops when greedy answers to a fixed sample of its own training questions "
        "contain the gold answer at the target rate (converged), or when its budget runs out "
        "(not converged). Test accuracy at each check is on a small fixed sample of the test "
        "questions (asked closed-book for ft, with the chain's prompt for ft+rag, before the "
        "chain's checks). Curves: `curves.png`.",
        "",
        "| system | recipe | trained on | converged | steps | train s (+checks) "
        "| fit start → end | test start → end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in runs.items():
        if "shared_with" in p:
            lines.append(f"| {name} | the {p['shared_with']} model | | | | | | |")
            continue
        ends = p.get("curve_ends", {})
        start, end = ends.get("start") or {}, ends.get("end") or {}
        converged = {True: "**yes**", False: f"**no** ({p['stopped']})", None: "no fit check"}[
            p["converged"]
        ]

        def rate(value: float | None) -> str:
            return "-" if value is None else f"{value:.0%}"

        fit = f"{rate(start.get('fit'))} → {rate(end.get('fit'))} (target {p['target']:.0%})"
        test = f"{rate(start.get('test', {}).get('all'))} → {rate(end.get('test', {}).get('all'))}"
        cached = ", reused" if p.get("reused") else ""
        lines.append(
            f"| {name} | {p['config']['recipe']} ({p['config']['method']}{cached}) "
            f"| {p['trained_on']} | {converged} | {p['steps']} "
            f"| {p['seconds']:.0f} (+{p['check_seconds']:.0f}) | {fit} | {test} |"
        )
    for name, p in runs.items():
        end = (p.get("curve_ends") or {}).get("end") or {}
        if end.get("test"):
            kinds = ", ".join(f"{k} {v:.0%}" for k, v in end["test"].items() if k != "all")
            lines.append(f"\n{name} test sample at the last check, by kind: {kinds}.")
    return lines


def cost_section(r: dict[str, Any]) -> list[str]:
    prep, systems = r["prepare"], r["systems"]
    lines = [
        "",
        "## Cost",
        "",
        "| system | preparation | prep time (s) | peak RSS (MB) | on disk (MB) "
        "| latency p50 / p95 (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in systems.items():
        key = {"rag": "index", "naive": "naive", "ft": "ft", "ft+rag": "ft+rag"}.get(name)
        cells = ["none", "0", "-", "-"]
        if key and key in prep:
            p = prep[key]
            if key == "index":
                what = "index build"
            elif key == "naive":
                what = "FAISS index (1000-char chunks)"
            elif "shared_with" in p:
                what = f"the {p['shared_with']} model"
            else:
                what = f"fine-tuning ({p['config']['recipe']}, {p['config']['method']})"
            if p.get("reused"):
                what += ", reused from cache"
            seconds = p["seconds"]
            if name == "ft+rag" and "index" in prep:
                what += " + index build"
                seconds += prep["index"]["seconds"]
            cells = [what, f"{seconds:.1f}", f"{p['peak_rss_mb']:.0f}", f"{p['size_mb']:.1f}"]
        latency = (
            "-"  # no single question was asked (a dataset of conversations only)
            if s["latency_p50_s"] is None
            else f"{s['latency_p50_s']:.2f} / {s['latency_p95_s']:.2f}"
        )
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {latency} |")
    return lines


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
    right.bar(names, [max(prep_seconds(r, n), 0.1) for n in names], color="tab:gray")
    right.set_yscale("log")
    right.set_ylabel("seconds (log scale)")
    right.set_title("Cost to prepare (closed: none)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_curves(r: dict[str, Any], path: Path) -> None:
    """Learning curves: fit and test accuracy by kind, against steps and training seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = curves(r)
    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 3.8 * len(runs)), squeeze=False)
    for row, (name, p) in zip(axes, runs.items(), strict=True):
        points = p["curve"]
        kinds = sorted({k for point in points for k in point["test"] if k != "all"})
        for ax, axis in zip(row, ("step", "seconds"), strict=True):
            xs = [point[axis] for point in points]
            fits = [point["fit"] for point in points]
            if any(f is not None for f in fits):
                ax.plot(xs, fits, "k-o", lw=2, label="fit (own training questions)")
            for kind in kinds:
                ys = [point["test"].get(kind) for point in points]
                ax.plot(xs, ys, "--.", label=f"test: {kind}")
            ax.axhline(p["target"], color="tab:red", lw=0.8, ls=":", label="fit target")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("training steps" if axis == "step" else "training seconds")
            ax.set_title(f"{name}: {p['config']['recipe']} ({p['config']['method']})")
        row[0].set_ylabel("answer containment")
        row[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_refusal(r: dict[str, Any], path: Path) -> None:
    """The refusal/coverage curve of each retrieval system, and unanswerable refusal beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, s in r["systems"].items():
        points = s.get("coverage_curve")
        if not points:
            continue
        xs = [p["answered"] for p in points]
        left.plot(xs, [p["accuracy_of_answered"] for p in points], "-o", ms=3, label=name)
        right.plot(xs, [p["unanswerable_refused"] for p in points], "-o", ms=3, label=name)
    left.set_xlabel("share of answerable questions answered")
    left.set_ylabel("containment of the answered")
    right.set_xlabel("share of answerable questions answered")
    right.set_ylabel("unanswerable questions refused")
    for ax in (left, right):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    fig.suptitle("as the refusal threshold rises from the one in force (right to left)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
