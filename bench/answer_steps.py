"""Each answer-steps candidate on one built index: answer time (p50) and what it answered.

    python -m bench.answer_steps INDEX_ROOT NAME DATASET [--questions 20]

Asks the same answerable questions of DATASET (test.jsonl, those on documents the index holds)
through `ask` under each candidate (RAG_ANSWER_STEPS fixed to it), on the same loaded models,
and prints the p50 seconds per answer, the answer score and the quoted share: what the chosen
steps cost at `/ask` against `sentence` (the steps in force before they were chosen).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from rag.answer_steps import CANDIDATES
from rag.chain import Pipeline
from rag.config import Settings
from rag.embeddings import load_embedder
from rag.evaluation.data import load_dataset
from rag.evaluation.metrics import containment, f1_score
from rag.generators import load_generator
from rag.store import load_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("name")
    parser.add_argument("data", type=Path)
    parser.add_argument("--questions", type=int, default=20)
    args = parser.parse_args()
    base = Settings(index_root=args.root)
    embedder, generator = load_embedder(base), load_generator(base)
    index = load_index(base, args.name)
    dataset = load_dataset(args.data)
    held = set(index.manifest["documents"])
    asked = [q for q in dataset.test if q.answers and q.doc_id in held][: args.questions]
    score = f1_score if dataset.metric == "f1" else containment
    print(f"{platform.processor() or platform.machine()}, {generator.name}, {len(asked)} questions")
    print("steps       p50 s   score  quoted  refused")
    for name in CANDIDATES:
        pipeline = Pipeline(
            index, embedder, generator, base.model_copy(update={"answer_steps": name})
        )
        seconds, scores, quoted, refused = [], [], 0, 0
        for q in asked:
            start = time.perf_counter()
            answer = pipeline.ask(q.question)
            seconds.append(time.perf_counter() - start)
            scores.append(0.0 if answer.abstained else score(answer.answer, q.answers))
            quoted += answer.quoted
            refused += answer.abstained
        print(
            f"{name:10s} {statistics.median(seconds):6.2f} {statistics.fmean(scores):7.1%} "
            f"{quoted / len(asked):6.0%} {refused / len(asked):7.0%}"
        )
    index.close()


if __name__ == "__main__":
    main()
