"""Both generator backends on the real SmolLM2: the onnx engine against the transformers path.

The onnx model is converted once per session (about a minute) into a temporary cache.
"""

from __future__ import annotations

import json

import pytest

from rag.chain import Pipeline
from rag.generators import Generation, load_generator

from .conftest import run_rag, sample_questions, settings_env

pytestmark = pytest.mark.slow


def faiss_only(settings) -> None:
    if settings.vector_store != "faiss":
        pytest.skip("the generator does not depend on the vector store: run once")


@pytest.fixture(scope="session")
def onnx_settings(settings, tmp_path_factory):
    cache = tmp_path_factory.mktemp("model-cache")
    return settings.model_copy(update={"generator_backend": "onnx", "cache_dir": cache})


@pytest.fixture(scope="session")
def onnx_generator(onnx_settings):
    return load_generator(onnx_settings)


@pytest.fixture(scope="session")
def reference(settings, generator):
    """The transformers generator, whatever the default backend is."""
    if generator.backend == "transformers":
        return generator
    return load_generator(settings.model_copy(update={"generator_backend": "transformers"}))


def test_onnx_answers_the_sample_questions_as_well_as_transformers(
    pipeline: Pipeline, reference, onnx_generator
):
    """Right answers, not always identical text: int8 weights word 14% of greedy answers
    differently (bench/generation.py, 50 prompts) while finding the same facts."""
    faiss_only(pipeline.settings)
    right = {"transformers": 0, "onnx": 0}
    for name, generator in (("transformers", reference), ("onnx", onnx_generator)):
        answering = Pipeline(pipeline.index, pipeline.embedder, generator, pipeline.settings)
        for question, expected, _ in sample_questions():
            right[name] += expected.lower() in answering.ask(question).answer.lower()
    assert right["transformers"] >= 7, right
    assert right["onnx"] >= right["transformers"] - 1, right


def test_onnx_reports_usage_and_finish_reason_like_transformers(reference, onnx_generator):
    chat = [{"role": "user", "content": "Name three colours of the rainbow."}]
    short = onnx_generator.complete(chat, max_new_tokens=2)
    assert isinstance(short, Generation)
    assert short.finish_reason == "length" and short.completion_tokens == 2 and short.text
    assert short.prompt_tokens == reference.count_tokens(chat) == onnx_generator.count_tokens(chat)
    full = onnx_generator.complete(chat, max_new_tokens=200)
    assert full.finish_reason == "stop" and full.completion_tokens < 200
    assert "".join(onnx_generator.stream(chat, max_new_tokens=200)).strip() == full.text
    assert onnx_generator.count_text_tokens("hello world") == reference.count_text_tokens(
        "hello world"
    )


def test_rag_ask_runs_on_onnx_from_the_cache(
    index_settings, sample_index, onnx_settings, onnx_generator
):
    faiss_only(index_settings)
    env = settings_env(index_settings) | {
        "RAG_GENERATOR_BACKEND": "onnx",
        "RAG_CACHE_DIR": str(onnx_settings.model_cache),
    }
    result = run_rag(
        "ask", "What is the name of the station cat?", "--index", sample_index, "--json", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "Biscuit Admiral" in json.loads(result.stdout)["answer"]
    assert list(onnx_settings.model_cache.glob("generator-onnx-int8-*/rag-manifest.json"))


def test_a_missing_generator_folder_is_exit_2_naming_it(index_settings, sample_index, tmp_path):
    faiss_only(index_settings)
    missing = tmp_path / "no-such-model"
    env = settings_env(index_settings) | {"RAG_GENERATOR": str(missing)}
    result = run_rag("ask", "Who is the director?", "--index", sample_index, env=env)
    assert result.returncode == 2
    assert str(missing) in result.stderr and "Traceback" not in result.stderr


LICENSES = ("Apache-2.0", "CC0-1.0", "MPL-2.0", "BSD")


@pytest.fixture(scope="module")
def licenses_index(settings, embedder, tmp_path_factory) -> tuple[str, list[dict]]:
    """Four licence texts (policy style: "the Licensor", "You") exported from the machine's own
    /usr/share/common-licenses by corpora/licenses/export.py, indexed for real."""
    import subprocess
    import sys
    from pathlib import Path

    from rag.indexing import index_corpus

    out = tmp_path_factory.mktemp("licenses")
    export = Path(__file__).resolve().parents[2] / "corpora" / "licenses" / "export.py"
    subprocess.run([sys.executable, str(export), str(out / "all")], check=True)
    rows = [json.loads(x) for x in (out / "all" / "corpus.jsonl").read_text().splitlines()]
    corpus = out / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows if r["id"] in LICENSES))
    test = [json.loads(x) for x in (out / "all" / "test.jsonl").read_text().splitlines()]
    index_corpus(corpus, "licenses", settings, embedder=embedder, show_progress=False)
    return "licenses", [q for q in test if q["doc_id"] in LICENSES]


def test_answer_steps_are_chosen_per_generator_on_a_new_corpus_style(
    settings, embedder, reference, onnx_generator, licenses_index
):
    """The default SmolLM2 and its onnx conversion each get a choice measured on the index,
    kept beside it and read back without asking again; both then answer the licences."""
    from rag.answer_steps import CANDIDATES, stored_choices
    from rag.store import load_index

    faiss_only(settings)
    name, questions = licenses_index
    s = settings.model_copy(
        update={"answer_steps": "auto", "answer_steps_questions": 3, "answer_steps_seconds": 60}
    )
    asked = [q for q in questions if q["answers"]][:4]
    right = {}
    for generator in (reference, onnx_generator):
        index = load_index(s, name)
        pipeline = Pipeline(index, embedder, generator, s)
        steps = pipeline.answer_steps()
        assert steps in CANDIDATES.values() and "just now" in pipeline.steps_why
        answers = [pipeline.ask(q["question"]) for q in asked]
        right[generator.backend] = sum(
            any(a.lower() in ans.answer.lower() for a in q["answers"]) and not ans.abstained
            for q, ans in zip(asked, answers, strict=True)
        )
        assert all(a.steps == steps.name for a in answers)
        again = Pipeline(index, embedder, generator, s)
        assert again.answer_steps() == steps and "just now" not in again.steps_why
        index.close()
    choices = stored_choices(s, name)
    assert len(choices) == 2 and {c["generator"].split(":")[0] for c in choices} == {
        "transformers",
        "onnx",
    }
    for c in choices:
        assert set(c["figures"]) == set(CANDIDATES) and c["questions"] >= 1
        won = c["figures"][c["chosen"]]["answered_right"]
        assert all(won >= f["answered_right"] for f in c["figures"].values()), c
    assert min(right.values()) >= 1, right  # of 4 licence questions, each generator
