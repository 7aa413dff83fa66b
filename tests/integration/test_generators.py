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
