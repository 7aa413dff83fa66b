"""The `rag` command: argument parsing and printing only; the work happens in rag/*."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from rag.config import RetrievalMode, Settings
from rag.errors import InputError, RagError

app = typer.Typer(
    help="Retrieval-first question answering over your own documents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
log = logging.getLogger("rag")

IndexOption = Annotated[str | None, typer.Option("--index", "-i", help="index name")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON, no progress bars")]
KOption = Annotated[int | None, typer.Option("--k", "-k", min=1, max=50, help="passages")]
ModeOption = Annotated[
    RetrievalMode | None, typer.Option("--mode", help="dense, lexical or hybrid")
]


def reports_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Expected errors become one line on stderr and an exit code; no stack traces."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            command(*args, **kwargs)
        except RagError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("RAG_DEBUG"):
                raise
            typer.echo(
                f"unexpected error: {type(exc).__name__}: {exc} (RAG_DEBUG=1 shows more)", err=True
            )
            raise typer.Exit(1) from None

    return run


def quiet_libraries() -> None:
    """No model-loading progress bars or library warnings (under --json, and for `ask`
    unless --verbose)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        raise InputError(f"invalid settings: {exc}") from None


def emit(data: dict[str, Any] | list[Any]) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def pick_index(name: str | None, s: Settings) -> str:
    """The named index, or the only one there is."""
    from rag.store import list_indexes

    if name:
        return name
    existing = list_indexes(s)
    if len(existing) == 1:
        return existing[0]
    choices = ", ".join(existing) if existing else "none yet: run `rag index <corpus>`"
    raise InputError(f"name an index with --index (existing: {choices})")


