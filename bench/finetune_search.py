"""How fast does a recipe fit fictional-people's training pairs? A small search over defaults.

    python bench/finetune_search.py --steps 60 lora:32:1e-3 lora:32:5e-4 full:0:5e-5

Each argument is method:rank:learning-rate; the model loads once and each setting trains a
fresh copy for --steps steps (checked every --check-every). Prints one JSON line per setting:
training seconds, loss, and the fit (closed-book containment on 32 training questions) at each
check.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rag.config import Settings
from rag.evaluation.data import load_dataset
from rag.evaluation.finetune import FineTuneConfig, fine_tune, sample_fit_probe
from rag.evaluation.recipes import build_training
from rag.generators import load_generator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("settings", nargs="+", help="method:rank:learning-rate")
    parser.add_argument("--data", default="../shared/data/fictional-people")
    parser.add_argument("--recipe", default="sft")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--check-every", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--schedule", default="constant")
    args = parser.parse_args()
    dataset = load_dataset(Path(args.data))
    training = build_training(args.recipe, dataset.train, dataset.documents)
    generator = load_generator(Settings())
    for setting in args.settings:
        method, rank, lr = setting.split(":")
        config = FineTuneConfig(
            recipe=args.recipe,
            method=method,  # type: ignore[arg-type]
            lora_rank=int(rank) or 32,
            learning_rate=float(lr),
            schedule=args.schedule,  # type: ignore[arg-type]
            batch_size=args.batch_size,
            max_steps=args.steps,
            check_every=args.check_every,
            max_minutes=None,
        )
        fit = sample_fit_probe(training.fit_pairs, config.fit_sample, config.seed)
        with tempfile.TemporaryDirectory() as cache:
            _, result = fine_tune(
                generator, training.examples, config, Path(cache), fit=fit, show_progress=True
            )
        curve = [
            (p.step, round(p.seconds), p.loss and round(p.loss, 3), p.fit) for p in result.curve
        ]
        print(
            json.dumps({"setting": setting, "seconds": round(result.seconds), "curve": curve}),
            flush=True,
        )


if __name__ == "__main__":
    main()
