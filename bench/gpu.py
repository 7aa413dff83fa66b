"""The helpers of bench/gpu.sh: steps for one pass of cpt, seconds per step on a device, the table.

    python -m bench.gpu pass-steps --data ../shared/data/covidqa-dev
    python -m bench.gpu step-seconds --data ../shared/data/covidqa-dev --device cuda --steps 20
    python -m bench.gpu table reports/gpu-covid [reports/gpu-covid-cpu]

`pass-steps` counts the cpt windows of every document of the dataset with the generator's own
tokenizer and the default window and batch (160 tokens, 8): `rag eval` trains on the documents
that are not held out (about 90%), so that many steps make at least one full pass over them; the
report's `passes` says how many it was. `step-seconds` trains cpt for a few steps through
`fine_tune` itself (the code `rag eval` runs) and times the steps after the first two, which on
a GPU include its start-up. `table` prints the README's covidqa-dev table from results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.device import computes_in_bf16
from rag.evaluation.data import load_dataset
from rag.evaluation.finetune import FineTuneConfig, encode, fine_tune
from rag.evaluation.recipes import build_training

WARM_UP_STEPS = 2


def pass_steps(data: Path, settings: Settings, config: FineTuneConfig) -> dict[str, int]:
    """Windows of all the dataset's documents and the steps that cover them once."""
    from transformers import AutoTokenizer

    from rag.generators.source import resolve_source

    source = resolve_source(settings)
    tokenizer = AutoTokenizer.from_pretrained(source.location, **source.load_options)
    dataset = load_dataset(data)
    training = build_training("cpt", [], dataset.documents)
    windows = sum(len(encode(tokenizer, None, text, config)) for _, text in training.examples)
    return {
        "documents": len(dataset.documents),
        "windows": windows,
        "batch_size": config.batch_size,
        "steps": math.ceil(windows / config.batch_size),
    }


def step_seconds(data: Path, device: str, steps: int) -> dict[str, Any]:
    """Seconds per cpt step on `device`, the first steps (warm-up) left out."""
    import torch

    from rag.generators.transformers import load_transformers

    settings = Settings(device=device)  # type: ignore[arg-type]
    generator = load_transformers(settings)
    training = build_training("cpt", [], load_dataset(data).documents)
    total = steps + WARM_UP_STEPS
    config = FineTuneConfig(recipe="cpt", max_steps=total, check_every=1, max_minutes=None)
    with tempfile.TemporaryDirectory() as cache:
        _, result = fine_tune(
            generator, training.examples, config, Path(cache), show_progress=False
        )
    timed = [p for p in result.curve if p.step >= WARM_UP_STEPS]
    seconds = (timed[-1].seconds - timed[0].seconds) / (timed[-1].step - timed[0].step)
    hardware = (
        torch.cuda.get_device_name(0)
        if result.device == "cuda"
        else f"{cpu_model()}, {torch.get_num_threads()} threads"
    )
    return {
        "device": result.device,
        "hardware": hardware,
        "weights": str(next(generator.torch_model.parameters()).dtype).removeprefix("torch."),
        "autocast": "bf16" if result.device == "cuda" and computes_in_bf16() else None,
        "timed_steps": timed[-1].step - timed[0].step,
        "seconds_per_step": seconds,
        "batch": f"{config.batch_size} x {config.window} tokens",
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def finetune_cell(prep: dict[str, Any]) -> str:
    """The fine-tuning cell of the README table: state, steps and passes, fit and test ends."""
    if "steps" not in prep:
        return ""
    ends = prep.get("curve_ends") or {}
    start, end = ends.get("start") or {}, ends.get("end") or {}
    state = "converged" if prep.get("converged") else "not converged"
    passes = prep.get("passes")
    steps = f"{prep['steps']} steps" + (f" ({passes:.2f} passes)" if passes else "")
    fit = f"fit {_pct(start.get('fit'))} -> {_pct(end.get('fit'))}"
    first, last = (point.get("test", {}).get("all") for point in (start, end))
    test = f"test {_pct(first)} -> {_pct(last)}"
    return f"{state}: {steps}, {fit}, {test}"


def table(results: dict[str, Any]) -> list[str]:
    """The README's covidqa-dev table: one row per system."""
    from rag.evaluation.report import prep_seconds

    lines = [
        "| system | containment [95% CI] | token F1 | prep s | fine-tuning "
        "| refused held-out / answerable | device | s/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results["systems"].items():
        c = s["containment"]
        prep = results["prepare"].get(name, {})
        prep = results["prepare"]["ft"] if prep.get("shared_with") == "ft" else prep
        held = s.get("abstention_on_held_out")
        per_step = prep["seconds"] / prep["steps"] if prep.get("steps") else None
        recipe = prep.get("config", {}).get("recipe")
        lines.append(
            f"| {name}{f' ({recipe})' if recipe else ''} "
            f"| {c['mean']:.1%} [{c['low']:.1%}, {c['high']:.1%}] | {s['f1']['mean']:.1%} "
            f"| {prep_seconds(results, name):.0f} | {finetune_cell(prep)} "
            f"| {_pct(held)} / {_pct(s['abstained_on_main'])} | {prep.get('device', '')} "
            f"| {'' if per_step is None else f'{per_step:.3f}'} |"
        )
    return lines


def print_tables(outs: list[Path]) -> None:
    for out in outs:
        results = json.loads((out / "results.json").read_text())
        setup = results["setup"]
        print(f"\n{out}: {setup['questions']} questions, split {setup['split']}")
        print("\n".join(table(results)))
        print(results["paired"].get("verdict", ""))
        timing = out / "step-seconds.json"
        if timing.is_file():
            rows = json.loads(timing.read_text())
            print("\nseconds per cpt step, same windows, fine_tune's own loop:")
            for r in rows:
                print(
                    f"  {r['device']:4s} {r['seconds_per_step']:.3f} s/step over "
                    f"{r['timed_steps']} steps ({r['hardware']}; weights {r['weights']}, "
                    f"autocast {r['autocast']})"
                )
            by = {r["device"]: r["seconds_per_step"] for r in rows}
            if {"cpu", "cuda"} <= set(by):
                print(f"  the GPU is {by['cpu'] / by['cuda']:.1f}x the CPU per step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    steps = commands.add_parser("pass-steps")
    steps.add_argument("--data", type=Path, required=True)
    timing = commands.add_parser("step-seconds")
    timing.add_argument("--data", type=Path, required=True)
    timing.add_argument("--device", choices=["cpu", "cuda"], required=True)
    timing.add_argument("--steps", type=int, default=20)
    timing.add_argument("--append", type=Path, help="add the row to this JSON list")
    report = commands.add_parser("table")
    report.add_argument("out", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "pass-steps":
        print(json.dumps(pass_steps(args.data, Settings(), FineTuneConfig(recipe="cpt"))))
    elif args.command == "step-seconds":
        row = step_seconds(args.data, args.device, args.steps)
        print(json.dumps(row))
        if args.append:
            rows = json.loads(args.append.read_text()) if args.append.is_file() else []
            args.append.write_text(json.dumps([*rows, row], indent=1))
    else:
        print_tables(args.out)


if __name__ == "__main__":
    main()
