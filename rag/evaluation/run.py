"""`rag eval`: the same base model closed-book, fine-tuned, with retrieval, and both.

Everything runs through the project's own pieces (index_corpus, Pipeline, Generator); this
module only arranges the experiment: a held-out slice of documents for abstention and for the
cost of new knowledge, the systems, the scoring, and the numbers the report is written from.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.chain import Pipeline
from rag.config import Settings
from rag.documents import Document, load_corpus
from rag.embeddings import Embedder
from rag.evaluation.data import Dataset, Question, load_dataset
from rag.evaluation.finetune import FineTuneConfig, examples_for, fine_tune
from rag.evaluation.memory import PeakMemory
from rag.evaluation.metrics import bootstrap, containment, exact_match, f1_score, paired_bootstrap
from rag.evaluation.retrieval import recall_at_k, reciprocal_rank, unique_in_order
from rag.evaluation.systems import SYSTEMS, ClosedBook, Prediction, Retrieval
from rag.generators import ChatGenerator
from rag.indexing import index_corpus
from rag.progress import progress
from rag.store import load_index


def pick_questions(dataset: Dataset, held: set[str], limit: int | None, seed: int):
    """A seeded sample stratified by kind (main set) and the questions on held-out documents."""
    rng = random.Random(seed)
    main = [q for q in dataset.test if q.doc_id not in held]
    on_held = [q for q in dataset.test if q.doc_id in held]
    rng.shuffle(main)
    rng.shuffle(on_held)
    if limit:
        by_kind: dict[str | None, list[Question]] = defaultdict(list)
        for q in main:
            by_kind[q.kind].append(q)
        picked: list[Question] = []
        while len(picked) < min(limit, len(main)):
            for kind in sorted(by_kind, key=str):
                if by_kind[kind] and len(picked) < limit:
                    picked.append(by_kind[kind].pop())
        main = picked
        on_held = on_held[: max(4, limit // 4)]
    return main, on_held


def write_corpus(documents: list[Document], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for d in documents:
            record = {"id": d.id, "title": d.title, "text": d.text, "metadata": d.metadata}
            handle.write(json.dumps(record) + "\n")
    return path


def score(prediction: Prediction, question: Question) -> dict[str, float]:
    return {
        "exact_match": exact_match(prediction.reply, question.answers),
        "f1": f1_score(prediction.reply, question.answers),
        "containment": containment(prediction.reply, question.answers),
    }


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def run_evaluation(
    data: Path,
    out: Path,
    settings: Settings,
    embedder: Embedder,
    generator: ChatGenerator,
    *,
    systems: tuple[str, ...] = SYSTEMS,
    limit: int | None = None,
    seed: int = 0,
    holdout: float = 0.1,
    ft: FineTuneConfig | None = None,
    retrain: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Prepare, answer, score; returns every number (also written to out/results.json)."""
    ft = ft or FineTuneConfig(seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(data)
    documents = load_corpus(dataset.corpus).documents
    rng = random.Random(seed)
    asked = sorted({q.doc_id for q in dataset.test if q.doc_id})
    held = set(rng.sample(asked, max(1, round(holdout * len(documents)))))
    questions, held_questions = pick_questions(dataset, held, limit, seed)
    base_docs = [d for d in documents if d.id not in held]
    settings = settings.model_copy(update={"index_root": out / "index"})
    work = out / "work"
    shutil.rmtree(settings.index_root, ignore_errors=True)
    results: dict[str, Any] = {"prepare": {}, "systems": {}, "new_knowledge": {}}

    def new_pipeline(model_generator: ChatGenerator) -> Pipeline:
        index = load_index(settings, "eval")
        return Pipeline(index, embedder, model_generator, settings)

    # Preparation: an index build for the rag systems, a fine-tuning run for the ft ones.
    generators = {"closed": generator, "rag": generator}
    if {"rag", "ft+rag"} & set(systems):
        base_file = write_corpus(base_docs, work / "base" / "corpus.jsonl")
        with PeakMemory() as memory:
            report = index_corpus(
                base_file,
                "eval",
                settings,
                embedder=embedder,
                rebuild=True,
                show_progress=show_progress,
            )
        results["prepare"]["index"] = {
            "seconds": report.seconds,
            "peak_rss_mb": memory.peak_mb,
            "chunks": report.chunks,
            "size_mb": dir_mb(settings.index_root / "eval"),
        }
    tuned = None
    if {"ft", "ft+rag"} & set(systems):
        train = [q for q in dataset.train if q.doc_id not in held]
        examples = examples_for(ft.recipe, train, base_docs)
        cache = work / "finetune" if retrain else out.parent / ".finetune-cache"
        tuned, result = fine_tune(generator, examples, ft, cache, show_progress=show_progress)
        results["prepare"]["finetune"] = asdict(result) | {"config": asdict(ft)}
        generators["ft"] = generators["ft+rag"] = generator.with_model(
            tuned, f"{generator.name} + {ft.recipe}/{ft.method}"
        )

    runners = {}
    for name in systems:
        model = generators[name]
        runners[name] = (
            Retrieval(name, new_pipeline(model))
            if name.endswith("rag")
            else ClosedBook(name, model, settings.abstain_text)
        )

    predictions: list[dict[str, Any]] = []
    for name, runner in runners.items():
        rows = []
        for q in progress(
            questions,
            total=len(questions),
            desc=f"answering ({name})",
            unit="q",
            show=show_progress,
        ):
            p = runner.answer(q.id, q.question)
            rows.append((q, p, score(p, q)))
        held_bar = progress(
            held_questions,
            total=len(held_questions),
            desc=f"held-out questions ({name})",
            unit="q",
            show=show_progress,
        )
        held_rows = [(q, runner.answer(q.id, q.question)) for q in held_bar]
        results["systems"][name] = summarize(rows, held_rows, settings.k, seed)
        for q, p, s in rows:
            predictions.append(asdict(p) | s | {"kind": q.kind, "slice": "main", "gold": q.answers})
        for q, p in held_rows:
            predictions.append(asdict(p) | {"kind": q.kind, "slice": "held-out", "gold": q.answers})
        results["systems"][name]["_scores"] = [s for _, _, s in rows]

    experiment = Experiment(
        dataset, documents, held, held_questions, settings, embedder, ft, work, show_progress
    )
    results["new_knowledge"] = new_knowledge(experiment, generator, tuned, "rag" in runners)
    results["paired"] = compare(results, "rag", "ft", seed)
    for name in results["systems"]:
        results["systems"][name].pop("_scores")
    results["setup"] = {
        "dataset": str(data),
        "questions": len(questions),
        "held_out_documents": sorted(held),
        "held_out_questions": len(held_questions),
        "seed": seed,
        "limit": limit,
        "systems": list(systems),
        "k": settings.k,
        "retrieval_mode": settings.retrieval_mode,
        "embedder": embedder.name,
        "generator": generator.name,
        "answering": settings.model_dump(include=ANSWERING_SETTINGS),
    }
    return {"results": results, "predictions": predictions}


# Every setting that changes an answer, recorded so a run can be repeated exactly.
ANSWERING_SETTINGS = {
    "chunk_size",
    "chunk_overlap",
    "rrf_k",
    "dense_weight",
    "candidates",
    "min_score",
    "min_support",
    "check_names",
    "focus_sentences",
    "focus_window",
    "focus_lexical_weight",
    "max_new_tokens",
    "do_sample",
    "temperature",
}


def summarize(rows, held_rows, k: int, seed: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for metric in ("exact_match", "f1", "containment"):
        summary[metric] = asdict(bootstrap([s[metric] for _, _, s in rows], seed=seed))
    kinds: dict[str, list[float]] = defaultdict(list)
    for q, _, s in rows:
        kinds[str(q.kind)].append(s["containment"])
    summary["containment_by_kind"] = {kind: statistics.fmean(v) for kind, v in kinds.items()}
    latencies = sorted(p.seconds for _, p, _ in rows)
    summary["latency_p50_s"] = latencies[len(latencies) // 2] if latencies else None
    summary["latency_p95_s"] = (
        latencies[min(int(0.95 * len(latencies)), len(latencies) - 1)] if latencies else None
    )
    summary["abstained_on_main"] = statistics.fmean(p.abstained for _, p, _ in rows) if rows else 0
    summary["abstention_on_held_out"] = (
        statistics.fmean(p.abstained for _, p in held_rows) if held_rows else None
    )
    with_docs = [(q, p) for q, p, _ in rows if p.retrieved and q.doc_id]
    if with_docs:
        summary[f"recall@{k}"] = statistics.fmean(
            recall_at_k(p.retrieved, q.doc_id, k) for q, p in with_docs
        )
        summary["mrr@10"] = statistics.fmean(
            reciprocal_rank(unique_in_order(p.retrieved), q.doc_id) for q, p in with_docs
        )
        summary["supported"] = statistics.fmean(bool(p.supported) for _, p in with_docs)
    return summary


@dataclass(frozen=True)
class Experiment:
    """What the cost-of-new-knowledge step needs from the run that prepared it."""

    dataset: Dataset
    documents: list[Document]
    held: set[str]
    held_questions: list[Question]
    settings: Settings
    embedder: Embedder
    ft: FineTuneConfig
    work: Path
    show_progress: bool = True


def new_knowledge(
    e: Experiment, generator: ChatGenerator, tuned: Any, with_rag: bool
) -> dict[str, Any]:
    """Add the held-out documents, time what each system needs, and score it on them."""
    out: dict[str, Any] = {}
    if not e.held_questions:
        return out
    if with_rag:
        full = write_corpus(e.documents, e.work / "base" / "corpus.jsonl")
        report = index_corpus(
            full, "eval", e.settings, embedder=e.embedder, show_progress=e.show_progress
        )
        index = load_index(e.settings, "eval")
        runner = Retrieval("rag", Pipeline(index, e.embedder, generator, e.settings))
        out["rag"] = {
            "seconds": report.seconds,
            "method": "incremental re-index",
            "new_documents": report.new,
            **_accuracy(runner, e.held_questions, "new knowledge (rag)", e.show_progress),
        }
    if tuned is not None:
        new_docs = [d for d in e.documents if d.id in e.held]
        train = [q for q in e.dataset.train if q.doc_id in e.held]
        examples = examples_for(e.ft.recipe, train, new_docs)
        model, result = fine_tune(
            generator,
            examples,
            e.ft,
            e.work / "finetune-new",
            base=tuned,
            show_progress=e.show_progress,
        )
        tuned_more = generator.with_model(model, "ft+new")
        runner = ClosedBook("ft", tuned_more, e.settings.abstain_text)
        out["ft"] = {
            "seconds": result.seconds,
            "method": "another fine-tuning run"
            + (" (time from its cached run)" if result.reused else ""),
            "examples": result.examples,
            **_accuracy(runner, e.held_questions, "new knowledge (ft)", e.show_progress),
        }
    return out


def _accuracy(runner, questions: list[Question], desc: str, show: bool) -> dict[str, float]:
    asked = progress(questions, total=len(questions), desc=desc, unit="q", show=show)
    values = [containment(runner.answer(q.id, q.question).reply, q.answers) for q in asked]
    return {"containment": statistics.fmean(values), "questions": len(values)}


def compare(results: dict[str, Any], a: str, b: str, seed: int) -> dict[str, Any]:
    """Paired difference a - b in containment over the same questions, and a verdict."""
    systems = results["systems"]
    if a not in systems or b not in systems:
        return {}
    xs = [s["containment"] for s in systems[a]["_scores"]]
    ys = [s["containment"] for s in systems[b]["_scores"]]
    diff = paired_bootstrap(xs, ys, seed=seed)
    prep = results["prepare"]
    cost = ""
    if "index" in prep and "finetune" in prep and prep["index"]["seconds"] > 0:
        ratio = prep["finetune"]["seconds"] / prep["index"]["seconds"]
        cost = f"; fine-tuning took {ratio:.0f}x the time of building the index"
    span = f"95% CI {diff.low:+.1%} to {diff.high:+.1%}"
    if diff.low > 0:
        verdict = f"{a} beats {b}: {diff.mean:+.1%} answer containment ({span}){cost}."
    elif diff.high < 0:
        verdict = f"{b} beats {a}: {a} - {b} = {diff.mean:+.1%} containment ({span}){cost}."
    else:
        verdict = f"no clear difference between {a} and {b}: {diff.mean:+.1%} ({span}){cost}."
    return {"a": a, "b": b, "metric": "containment", **asdict(diff), "verdict": verdict}
