"""`run_evaluation` end to end in seconds: the fake embedder and a tiny random Llama.

The answers are nonsense; what is checked is the experiment's bookkeeping: every system runs
on the same questions, the fine-tuning runs record their curves, the raft run is trained on the
chain's prompts, the split and the generated questions are recorded and reported.
"""

from __future__ import annotations

import json
from pathlib import Path

from rag.config import Settings
from rag.evaluation.report import write_report
from rag.evaluation.run import run_evaluation
from rag.evaluation.systems import SYSTEMS
from rag.generators.transformers import TransformersGenerator as Generator

from ..evaluation_data import tiny_tuning, write_dataset
from .test_finetune_tiny_model import TinyGenerator


def evaluate(tmp_path: Path, fake_embedder, data: Path, **options):
    settings = Settings(index_root=tmp_path / "indexes", max_new_tokens=8)
    tiny = TinyGenerator()
    generator = Generator(tiny.model, tiny.tokenizer, "tiny", settings)
    out = tmp_path / "out"
    options.setdefault("min_unanswerable", 0)  # three people: one held out, as before
    run = run_evaluation(
        data,
        out,
        settings,
        fake_embedder,
        generator,
        seed=1,
        holdout=0.25,
        show_progress=False,
        **options,
    )
    return run, write_report(out, run)


def test_every_system_and_both_fine_tuning_runs(tmp_path: Path, fake_embedder):
    data = write_dataset(tmp_path / "people")
    run, paths = evaluate(tmp_path, fake_embedder, data, limit=6, tuning=tiny_tuning())
    assert [p.name for p in paths][-1] == "curves.png"
    results = run["results"]
    assert list(results["systems"]) == list(SYSTEMS)
    ft, raft = results["prepare"]["ft"], results["prepare"]["ft+rag"]
    assert ft["config"]["recipe"] == "sft" and raft["config"]["recipe"] == "raft"
    assert [p["step"] for p in ft["curve"]] == [0, 1, 2]
    assert ft["converged"] is False and ft["stopped"] == "step budget"
    assert raft["trained_on"].startswith("3 chain prompts"), "one person is held out"
    assert raft["test_probe"] == "rag prompt" and ft["test_probe"] == "closed-book"
    assert results["prepare"]["naive"]["chunks"] == 3
    assert set(results["verdict_by_kind"]) == {
        "memorization",
        "rephrased",
        "_prep_seconds",
        "_statement",
    }
    nk = results["new_knowledge"]
    assert nk["ft"]["facts"] == 1 and nk["rag"]["facts"] == 1, "one train pair per person"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**no** (step budget)" in report
    assert results["verdict_by_kind"]["_statement"] in report


def test_ft_rag_can_share_the_ft_model(tmp_path: Path, fake_embedder):
    data = write_dataset(tmp_path / "people")
    tuning = tiny_tuning()
    tuning = type(tuning)(tuning.config, "sft", None, 4)
    run, _ = evaluate(
        tmp_path, fake_embedder, data, limit=6, tuning=tuning, systems=("rag", "ft", "ft+rag")
    )
    prepare = run["results"]["prepare"]
    assert prepare["ft+rag"]["shared_with"] == "ft"
    assert run["results"]["setup"]["fine_tuning"]["ft+rag"] == "sft (the ft model)"


def test_a_corpus_only_folder_on_the_report_split(tmp_path: Path, fake_embedder):
    data = write_dataset(tmp_path / "people")
    (data / "test.jsonl").unlink()
    (data / "train.jsonl").unlink()
    run, _ = evaluate(
        tmp_path,
        fake_embedder,
        data,
        systems=("closed", "rag", "ft"),
        split="report",
        tuning=tiny_tuning(),
    )
    setup = run["results"]["setup"]
    assert setup["generated_questions"]["count"] == 8
    assert setup["split"] == "report" and setup["questions_in_split"] == 6, "p2, p3, p4"
    assert "generated cloze" in setup["fine_tuning"]["training_questions"]
    predictions = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").open()]
    assert {p["question_id"].split("-")[1] for p in predictions} <= {"p2", "p3", "p4"}
    held = setup["held_out_documents"]
    assert held and set(held) <= {"p2", "p3", "p4"}, "refusals measured on the scored half"
    assert setup["held_out_questions"] > 0
    assert "8 questions were generated" in (tmp_path / "out" / "report.md").read_text()


def test_native_unanswerable_questions_and_conversations_are_scored_apart(
    tmp_path: Path, fake_embedder
):
    data = write_dataset(tmp_path / "people")
    with open(data / "test.jsonl", "a") as handle:
        for n in range(3):
            row = {"id": f"none-{n}", "question": f"What car does Orla drive {n}?", "answers": []}
            handle.write(json.dumps(row | {"doc_id": None, "kind": "unanswerable"}) + "\n")
    turns = [
        {"role": "user", "content": "Where does Orla Vantrig live?"},
        {"role": "assistant", "content": "In Quessel."},
        {"role": "user", "content": "How old is she?"},
    ]
    rows = [
        {"id": "c1", "messages": turns, "answerable": True, "target": "41", "doc_ids": ["p1"]},
        {"id": "c2", "messages": turns[:1], "answerable": False, "target": "", "doc_ids": []},
    ]
    (data / "conversations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run, _ = evaluate(tmp_path, fake_embedder, data, systems=("naive", "rag"))
    setup, systems = run["results"]["setup"], run["results"]["systems"]
    assert setup["native_unanswerable_questions"] == 3 and setup["metric"] == "containment"
    assert setup["unanswerable_questions"] == 3 + setup["held_out_unanswerable_questions"]
    native = [p for p in run["predictions"] if p["slice"] == "unanswerable"]
    assert len(native) == 6 and {p["question_id"] for p in native} == {"none-0", "none-1", "none-2"}
    main = [p for p in run["predictions"] if p["slice"] == "main"]
    assert not any(p["question_id"].startswith("none") for p in main), "never scored as answers"
    for name in ("naive", "rag"):
        c = systems[name]["conversations"]
        assert c["conversations"] == 2 and c["f1"]["n"] == 1
        assert c["unanswerable_refused"]["n"] == 1
        assert (
            systems[name]["refusal"]["unanswerable_refused"]["n"]
            == 3 + (setup["held_out_unanswerable_questions"])
        )
    assert "p1" not in setup["held_out_documents"], "a conversation's document stays indexed"
    said = [p for p in run["predictions"] if p["question_id"] == "c1"]
    assert {p["standalone"] for p in said} == {"How old is Orla Vantrig?"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "### Conversations" in report and "Scored by **answer containment**" in report


def test_a_dataset_of_conversations_only_is_reported(tmp_path: Path, fake_embedder):
    data = write_dataset(tmp_path / "people")
    row = {"id": "none", "question": "What car does Orla drive?", "answers": []}
    (data / "test.jsonl").write_text(json.dumps(row | {"doc_id": None}) + "\n")
    turns = [{"role": "user", "content": "How old is Bram Ettow?"}]
    rows = [{"id": "c1", "messages": turns, "answerable": True, "target": "29", "doc_ids": ["p2"]}]
    (data / "conversations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run, _ = evaluate(tmp_path, fake_embedder, data, systems=("naive", "rag"))
    rag = run["results"]["systems"]["rag"]
    assert rag["score"]["n"] == 0 and rag["conversations"]["f1"]["n"] == 1
    assert "| rag |" in (tmp_path / "out" / "report.md").read_text()
