"""`rag eval`: the same base model closed-book, naive RAG, the project's RAG, fine-tuned, both.

Everything runs through the project's own pieces (index_corpus, Pipeline, Generator); this
module only arranges the experiment: a held-out slice of documents for abstention and for the
cost of new knowledge, the systems, the scoring, and the numbers the report is written from.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rag.chain import Pipeline
from rag.config import Settings
from rag.documents import Document
from rag.embeddings import Embedder
from rag.errors import InputError
from rag.evaluation.conversations import ask_conversations
from rag.evaluation.data import (
    SHORT_ANSWER_WORDS,
    Dataset,
    Question,
    Split,
    cloze_questions,
    in_split,
    load_dataset,
)
from rag.evaluation.finetune import (
    FineTuneConfig,
    FineTuneResult,
    Probe,
    curve_summary,
    fine_tune,
    sample_fit_probe,
)
from rag.evaluation.memory import PeakMemory
from rag.evaluation.metrics import bootstrap, containment, exact_match, f1_score, paired_bootstrap
from rag.evaluation.recipes import RECIPES, build_training, closed_book
from rag.evaluation.refusal import (
    MIN_UNANSWERABLE,
    choose_held,
    coverage_curve,
    refusal_figures,
    split_held,
)
from rag.evaluation.report import prep_seconds
from rag.evaluation.retrieval import recall_at_k, reciprocal_rank, unique_in_order
from rag.evaluation.systems import (
    SYSTEMS,
    ClosedBook,
    Naive,
    Prediction,
    Retrieval,
    answered_on,
)
from rag.generators import ChatGenerator
from rag.indexing import index_corpus
from rag.progress import progress
from rag.store import load_index

log = logging.getLogger(__name__)


def pick_questions(questions: list[Question], held: set[str], limit: int | None, seed: int):
    """A seeded sample stratified by kind (main set) and the questions on held-out documents."""
    rng = random.Random(seed)
    main = [q for q in questions if q.doc_id not in held]
    on_held = [q for q in questions if q.doc_id in held]
    rng.shuffle(main)
    rng.shuffle(on_held)
    if limit:  # every question on the held-out documents is kept: refusal needs them
        main = stratified(main, limit)
    return main, on_held


def stratified(questions: list[Question], limit: int) -> list[Question]:
    """Up to `limit` questions taking kinds in turn (the input order is kept within a kind)."""
    by_kind: dict[str | None, list[Question]] = defaultdict(list)
    for q in questions:
        by_kind[q.kind].append(q)
    picked: list[Question] = []
    while len(picked) < min(limit, len(questions)):
        for kind in sorted(by_kind, key=str):
            if by_kind[kind] and len(picked) < limit:
                picked.append(by_kind[kind].pop())
    return picked


def write_corpus(documents: list[Document], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for d in documents:
            record = {"id": d.id, "title": d.title, "text": d.text, "metadata": d.metadata}
            handle.write(json.dumps(record) + "\n")
    return path


def score(prediction: Prediction, question: Question, metric: str) -> dict[str, float]:
    """The three answer metrics, and `score`: the one the dataset is judged by (`metric`)."""
    values = {
        "exact_match": exact_match(prediction.reply, question.answers),
        "f1": f1_score(prediction.reply, question.answers),
        "containment": containment(prediction.reply, question.answers),
    }
    return values | {"score": values[metric]}


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


@dataclass(frozen=True)
class FineTuning:
    """How the fine-tuned systems get their models: `ft` from `recipe`; `ft+rag` from
    `rag_recipe` (None: the `ft` model itself). `config` holds method, optimiser and budget."""

    config: FineTuneConfig = field(default_factory=FineTuneConfig)
    recipe: str = "sft"
    rag_recipe: str | None = "raft"
    test_probe_size: int = 16  # test questions asked at each check (a small fixed sample)

    def validate(self) -> FineTuning:
        self.config.validate()
        for name in (self.recipe, self.rag_recipe):
            if name is not None and name not in RECIPES:
                raise InputError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
        return self


def run_evaluation(
    data: Path | Dataset,
    out: Path,
    settings: Settings,
    embedder: Embedder,
    generator: ChatGenerator,
    *,
    systems: tuple[str, ...] = SYSTEMS,
    limit: int | None = None,
    seed: int = 0,
    holdout: float = 0.1,
    tuning: FineTuning | None = None,
    split: Split = "all",
    retrain: bool = False,
    show_progress: bool = True,
    min_unanswerable: int = MIN_UNANSWERABLE,
    metric: str = "auto",
) -> dict[str, Any]:
    """Prepare, answer, score; returns every number (write_report writes them to `out`).

    The data and settings are checked before anything is written under `out`. Questions the
    dataset marks unanswerable are asked of the whole index and scored as refusals, beside the
    questions about documents held out of it; `metric` is containment, f1 or auto (the
    dataset's: containment for short gold answers, token F1 for written ones).
    """
    tuning = (tuning or FineTuning(config=FineTuneConfig(seed=seed))).validate()
    if split not in ("tune", "report", "all"):
        raise InputError(f"--split is tune, report or all, not {split!r}")
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    if metric not in ("auto", "containment", "f1"):
        raise InputError(f"--metric is auto, containment or f1, not {metric!r}")
    metric = dataset.metric if metric == "auto" else metric
    documents = dataset.documents
    in_half = in_split(dataset.test, split)
    conversations = in_split(dataset.conversations, split)
    scored = [q for q in in_half if not q.unanswerable]
    native = [q for q in in_half if q.unanswerable]
    if not scored and not conversations:
        raise InputError(f"no answerable question of {dataset.name} falls in the {split!r} split")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    # held out from the scored half, so that refusals are measured where the scores are; the
    # dataset's own unanswerable questions count towards the minimum
    # never a document a conversation needs: its turns would become unanswerable unseen
    needed = {d for c in conversations for d in c.doc_ids}
    candidates = [q for q in scored if q.doc_id not in needed]
    held = choose_held(candidates, documents, rng, holdout, max(0, min_unanswerable - len(native)))
    questions, held_questions = pick_questions(scored, held, limit, seed)
    if limit:
        native = random.Random(seed).sample(native, min(len(native), limit))
    base_docs = [d for d in documents if d.id not in held]
    unanswerable, _ = split_held(held_questions, base_docs)
    held_questions = held_questions + native
    no_answer = {q.id for q in unanswerable} | {q.id for q in native}
    settings = settings.model_copy(update={"index_root": out / "index"})
    work = out / "work"
    shutil.rmtree(settings.index_root, ignore_errors=True)
    results: dict[str, Any] = {"prepare": {}, "systems": {}, "new_knowledge": {}}
    chosen = set(systems)

    def new_pipeline(model_generator: ChatGenerator) -> Pipeline:
        index = load_index(settings, "eval")
        return Pipeline(index, embedder, model_generator, settings)

    # Preparation: an index build for the rag systems, a fine-tuning run for the ft ones.
    generators = {"closed": generator, "rag": generator, "naive": generator}
    needs_raft = "raft" in {tuning.recipe, tuning.rag_recipe}
    if {"rag", "ft+rag"} & chosen or ({"ft"} & chosen and needs_raft):
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
            "calibration": report.calibration,
        }
    naive = None
    if "naive" in chosen:
        with PeakMemory() as memory:
            naive = Naive("naive", base_docs, embedder, generator, settings.abstain_text)
        results["prepare"]["naive"] = {
            "seconds": naive.build_seconds,
            "peak_rss_mb": memory.peak_mb,
            "chunks": len(naive.chunks),
            "size_mb": naive.index.ntotal * embedder.dimension * 4 / 1e6,
        }

    train, train_source = training_questions(dataset, held)
    cache = work / "finetune" if retrain else out.parent / ".finetune-cache"
    probe_questions = stratified(list(questions), tuning.test_probe_size)
    prompter = new_pipeline(generator) if "index" in results["prepare"] else None
    tuned: dict[str, Any] = {}
    wanted = [("ft", tuning.recipe)] if "ft" in chosen else []
    if "ft+rag" in chosen:
        wanted.append(("ft+rag", tuning.rag_recipe or tuning.recipe))
    for name, recipe in wanted:
        if recipe in tuned:  # ft+rag shares the ft model
            results["prepare"][name] = results["prepare"]["ft"] | {"shared_with": "ft"}
            generators[name] = generators["ft"]
            continue
        rag_probe = name == "ft+rag"
        prompt_for = prompter.prompt_messages if prompter else None
        training = build_training(recipe, train, base_docs, prompt_for)
        test_probe = Probe(
            [
                prompt_for(q.question) if rag_probe and prompt_for else closed_book(q.question)
                for q in probe_questions
            ],
            [q.answers for q in probe_questions],
            [str(q.kind) for q in probe_questions],
        )
        config = replace(tuning.config, recipe=recipe)  # type: ignore[arg-type]
        fit = sample_fit_probe(training.fit_pairs, config.fit_sample, config.seed)
        model, result = fine_tune(
            generator,
            training.examples,
            config,
            cache,
            fit=fit,
            test=test_probe,
            show_progress=show_progress,
        )
        tuned[recipe] = model
        results["prepare"][name] = finetune_record(result, config, training.note, train_source)
        results["prepare"][name]["test_probe"] = "rag prompt" if rag_probe else "closed-book"
        generators[name] = generator.with_model(
            model, f"{generator.name} + {recipe}/{config.method}"
        )

    runners: dict[str, Any] = {}
    for name in systems:
        if name == "naive":
            runners[name] = naive
        elif name.endswith("rag"):
            runners[name] = Retrieval(name, new_pipeline(generators[name]))
        else:
            runners[name] = ClosedBook(name, generators[name], settings.abstain_text)

    predictions: list[dict[str, Any]] = []
    scores: dict[str, list[dict[str, float]]] = {}
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
            rows.append((q, p, score(p, q, metric)))
        held_bar = progress(
            held_questions,
            total=len(held_questions),
            desc=f"held-out questions ({name})",
            unit="q",
            show=show_progress,
        )
        held_rows = [(q, runner.answer(q.id, q.question)) for q in held_bar]
        results["systems"][name] = summarize(rows, held_rows, settings.k, seed, no_answer)
        for q, p, s in rows:
            predictions.append(asdict(p) | s | {"kind": q.kind, "slice": "main", "gold": q.answers})
        for q, p in held_rows:
            where = (
                "unanswerable"
                if q.unanswerable
                else "held-out"
                if q.id in no_answer
                else "held-out, still answerable"
            )
            predictions.append(asdict(p) | {"kind": q.kind, "slice": where, "gold": q.answers})
        if conversations:
            summary, rows_out = ask_conversations(
                runner, conversations, settings, seed, show_progress, name
            )
            results["systems"][name]["conversations"] = summary
            predictions.extend(rows_out)
        scores[name] = [s | {"kind": str(q.kind)} for q, _, s in rows]

    experiment = Experiment(
        dataset, documents, held, held_questions, settings, embedder, tuning, work, show_progress
    )
    ft_model = tuned.get(tuning.recipe) if "ft" in chosen else None
    results["new_knowledge"] = new_knowledge(experiment, generator, ft_model, "rag" in runners)
    results["paired"] = compare(results, scores, "rag", "ft", seed)
    results["verdict_by_kind"] = verdict_by_kind(results, scores, seed)
    results["setup"] = {
        "dataset": str(dataset.root),
        "split": split,
        "split_rule": "documents halved by sha256(doc_id)[0] % 2 (0: tune, 1: report); "
        "questions without a doc_id by their own id",
        "questions": len(questions),
        "questions_in_split": len(scored),
        "metric": metric,
        "metric_rule": "containment where the median gold answer has at most "
        f"{SHORT_ANSWER_WORDS} words (extracted spans), else token F1 (written answers)",
        "native_unanswerable_questions": len(native),
        "conversations": len(conversations),
        "generated_questions": generated_summary(dataset),
        "held_out_documents": sorted(held),
        "held_out_questions": len(held_questions),
        "unanswerable_questions": len(no_answer),
        "held_out_unanswerable_questions": len(unanswerable),
        "still_answerable_questions": len(held_questions) - len(no_answer),
        "unanswerable_rule": "a question on a held-out document whose gold answer no document "
        "left in the index holds (normalised containment); the others are still answerable",
        "refusal_gates": {
            name: runner.gate() for name, runner in runners.items() if hasattr(runner, "gate")
        },
        "answer_steps": {
            name: runner.pipeline.describe_steps()
            for name, runner in runners.items()
            if hasattr(runner, "pipeline")
        },
        "seed": seed,
        "limit": limit,
        "systems": list(systems),
        "fine_tuning": {
            "ft": tuning.recipe,
            "ft+rag": tuning.rag_recipe or f"{tuning.recipe} (the ft model)",
            "config": asdict(tuning.config),
            "training_questions": train_source,
        },
        "k": settings.k,
        "retrieval_mode": settings.retrieval_mode,
        "embedder": embedder.name,
        "generator": generator.name,
        "answered_on": {
            name: answered_on(generators[name], trained=name.startswith("ft")) for name in systems
        },
        "answering": settings.model_dump(include=ANSWERING_SETTINGS),
    }
    return {"results": results, "predictions": predictions}


def training_questions(dataset: Dataset, held: set[str]) -> tuple[list[Question], str]:
    """What fine-tuning may train on (never the held-out documents), and where it came from."""
    if dataset.train:
        return [q for q in dataset.train if q.doc_id not in held], "train.jsonl"
    if dataset.generated:
        source = "the generated cloze questions (as in FineTuneBench's memorization kind)"
        return [q for q in dataset.test if q.doc_id not in held], source
    docs = [d for d in dataset.documents if d.id not in held]
    return cloze_questions(docs), "cloze questions generated from the documents (no train.jsonl)"


def generated_summary(dataset: Dataset) -> dict[str, Any] | None:
    if not dataset.generated:
        return None
    return {
        "count": len(dataset.test),
        "how": "cloze: a sentence with a number (else a name) blanked; the answer is that span",
        "examples": [asdict(q) for q in dataset.test[:: max(1, len(dataset.test) // 5)][:5]],
    }


def finetune_record(
    result: FineTuneResult, config: FineTuneConfig, note: str, source: str
) -> dict[str, Any]:
    record = asdict(result) | {"config": asdict(config), "trained_on": note, "source": source}
    return record | {"curve_ends": curve_summary(result)}


# Every setting that changes an answer, recorded so a run can be repeated exactly.
ANSWERING_SETTINGS = {
    "answer_steps",
    "answer_steps_questions",
    "answer_steps_seconds",
    "answer_prompt",
    "chunk_size",
    "chunk_overlap",
    "rrf_k",
    "dense_weight",
    "candidates",
    "min_score",
    "min_support",
    "min_sentence_score",
    "refusal_gate",
    "calibration_probes",
    "calibration_false_refusal",
    "refusal_threshold",
    "check_names",
    "pinned_names_pass",
    "quote_sentences",
    "quote_when_unknown",
    "reranker",
    "focus_sentences",
    "focus_window",
    "focus_lexical_weight",
    "max_new_tokens",
    "do_sample",
    "temperature",
}


def summarize(rows, held_rows, k: int, seed: int, no_answer: set[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for metric in ("exact_match", "f1", "containment", "score"):
        summary[metric] = asdict(bootstrap([s[metric] for _, _, s in rows], seed=seed))
    kinds: dict[str, list[float]] = defaultdict(list)
    for q, _, s in rows:
        kinds[str(q.kind)].append(s["score"])
    summary["score_by_kind"] = {
        kind: asdict(bootstrap(v, seed=seed)) for kind, v in sorted(kinds.items())
    }
    latencies = sorted(p.seconds for _, p, _ in rows)
    summary["latency_p50_s"] = latencies[len(latencies) // 2] if latencies else None
    summary["latency_p95_s"] = (
        latencies[min(int(0.95 * len(latencies)), len(latencies) - 1)] if latencies else None
    )
    summary["abstained_on_main"] = statistics.fmean(p.abstained for _, p, _ in rows) if rows else 0
    quoted = [s["score"] for _, p, s in rows if p.quoted]
    summary["quoted"] = {
        "share": len(quoted) / len(rows) if rows else 0.0,
        "score": statistics.fmean(quoted) if quoted else None,
        "n": len(quoted),
    }
    unanswerable = [(q, p) for q, p in held_rows if q.id in no_answer]
    summary["abstention_on_held_out"] = (
        statistics.fmean(p.abstained for _, p in unanswerable) if unanswerable else None
    )
    summary["refusal"] = refusal_figures(
        [p.abstained for _, p, _ in rows],
        [p.abstained for _, p in unanswerable],
        [p.abstained for q, p in held_rows if q.id not in no_answer],
        seed,
    )
    if any(p.answerability is not None for _, p, _ in rows):
        summary["coverage_curve"] = coverage_curve(
            [p.answerability for _, p, _ in rows],
            [s["score"] for _, _, s in rows],
            [not p.abstained for _, p, _ in rows],
            [p.answerability for _, p in unanswerable],
            [not p.abstained for _, p in unanswerable],
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
    tuning: FineTuning
    work: Path
    show_progress: bool = True


def new_knowledge(
    e: Experiment, generator: ChatGenerator, tuned: Any, with_rag: bool
) -> dict[str, Any]:
    """Add the held-out documents, time what each system needs, and score it on them.

    The cost per new fact divides that time by the training questions on the new documents
    (the facts fine-tuning is shown), or by the questions asked when there are none.
    """
    out: dict[str, Any] = {}
    if not e.held_questions:
        return out
    train, _ = training_questions(e.dataset, set())
    new_train = [q for q in train if q.doc_id in e.held]
    facts = len(new_train) or len(e.held_questions)
    if with_rag:
        full = write_corpus(e.documents, e.work / "base" / "corpus.jsonl")
        report = index_corpus(
            full, "eval", e.settings, embedder=e.embedder, show_progress=e.show_progress
        )
        index = load_index(e.settings, "eval")
        runner = Retrieval("rag", Pipeline(index, e.embedder, generator, e.settings))
        out["rag"] = {
            "seconds": report.seconds,
            "seconds_per_fact": report.seconds / facts,
            "facts": facts,
            "method": "incremental re-index",
            "new_documents": report.new,
            **_accuracy(runner, e.held_questions, "new knowledge (rag)", e.show_progress),
        }
    recipe = e.tuning.recipe
    if tuned is not None and (recipe == "raft" or (recipe != "cpt" and not new_train)):
        log.warning("no further fine-tuning for new knowledge: %s has nothing to train on", recipe)
    elif tuned is not None:
        new_docs = [d for d in e.documents if d.id in e.held]
        training = build_training(e.tuning.recipe, new_train, new_docs)
        config = replace(e.tuning.config, recipe=e.tuning.recipe)  # type: ignore[arg-type]
        fit = sample_fit_probe(training.fit_pairs, config.fit_sample, config.seed)
        model, result = fine_tune(
            generator,
            training.examples,
            config,
            e.work / "finetune-new",
            fit=fit,
            base=tuned,
            show_progress=e.show_progress,
        )
        tuned_more = generator.with_model(model, "ft+new")
        runner = ClosedBook("ft", tuned_more, e.settings.abstain_text)
        out["ft"] = {
            "seconds": result.seconds,
            "seconds_per_fact": result.seconds / facts,
            "facts": facts,
            "method": f"another fine-tuning run ({result.steps} steps, "
            + ("converged" if result.converged else f"not converged: {result.stopped}")
            + ")",
            "examples": result.examples,
            **_accuracy(runner, e.held_questions, "new knowledge (ft)", e.show_progress),
        }
    return out


def _accuracy(runner, questions: list[Question], desc: str, show: bool) -> dict[str, float]:
    asked = progress(questions, total=len(questions), desc=desc, unit="q", show=show)
    values = [containment(runner.answer(q.id, q.question).reply, q.answers) for q in asked]
    return {"containment": statistics.fmean(values), "questions": len(values)}


def compare(
    results: dict[str, Any], scores: dict[str, list[dict]], a: str, b: str, seed: int
) -> dict[str, Any]:
    """Paired difference a - b in the answer score over the same questions, and a verdict."""
    if a not in scores or b not in scores:
        return {}
    xs = [s["score"] for s in scores[a]]
    ys = [s["score"] for s in scores[b]]
    diff = paired_bootstrap(xs, ys, seed=seed)
    cost = ""
    prep_a, prep_b = prep_seconds(results, a), prep_seconds(results, b)
    if prep_a > 0 and prep_b > 0:
        cost = f"; preparing {b} took {prep_b / prep_a:.0f}x the time of preparing {a}"
    span = f"95% CI {diff.low:+.1%} to {diff.high:+.1%}"
    if diff.low > 0:
        verdict = f"{a} beats {b}: {diff.mean:+.1%} answer score ({span}){cost}."
    elif diff.high < 0:
        verdict = f"{b} beats {a}: {a} - {b} = {diff.mean:+.1%} answer score ({span}){cost}."
    else:
        verdict = f"no clear difference between {a} and {b}: {diff.mean:+.1%} ({span}){cost}."
    return {"a": a, "b": b, "metric": "score", **asdict(diff), "verdict": verdict}


def verdict_by_kind(
    results: dict[str, Any], scores: dict[str, list[dict]], seed: int
) -> dict[str, Any]:
    """For each kind: the best system, and rag against every other system (paired)."""
    if "rag" not in scores:
        return {}
    kinds = sorted({s["kind"] for s in scores["rag"]})
    out: dict[str, Any] = {}
    for kind in kinds:
        rows = [i for i, s in enumerate(scores["rag"]) if s["kind"] == kind]
        means = {
            name: statistics.fmean(values[i]["score"] for i in rows)
            for name, values in scores.items()
        }
        versus = {}
        for name in scores:
            if name == "rag":
                continue
            diff = paired_bootstrap(
                [scores["rag"][i]["score"] for i in rows],
                [scores[name][i]["score"] for i in rows],
                seed=seed,
            )
            winner = "rag" if diff.low > 0 else name if diff.high < 0 else "tie"
            versus[name] = asdict(diff) | {"winner": winner}
        best = max(means, key=lambda n: (means[n], n == "rag"))
        beats_rag = [n for n, v in versus.items() if v["winner"] == n]
        out[kind] = {
            "questions": len(rows),
            "score": means,
            "best": best,
            "rag_minus": versus,
            "beats_rag": beats_rag,
        }
    out["_prep_seconds"] = {name: prep_seconds(results, name) for name in scores}
    out["_statement"] = kind_statement(out)
    return out


def kind_statement(by_kind: dict[str, Any]) -> str:
    """One plain sentence per kind where a fine-tuned system beats rag, or that none does."""
    wins = []
    for kind, v in by_kind.items():
        if kind.startswith("_"):
            continue
        for name in v["beats_rag"]:
            d = v["rag_minus"][name]
            wins.append(
                f"{name} beats rag on {kind} questions by {-d['mean']:.1%} "
                f"(95% CI {-d['high']:+.1%} to {-d['low']:+.1%})"
            )
    if not wins:
        return "No system beats rag on any kind of question (paired 95% intervals)."
    return "; ".join(wins) + "."
