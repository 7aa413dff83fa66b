"""Does the calibrated gate refuse what the index cannot answer, on corpora it was never tuned on?

    python -m bench.refusal ../shared/data/covidqa-dev:report \
        ../shared/data/fictional-people:report corpora/python-reference/docs:all /tmp/package-docs

For each dataset (`folder:split`): where the dataset has native unanswerable questions
(`"answers": []`, `"kind": "unanswerable"`: near misses written by people) the whole corpus is
indexed and those are asked of it; otherwise documents are removed from the index until at
least 30 questions about them have no answer in any remaining document
(rag.evaluation.refusal). Indexing calibrates the gate on the index's own probe questions,
near misses included. Then, without
generating (the gate decides before the model runs), it prints the share refused of
answerable questions, of unanswerable ones, and of held-out questions still answerable from
other documents, each with its 95% interval and count, for the calibrated gate, the fixed
thresholds, the lexical gate (RAG_CALIBRATION_SIGNALS=lexical, calibrated on the same probes),
the calibrated model refitted on the probes of some kinds only (what each near-miss kind adds),
and on subsets of its signals (what each signal adds). Also the calibration's cost against the
index build's, with and without the near-miss probes. Writes bench/refusal.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.answerability import SIGNAL_SETS, Signals, fit
from rag.calibration import (
    NEAR_MISS_CANDIDATES,
    _arrays,
    _fit_gate,
    calibrate,
    read_calibration,
)
from rag.chain import Pipeline
from rag.config import Settings
from rag.documents import Document, load_corpus
from rag.embeddings import load_embedder
from rag.evaluation.data import Dataset, Question, in_split, load_dataset
from rag.evaluation.refusal import choose_held, refusal_figures, split_held
from rag.evaluation.run import write_corpus
from rag.gate import Gate, fixed_gate
from rag.indexing import index_corpus
from rag.store import load_index

FULL = SIGNAL_SETS["full"]
# Refitted on the calibration's probes with some of its signals only: what each adds.
SUBSETS = {
    "sentence only": ("sentence", "sentence_words"),
    "retrieval only": ("dense",),
    "all but sentence": tuple(f for f in FULL if f != "sentence"),
    "all but sentence_words": tuple(f for f in FULL if f != "sentence_words"),
    "all but pinned": tuple(f for f in FULL if f != "pinned"),
    "full": FULL,
}


# Refitted on the calibration's probes of these kinds only: what each near-miss kind adds.
PROBE_SETS = {
    "document probes only (before)": ("document",),
    "+ sentence left out": ("document", "sentence"),
    "+ entity swapped": ("document", "swap"),
    "+ both": ("document", "sentence", "swap"),
}


def gate(pipeline: Pipeline, question: str) -> tuple[bool, float | None, Signals | None]:
    """(refused, score, signals) of the gate alone: retrieval, sentences, no generation."""
    from rag.gate import gate_signals

    turn = pipeline._start(question)
    pipeline._gate(turn)
    signals = None
    if turn.ranked:  # None: refused before the gate (the names rule)
        signals, _ = gate_signals(
            turn.question, turn.passages, pipeline.embedder, pipeline.index, pipeline.settings
        )
    return turn.refusal is not None, turn.answerability, signals


def native_unanswerable(questions: list[Question]) -> list[Question]:
    """Questions a dataset marks as having no answer in its corpus: asked of the whole index."""
    return [q for q in questions if q.kind == "unanswerable" and not q.answers]


def questions_and_corpus(
    dataset: Dataset, scored: list[Question], rng: random.Random, limit: int
) -> tuple[list[Document], dict[str, list[Question]], int]:
    """The documents to index, the questions of each kind, and how many documents were left
    out: native near misses where the dataset has them, else questions about removed ones."""
    if native_unanswerable(dataset.test):
        unanswerable, still, held = native_unanswerable(scored), [], set()
    else:
        held = choose_held(scored, dataset.documents, rng, 0.1)
        remaining = [d for d in dataset.documents if d.id not in held]
        unanswerable, still = split_held([q for q in scored if q.doc_id in held], remaining)
    answerable = [q for q in scored if q.doc_id and q.doc_id not in held]
    rng.shuffle(answerable)
    kinds = {"answerable": answerable[:limit], "unanswerable": unanswerable, "still": still}
    return [d for d in dataset.documents if d.id not in held], kinds, len(held)


def separation(model, signals: dict[str, list], at: float) -> float | None:
    """Unanswerable questions refused with the threshold placed on the real answerable ones
    so that `at` of them are refused: how well a model tells the two apart, whatever its
    calibrated threshold (a diagnostic: a deployed gate cannot see these questions)."""
    ok = [model.score(r) if r is not None else 0.0 for r in signals["answerable"]]
    no = [model.score(r) if r is not None else 0.0 for r in signals["unanswerable"]]
    if not ok or not no:
        return None
    threshold = float(np.quantile(ok, at))
    return round(float(np.mean(np.array(no) < threshold)), 3)


def figures(refused: dict[str, list[bool]], seed: int) -> dict[str, Any]:
    return refusal_figures(refused["answerable"], refused["unanswerable"], refused["still"], seed)


def run(spec: str, work: Path, embedder, limit: int, seed: int) -> dict[str, Any]:
    folder, _, split = spec.partition(":")
    dataset = load_dataset(Path(folder))
    scored = in_split(dataset.test, split or "all")
    rng = random.Random(seed)
    remaining, asked, held = questions_and_corpus(dataset, scored, rng, limit)
    settings = Settings(index_root=work / dataset.name)
    corpus = write_corpus(remaining, work / dataset.name / "corpus" / "corpus.jsonl")
    report = index_corpus(
        corpus, "bench", settings, embedder=embedder, rebuild=True, show_progress=False
    )
    index = load_index(settings, "bench")
    in_force = read_calibration(settings, "bench", index.version)
    texts = {doc.id: doc.text for doc in load_corpus(corpus).documents}
    # Every near-miss kind, to refit on each; the cost without near misses; the same probes
    # weighed by the lexical signals.
    calibration = calibrate(index, embedder, settings, texts, kinds=NEAR_MISS_CANDIDATES)
    before = calibrate(index, embedder, settings, texts, kinds=())
    lexical = calibrate(
        index, embedder, settings.model_copy(update={"calibration_signals": "lexical"}), texts
    )
    out: dict[str, Any] = {
        "dataset": spec,
        "documents_indexed": len(remaining),
        "documents_removed": held,
        "native_unanswerable": bool(native_unanswerable(dataset.test)),
        "chunks": report.chunks,
        "index_seconds": round(report.seconds, 2),
        "calibration_seconds": round(in_force.seconds, 2),
        "calibration_share_of_build": round(in_force.seconds / report.seconds, 3),
        "all_kinds_calibration_seconds": round(calibration.seconds, 2),
        "all_kinds_calibration_share_of_build": round(calibration.seconds / report.seconds, 3),
        "document_probes_calibration_seconds": round(before.seconds, 2),
        "document_probes_calibration_share_of_build": round(before.seconds / report.seconds, 3),
        "lexical_calibration_seconds": round(lexical.seconds, 2),
        "lexical_calibration_share_of_build": round(lexical.seconds / report.seconds, 3),
        "calibration": in_force.summary(),
        "all_kinds_calibration": calibration.summary(),
        "gates": {},
    }
    pipeline = Pipeline(index, embedder, None, settings)
    results = {kind: [gate(pipeline, q.question) for q in qs] for kind, qs in asked.items()}
    signals = {kind: [r[2] for r in rows] for kind, rows in results.items()}

    def decided(rule: Gate) -> dict[str, list[bool]]:
        # None: refused before the gate (the names rule), as in the chain
        return {
            kind: [r is None or rule.refusal(r) is not None for r in rows]
            for kind, rows in signals.items()
        }

    out["gates"][f"in force ({in_force.gate.why})"] = figures(
        {kind: [r[0] for r in rows] for kind, rows in results.items()}, seed
    )
    out["gates"]["fixed"] = figures(decided(fixed_gate(settings, "bench")), seed)
    lexical_gate = Gate("calibrated", "lexical", lexical.threshold, lexical.model)
    out["gates"]["calibrated (lexical)"] = figures(decided(lexical_gate), seed)
    target = settings.calibration_false_refusal
    out["separation"] = {}
    for name, kinds in PROBE_SETS.items():
        probes = [p for p in calibration.probes if p.kind in kinds]
        model, threshold = _fit_gate(probes, target, FULL)
        out["gates"][f"probes: {name}"] = figures(
            decided(Gate("calibrated", name, threshold, model)), seed
        )
        out["separation"][name] = separation(model, signals, target)
    vectors = {
        kind: [None if r is None else r.vector(FULL) for r in v] for kind, v in signals.items()
    }
    x, y = _arrays(calibration.probes)
    ok_probes = x[y == 1]
    for name, subset in SUBSETS.items():
        cols = [FULL.index(f) for f in subset]
        model = fit(x[:, cols], y, subset)

        def score(rows, model=model, cols=cols):
            v = np.array([r if r is not None else [0.0] * len(FULL) for r in rows])
            if not len(v):
                return np.array([])
            z = (v[:, cols] - np.array(model.mean)) / np.array(model.scale)
            return 1 / (1 + np.exp(-(z @ np.array(model.weights) + model.bias)))

        targets = (0.02, 0.05, 0.1, 0.2) if name == "full" else (target,)
        for at in targets:
            threshold = np.quantile(score(ok_probes), at)
            refused = {
                kind: [
                    bool(r is None or s < threshold) for r, s in zip(rows, score(rows), strict=True)
                ]
                for kind, rows in vectors.items()
            }
            label = f"signals: {name}" + (f" @{at:.0%}" if name == "full" else "")
            out["gates"][label] = figures(refused, seed)
    index.close()
    return out


def pct(f: dict[str, float]) -> str:
    return f"{f['mean']:.0%} [{f['low']:.0%}, {f['high']:.0%}] n={f['n']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", help="folder:split (split: tune, report, all)")
    parser.add_argument("--answerable", type=int, default=200, help="answerable questions asked")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-refusal"))
    parser.add_argument("--out", type=Path, default=Path("bench/refusal.json"))
    args = parser.parse_args()
    print(f"cpu: {platform.processor() or platform.machine()}")
    embedder = load_embedder(Settings())
    runs = []
    for spec in args.datasets:
        started = time.perf_counter()
        result = run(spec, args.work, embedder, args.answerable, args.seed)
        runs.append(result)
        print(
            f"\n{spec}: {result['documents_indexed']} documents indexed, "
            f"{result['documents_removed']} removed, {result['chunks']} chunks; index "
            f"{result['index_seconds']} s, calibration {result['calibration_seconds']} s "
            f"({result['calibration_share_of_build']:.0%} of the build; every near-miss kind "
            f"{result['all_kinds_calibration_seconds']} s, "
            f"{result['all_kinds_calibration_share_of_build']:.0%}; without near misses "
            f"{result['document_probes_calibration_seconds']} s, "
            f"{result['document_probes_calibration_share_of_build']:.0%}; lexical signals "
            f"{result['lexical_calibration_seconds']} s, "
            f"{result['lexical_calibration_share_of_build']:.0%}); "
            f"threshold {result['calibration']['threshold']} "
            f"({time.perf_counter() - started:.0f} s)"
        )
        print(f"unanswerable probes: {result['all_kinds_calibration']['unanswerable_probes']}")
        print(f"{'gate':38} {'unanswerable refused':28} {'answerable refused':28} still answ.")
        seen = ", ".join(f"{k} {v:.0%}" for k, v in result["separation"].items() if v is not None)
        print(f"unanswerable refused, threshold placed at 10% answerable refused: {seen}")
        for name, g in result["gates"].items():
            print(
                f"{name:38} {pct(g['unanswerable_refused']):28} "
                f"{pct(g['answerable_refused']):28} {pct(g['still_answerable_refused'])}"
            )
    args.out.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
