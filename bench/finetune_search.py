"""How fast does `sft` fit fictional-people's training pairs? A small search over the defaults.

    python bench/finetune_search.py --rank 32 --lr 2e-3 --max-steps 150 [--schedule cosine]

Prints one JSON line: steps, training seconds, converged, and the learning curve (fit on 32
training questions, closed-book accuracy on 16 test questions by kind).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from dataclasses import asdict
from pathlib import Path

from rag.config import Settings
from rag.evaluation.data import load_dataset
from rag.evaluation.finetune import FineTuneConfig, Probe, fine_tune, sample_fit_probe
from rag.evaluation.recipes import build_training, closed_book
from rag.generation import load_generator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/fictional-people")
    parser.add_argument("--recipe", default="sft")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--schedule", default="constant")
    parser.add_argument("--method", default="lora")
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--check-every", type=int, default=25)
    args = parser.parse_args()
    dataset = load_dataset(Path(args.data))
    training = build_training(args.recipe, dataset.train, dataset.documents)
    config = FineTuneConfig(
        recipe=args.recipe,
        method=args.method,
        lora_rank=args.rank,
        learning_rate=args.lr,
        schedule=args.schedule,
        max_steps=args.max_steps,
        check_every=args.check_every,
        max_minutes=None,
    )
    test = random.Random(0).sample(dataset.test, 16)
    probe = Probe(
        [closed_book(q.question) for q in test],
        [q.answers for q in test],
        [str(q.kind) for q in test],
    )
    fit = sample_fit_probe(training.fit_pairs, config.fit_sample, config.seed)
    generator = load_generator(Settings())
    with tempfile.TemporaryDirectory() as cache:
        _, result = fine_tune(
            generator,
            training.examples,
            config,
            Path(cache),
            fit=fit,
            test=probe,
            show_progress=False,
        )
    row = asdict(result) | {"args": vars(args)}
    row.pop("path")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