@app.command("index")
@reports_errors
def index_command(
    corpus: Annotated[Path, typer.Argument(help="corpus directory or a .jsonl file")],
    index: IndexOption = None,
    rebuild: Annotated[bool, typer.Option(help="ignore the existing index")] = False,
    engine: Annotated[
        str, typer.Option(help="local, or ray: chunk and embed on a Ray cluster")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to use (default: RAY_ADDRESS or a local one)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Build or update an index: embeds only new or changed documents."""
    from rag.indexing import index_corpus

    if as_json:
        quiet_libraries()
    s = settings()
    name = index or corpus.resolve().name
    report = index_corpus(
        corpus,
        name,
        s,
        rebuild=rebuild,
        show_progress=not as_json,
        engine=engine,
        ray_address=ray_address,
    )
    if as_json:
        emit(report.as_dict())
        return
    counts = (
        f"{report.new} new, {report.changed} changed, {report.removed} removed, "
        f"{report.unchanged} unchanged"
    )
    if not report.written:
        typer.echo(f"index {name!r} is up to date: {counts} ({report.seconds:.2f} s)")
    else:
        typer.echo(f"indexed {corpus} into {name!r} ({report.version})")
        typer.echo(f"  documents: {report.documents} ({counts})")
        typer.echo(
            f"  chunks: {report.chunks} (+{report.chunks_added} -{report.chunks_removed}) in "
            f"{report.seconds:.1f} s, {report.chunks_per_second:.1f} chunks/s"
        )
    if report.calibration:
        typer.echo(f"  refusal: {refusal_line(report.calibration)}")
    if report.skipped:
        typer.echo(f"  skipped {len(report.skipped)}:")
        for where, why in report.skipped[:20]:
            typer.echo(f"    {where}: {why}")
        if len(report.skipped) > 20:
            typer.echo(f"    ... and {len(report.skipped) - 20} more")


@app.command("ask")
@reports_errors
def ask_command(
    question: Annotated[str, typer.Argument(help="the question")],
    index: IndexOption = None,
    k: KOption = None,
    mode: ModeOption = None,
    as_json: JsonOption = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show model-loading details and bars")
    ] = False,
) -> None:
    """Answer a question from an index, citing the passages used."""
    from rag.chain import check_question, open_pipeline

    s = settings()
    name = pick_index(index, s)
    check_question(question, s)  # before the slow model load
    if verbose:
        logging.getLogger("rag").setLevel(logging.INFO)
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        quiet_libraries()
    generator = None
    if s.generator_backend == "openai":  # a wrong server or model fails now, not after loading
        from rag.generators import load_generator

        generator = load_generator(s)
    if not as_json:
        typer.echo("loading models...", err=True)
    pipeline = open_pipeline(s, name, generator=generator)
    if pipeline.describe_steps() is None and not as_json and (status := steps_status(pipeline)):
        typer.echo("answer steps: " + status, err=True)
    pipeline.answer_steps(show_progress=not as_json)
    answer = pipeline.ask(question, k=k, mode=mode)
    if as_json:
        emit(answer.as_dict())
        return
    typer.echo(answer.answer)
    if answer.abstained:
        typer.echo(f"  ({answer.reason})")
    elif answer.quoted:
        typer.echo(f"  (the model's own answer was not used: {answer.reason})")
    typer.echo("\nsources:" if answer.sources else "\nno passages found")
    for src in answer.sources:
        mark = "*" if src.cited else " "
        typer.echo(
            f" {mark}[{src.number}] {src.doc_id}  {src.title!r}  chunk {src.chunk}  "
            f"similarity {src.similarity:.2f}"
        )
        typer.echo(f"      {' '.join(src.snippet.split())[:160]}")
    t = answer.timings
    typer.echo(
        f"\nretrieve {t['retrieve_ms']:.0f} ms, generate {t['generate_ms']:.0f} ms "
        f"(index {answer.index} {answer.version}; * = cited)"
    )


@app.command("search")
@reports_errors
def search_command(
    question: Annotated[str, typer.Argument(help="the query")],
    index: IndexOption = None,
    k: KOption = None,
    mode: ModeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Retrieve passages only (no generation)."""
    from rag.chain import open_pipeline

    if as_json:
        quiet_libraries()
    s = settings()
    pipeline = open_pipeline(s, pick_index(index, s), with_generator=False)
    sources = pipeline.search(question, k=k, mode=mode)
    if as_json:
        emit([src.__dict__ for src in sources])
        return
    for src in sources:
        typer.echo(f"[{src.number}] {src.doc_id} chunk {src.chunk} score {src.score:.4f}")
        typer.echo(f"    {' '.join(src.snippet.split())[:160]}")


@app.command("indexes")
@reports_errors
def indexes_command(as_json: JsonOption = False) -> None:
    """List indexes with their documents, chunks, embedder and build time."""
    from rag.answer_steps import stored_choices
    from rag.gate import describe_calibration
    from rag.store import describe_indexes, open_store

    s = settings()
    rows = describe_indexes(s)
    for row in rows:
        if "error" not in row:
            row["refusal"] = describe_calibration(s, row["name"], row["version"])
            row["answer_steps"] = stored_choices(s, row["name"])
    if as_json:
        emit(rows)
        return
    if not rows:
        typer.echo(f"no indexes in {open_store(s).where}; build one with `rag index <corpus>`")
        return
    for row in rows:
        if "error" in row:
            typer.echo(f"{row['name']}: unreadable ({row['error']})")
            continue
        typer.echo(
            f"{row['name']}: {row['documents']} documents, {row['chunks']} chunks, "
            f"{row['embedder']}, updated {row['updated_at']} "
            f"(last build {row['build_seconds']:.1f} s, {row['size_mb']:.1f} MB)"
        )
        typer.echo(f"  refusal: {refusal_line(row['refusal'])}")
        for choice in row["answer_steps"]:
            typer.echo(f"  answer steps: {steps_line(choice)}")


def dataset_summary(dataset) -> str:
    """What `rag eval` read: questions by kind (any kind is accepted and reported as its own),
    the unanswerable ones, the conversations, and the metric the answers will be scored by."""
    from collections import Counter

    kinds = Counter(str(q.kind) for q in dataset.test if not q.unanswerable)
    none = sum(q.unanswerable for q in dataset.test)
    parts = [f"{len(dataset.test)} questions"]
    if kinds:
        parts.append("answerable by kind: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
    parts.append(f"{none} unanswerable (answers [] or kind 'unanswerable')")
    if dataset.conversations:
        parts.append(f"{len(dataset.conversations)} conversations")
    return f"{dataset.name}: " + "; ".join(parts) + f"; scored by {dataset.metric}"


def steps_status(pipeline) -> str | None:
    """What `rag ask` says before the answer steps are chosen (None: they are read back)."""
    from rag.answer_steps import steps_path

    if steps_path(pipeline.settings, pipeline.index.name, pipeline.generator).is_file():
        return None
    return (
        f"choosing them for this index and {pipeline.generator.name} (once; at most about "
        f"{pipeline.settings.answer_steps_seconds:.0f} s, RAG_ANSWER_STEPS names one instead)"
    )


def steps_line(choice: dict) -> str:
    """One line on the answer steps chosen for one generator, with the winner's figure."""
    if "error" in choice:
        return choice["error"]
    won = choice["figures"].get(choice["chosen"], {}).get("answered_right", 0.0)
    others = ", ".join(
        f"{name} {f['answered_right']:.0%}"
        for name, f in choice["figures"].items()
        if name != choice["chosen"]
    )
    return (
        f"{choice['steps']} for {choice['generator']} ({won:.0%} of {choice['questions']} "
        f"questions from the index answered, against {others}; {choice['seconds']:.0f} s)"
    )


def refusal_line(refusal: dict) -> str:
    """One line on how an index refuses: its calibrated threshold and checked rates, or why not."""
    if refusal["gate"] != "calibrated":
        return f"fixed thresholds (min_sentence_score {refusal['threshold']}): {refusal['why']}"
    checked = refusal.get("checked") or {}
    rates = ""
    if checked.get("answerable_refused") is not None:
        rates = (
            f"; on held-out probes it refused {checked['unanswerable_refused']:.0%} of "
            f"unanswerable, {checked['answerable_refused']:.0%} of answerable"
        )
    return f"calibrated, threshold {refusal['threshold']:.2f} ({refusal['why']}){rates}"


@app.command("eval-retrieval")
@reports_errors
def eval_retrieval_command(
    data: Annotated[Path, typer.Argument(help="dataset folder (corpus.jsonl, test.jsonl)")],
    k: Annotated[int, typer.Option(min=1, max=50)] = 5,
    modes: Annotated[str, typer.Option(help="comma-separated")] = "dense,lexical,hybrid",
    limit: Annotated[int | None, typer.Option(min=1, help="first n questions")] = None,
    as_json: JsonOption = False,
) -> None:
    """Recall@k and MRR@10 of the gold document for each retrieval mode."""
    from rag.evaluation.retrieval import evaluate_retrieval

    if as_json:
        quiet_libraries()
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = set(chosen) - {"dense", "lexical", "hybrid"}
    if unknown or not chosen:
        raise InputError(f"unknown mode(s) {sorted(unknown)}: use dense, lexical, hybrid")
    scores = evaluate_retrieval(data, settings(), modes=chosen, k=k, limit=limit, quiet=as_json)
    if as_json:
        emit([score.__dict__ for score in scores])
        return
    for score in scores:
        typer.echo(
            f"{score.mode:8s} recall@{score.k} {score.recall:.3f}  MRR@10 {score.mrr:.3f}  "
            f"({score.questions} questions)"
        )


@app.command("eval")
@reports_errors
def eval_command(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="folder: corpus.jsonl (or .md/.txt documents), test.jsonl (else cloze "
            "questions are generated from the documents), train.jsonl if any",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="folder for report.md, results.json, ...")],
    systems: Annotated[str, typer.Option(help="comma-separated")] = "closed,naive,rag,ft,ft+rag",
    limit: Annotated[int | None, typer.Option(min=1, help="questions, stratified by kind")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    split: Annotated[
        str, typer.Option(help="tune, report or all: score one half of the documents")
    ] = "all",
    recipe: Annotated[str, typer.Option(help="ft's recipe: sft, sft-para, cpt or raft")] = "sft",
    rag_recipe: Annotated[
        str, typer.Option(help="ft+rag's recipe: raft, sft, sft-para, cpt, or 'same' (ft's model)")
    ] = "raft",
    method: Annotated[str, typer.Option(help="full or lora")] = "full",
    target: Annotated[
        float, typer.Option(help="fit on own training questions that counts as converged")
    ] = 0.95,
    max_steps: Annotated[int, typer.Option(help="step budget of each fine-tuning run")] = 400,
    max_minutes: Annotated[
        float, typer.Option(help="training-time budget of each fine-tuning run (minutes)")
    ] = 10.0,
    check_every: Annotated[int, typer.Option(help="steps between fit checks")] = 25,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank (alpha = 2 x rank)")] = 32,
    learning_rate: Annotated[
        float | None, typer.Option(help="default 3e-4 for full, 4e-4 for LoRA")
    ] = None,
    retrain: Annotated[bool, typer.Option(help="ignore saved fine-tuned weights")] = False,
    metric: Annotated[
        str,
        typer.Option(
            help="auto (containment for short gold answers, token F1 for written ones), "
            "containment or f1"
        ),
    ] = "auto",
) -> None:
    """Compare closed-book, naive RAG, this project's RAG, fine-tuned, and both."""
    from rag.embeddings import load_embedder
    from rag.evaluation.data import load_dataset
    from rag.evaluation.finetune import FineTuneConfig
    from rag.evaluation.report import write_report
    from rag.evaluation.run import FineTuning, run_evaluation
    from rag.evaluation.systems import SYSTEMS
    from rag.generators import load_generator
    from rag.generators.transformers import load_transformers

    chosen = tuple(x.strip() for x in systems.split(",") if x.strip())
    if not chosen or set(chosen) - set(SYSTEMS):
        raise InputError(f"--systems takes a comma-separated subset of {', '.join(SYSTEMS)}")
    if method not in ("lora", "full"):
        raise InputError("--method is lora or full")
    if split not in ("tune", "report", "all"):
        raise InputError("--split is tune, report or all")
    if metric not in ("auto", "containment", "f1"):
        raise InputError("--metric is auto, containment or f1")
    config = FineTuneConfig(
        method=method,  # type: ignore[arg-type]
        learning_rate=learning_rate,
        lora_rank=lora_rank,
        target=target,
        check_every=check_every,
        max_steps=max_steps,
        max_minutes=max_minutes,
        seed=seed,
    )
    tuning = FineTuning(config, recipe, None if rag_recipe == "same" else rag_recipe).validate()
    dataset = load_dataset(data)  # bad data fails here, before models load or --out is made
    if dataset.generated:
        first = dataset.test[0]
        typer.echo(
            f"{data} has no test.jsonl: generated {len(dataset.test)} cloze questions from its "
            f"documents, e.g. {first.question!r} -> {first.answers[0]!r}"
        )
    typer.echo(dataset_summary(dataset), err=True)
    s = settings()
    # Fine-tuning trains the torch model in this process: with onnx every system answers on
    # transformers; a model server still answers closed, naive and rag.
    tunes = bool({"ft", "ft+rag"} & set(chosen))
    if tunes and s.generator_backend == "onnx":
        generator = load_transformers(s)
    else:
        generator = load_generator(s)  # a model server's errors show before anything loads
        if tunes and s.generator_backend == "openai":
            from rag.generators.openai_server import ServedAndTrainable

            generator = ServedAndTrainable(generator, load_transformers(s))
    run = run_evaluation(
        dataset,
        out,
        s,
        load_embedder(s),
        generator,
        systems=chosen,
        limit=limit,
        seed=seed,
        tuning=tuning,
        split=split,  # type: ignore[arg-type]
        retrain=retrain,
        metric=metric,
    )
    for path in write_report(out, run):
        typer.echo(f"wrote {path}")
    results = run["results"]
    for name in ("ft", "ft+rag"):
        p = results["prepare"].get(name)
        if p and "shared_with" not in p:
            state = "converged" if p["converged"] else f"NOT converged ({p['stopped']})"
            fit = "-" if p["fit"] is None else f"{p['fit']:.0%}"
            typer.echo(
                f"{name}: {p['config']['recipe']} {state} after {p['steps']} steps, "
                f"{p['seconds']:.0f} s; fit {fit} (target {p['target']:.0%})"
            )
    typer.echo(results["paired"].get("verdict", ""))
    typer.echo(results.get("verdict_by_kind", {}).get("_statement", ""))


@app.command("serve")
@reports_errors
def serve_command(
    index: Annotated[list[str], typer.Option("--index", "-i", help="index to serve (repeat)")],
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Serve the HTTP API and the web page (models and indexes load once, in the background)."""
    import uvicorn

    from api.app import create_app  # the one place the core's CLI reaches into api/
    from rag.store import check_name, load_index

    s = settings()
    names = [check_name(n) for n in index]
    for name in names:  # fail fast on a missing or broken index, before loading models
        load_index(s, name).close()
    if s.generator_backend == "openai":  # a model server that is wrong now stays wrong: exit 2
        from rag.generators.openai_server import load_openai

        load_openai(s).close()
    uvicorn.run(create_app(s, names), host=host, port=port, log_level="info")


@app.command("generator-folder")
@reports_errors
def generator_folder_command() -> None:
    """Print a plain model folder of the configured generator, for a model server to load
    (the packaged GGUF is dequantized once, into the cache `rag ask` uses too)."""
    from rag.generators.openai_server import plain_model_folder

    quiet_libraries()
    typer.echo(plain_model_folder(settings()))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
