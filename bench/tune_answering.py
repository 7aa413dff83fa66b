"""Choose the answering settings on one half of a dataset's documents, never on the other.

    python -m bench.tune_answering ../shared/data/covidqa-dev --split tune --questions 60

Documents are split in two halves by a stable hash of their id (rag.evaluation.data.split_of,
the rule `rag eval --split` uses). This
script scores the chain on the `tune` half under several answering settings; the `report`
half is only for `rag eval --split report`. Drafts are cached by prompt in the work folder,
so trying a setting that does not change the prompt (the check, the quote) costs no
generation. Prints, per setting: answer containment, token F1, answerable questions refused,
questions on documents removed from the index refused, replies quoted, bad replies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import statistics
from pathlib import Path

from rag.chain import Pipeline
from rag.config import Settings
from rag.embeddings import load_embedder
from rag.evaluation.data import Question, load_dataset, split_of
from rag.evaluation.metrics import containment, f1_score
from rag.generators import load_generator
from rag.grounding import has_content
from rag.indexing import index_corpus
from rag.store import load_index


class CachedGenerator:
    """The real generator, remembered by prompt: a setting that keeps the prompt costs nothing."""

    def __init__(self, generator, path: Path) -> None:
        self.generator, self.path = generator, path
        self.cache = json.loads(path.read_text()) if path.is_file() else {}
        self.name = generator.name

    def generate(self, messages, **options) -> str:
        key = hashlib.sha256(json.dumps([messages, options], sort_keys=True).encode()).hexdigest()
        if key not in self.cache:
            self.cache[key] = self.generator.generate(messages, **options)
            self.path.write_text(json.dumps(self.cache))
        return self.cache[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", choices=["tune", "report"], default="tune")
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--held", type=float, default=0.2, help="share of the half's documents")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tune-answering"))
    parser.add_argument("--set", action="append", default=[], help="name=value,... a variant")
    parser.add_argument(
        "--gate-only",
        action="store_true",
        help="score only the retrieval gate, on every question of the half: no generation",
    )
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    rng = random.Random(0)
    corpus = [json.loads(line) for line in dataset.corpus.read_text().splitlines() if line]
    mine = sorted(
        {d["id"] for d in corpus if split_of(Question("", "", [], d["id"])) == args.split}
    )
    asked = sorted({q.doc_id for q in dataset.test if q.doc_id in mine})
    held = set(rng.sample(asked, max(1, round(args.held * len(asked)))))
    held_words = {w for d in corpus if d["id"] in held for w in d["title"].split()}
    main_q = [
        q
        for q in dataset.test
        if (q.doc_id in mine and q.doc_id not in held)
        # questions on two documents (comparisons) fall in a half by their own id
        or (
            q.doc_id is None
            and split_of(q) == args.split
            and not held_words & set(re.findall(r"\w+", q.question))
        )
    ]
    held_q = [q for q in dataset.test if q.doc_id in held]
    rng.shuffle(main_q)
    rng.shuffle(held_q)
    if not args.gate_only:
        main_q, held_q = main_q[: args.questions], held_q[: max(10, args.questions // 3)]

    work = args.work / f"{dataset.name}-{args.split}"
    work.mkdir(parents=True, exist_ok=True)
    base = Settings(index_root=work / "index")
    corpus_file = work / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps(d) + "\n" for d in corpus if d["id"] not in held))
    embedder = load_embedder(base)
    index_corpus(corpus_file, "tune", base, embedder=embedder, show_progress=False)
    index = load_index(base.index_root, "tune")
    variants = [{}] + [dict(kv.split("=") for kv in v.split(",")) for v in args.set]
    if args.gate_only:
        gate_report(index, embedder, base, variants, main_q, held_q)
        return
    generator = CachedGenerator(load_generator(base), work / "drafts.json")

    print(
        f"{dataset.name} {args.split} half: {len(main_q)} questions, {len(held_q)} on "
        f"{len(held)} documents removed from the index"
    )
    for variant in variants:
        settings = Settings(index_root=base.index_root, **({"answer_steps": "settings"} | variant))
        pipeline = Pipeline(index, embedder, generator, settings)
        rows = [(q, pipeline.ask(q.question)) for q in main_q]
        held_rows = [pipeline.ask(q.question) for q in held_q]
        dump = work / f"rows-{'-'.join(f'{k}={v}' for k, v in variant.items()) or 'defaults'}.jsonl"
        with open(dump, "w") as out:
            for q, a in rows:
                record = {"q": q.question, "gold": q.answers, "answer": a.answer, "draft": a.draft}
                out.write(json.dumps(record | {"reason": a.reason, "held": False}) + "\n")
            for q, a in zip(held_q, held_rows, strict=True):
                record = {"q": q.question, "gold": q.answers, "answer": a.answer, "draft": a.draft}
                out.write(json.dumps(record | {"reason": a.reason, "held": True}) + "\n")
        bad = [a.answer for _, a in rows if not has_content(a.answer) or "<<<" in a.answer]
        print(
            f"{variant or 'defaults'}: containment "
            f"{statistics.fmean(containment(a.answer, q.answers) for q, a in rows):.1%}, F1 "
            f"{statistics.fmean(f1_score(a.answer, q.answers) for q, a in rows):.1%}, refused "
            f"{statistics.fmean(a.abstained for _, a in rows):.1%}, held-out refused "
            f"{statistics.fmean(a.abstained for a in held_rows):.1%}, quoted "
            f"{statistics.fmean(a.quoted for _, a in rows):.1%}, bad {len(bad)}"
        )


def gate_report(index, embedder, base: Settings, variants, main_q, held_q) -> None:
    """Refusals of the retrieval gate alone, by kind: what a gate setting costs and buys."""
    print(f"gate only: {len(main_q)} answerable questions, {len(held_q)} on removed documents")
    for variant in variants:
        s = Settings(index_root=base.index_root, **({"answer_steps": "settings"} | variant))
        pipeline = Pipeline(index, embedder, None, s)
        by_kind: dict[str, list[bool]] = {}
        for q in main_q:
            by_kind.setdefault(q.kind, []).append(pipeline.prompt_messages(q.question) is None)
        everything = [r for v in by_kind.values() for r in v]
        held = [pipeline.prompt_messages(q.question) is None for q in held_q]
        kinds = ", ".join(f"{k} {statistics.fmean(v):.0%}" for k, v in sorted(by_kind.items()))
        print(
            f"{variant or 'defaults'}: answerable refused {statistics.fmean(everything):.1%} "
            f"({kinds}); removed-document refused {statistics.fmean(held) if held else 0:.1%}"
        )


if __name__ == "__main__":
    main()
