"""`make bench`: run each benchmark part, print its figures and targets, merge the results into
bench/results.json and draw bench/results.png.

    python -m bench.run [--quick] [--parts indexing,incremental,scale,postgres,answering,...]

Each part is a module of bench/ with `run(quick: bool) -> dict`. The dict may hold `figures`
(lines to print), `targets` (name, value, goal, met) and `plot`, either
{"kind": "bar", "title", "ylabel", "bars": {label: value}} or
{"kind": "lines", "title", "xlabel", "ylabel", "xscale"?, "yscale"?,
 "series": {label: [[x, y], ...]}}. A part that is missing or fails is recorded as such and the
others still run. Ratios are measured side by side in one run, so they hold on a busy machine;
absolute times do not.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = (
    "indexing",
    "incremental",
    "scale",
    "postgres",
    "answering",
    "generation",
    "startup",
    "model_server",
)


def run_part(name: str, quick: bool) -> dict:
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench.{name}":
            raise
        return {"status": "missing", "detail": f"bench/{name}.py does not exist yet"}
    started = time.perf_counter()
    try:
        result = module.run(quick)
    except Exception as exc:  # one broken part must not lose the others' figures
        traceback.print_exc()
        return {"status": "failed", "detail": f"{type(exc).__name__}: {exc}"}
    return {"status": "ok", "wall_s": round(time.perf_counter() - started, 1)} | result


def describe_machine() -> dict:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit or None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def report(name: str, result: dict) -> None:
    print(
        f"\n== {name} ({result['status']}"
        + (f", {result['wall_s']} s)" if "wall_s" in result else ")"),
        flush=True,
    )
    if result["status"] != "ok":
        print(f"   {result['detail']}")
        return
    for line in result.get("figures", []):
        print(f"   {line}")
    targets = result.get("targets", [])
    if isinstance(targets, dict):  # a part that prints its own figures may keep a plain dict
        targets = [
            {"name": k, "value": float(v), "goal": "true", "met": bool(v)}
            for k, v in targets.items()
            if isinstance(v, bool)
        ]
    for target in targets:
        mark = "MET" if target["met"] else "NOT MET"
        print(f"   target {target['name']}: {target['value']:.4g} ({target['goal']}) {mark}")
    sys.stdout.flush()


def draw(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = [
        r["plot"] for r in results["parts"].values() if r.get("status") == "ok" and "plot" in r
    ]
    plots += [p for r in results["parts"].values() for p in r.get("plots", [])]
    if not plots:
        return
    columns = min(3, len(plots))
    rows = -(-len(plots) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
    for ax, plot in zip(axes.flat, plots, strict=False):
        if plot["kind"] == "bar":
            labels, values = list(plot["bars"]), list(plot["bars"].values())
            ax.bar(labels, values, color="tab:blue")
            for x, value in enumerate(values):
                ax.annotate(f"{value:.3g}", (x, value), ha="center", va="bottom", fontsize=8)
            ax.tick_params(axis="x", labelsize=8)
        else:
            for label, points in plot["series"].items():
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=label)
            ax.set_xscale(plot.get("xscale", "linear"))
            ax.set_yscale(plot.get("yscale", "linear"))
            ax.set_xlabel(plot.get("xlabel", ""))
            ax.legend(fontsize=8)
        ax.set_title(plot["title"], fontsize=10)
        ax.set_ylabel(plot.get("ylabel", ""))
    for ax in list(axes.flat)[len(plots) :]:
        ax.axis("off")
    figure.suptitle(
        f"rag benchmark, {results['machine']['date']} ({results['machine']['cpus']} CPUs)",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the rag benchmark.")
    parser.add_argument("--quick", action="store_true", help="small inputs: a smoke run")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := set(chosen) - set(PARTS):
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")

    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results = {
        "machine": describe_machine(),
        "quick": args.quick,
        "parts": previous.get("parts", {}),
    }
    for name in chosen:
        print(f"running {name}...", flush=True)
        results["parts"][name] = run_part(name, args.quick) | {"quick": args.quick}
        report(name, results["parts"][name])
        args.out.write_text(json.dumps(results, indent=2) + "\n")  # keep what is done so far
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    draw(results, args.out.with_suffix(".png"))
    others = [r["plot"] for r in results["parts"].values() if isinstance(r.get("plot"), str)]
    print(f"\nwrote {args.out}, {args.out.with_suffix('.png')}", *others, sep=", ")


if __name__ == "__main__":
    main()
