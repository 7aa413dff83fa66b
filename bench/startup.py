"""Item 5: time from process start to the first answer, model loads included, and what the
dequantized-generator cache (RAG_GENERATOR_CACHE=true) takes off it.

Each case is a fresh `rag ask --json` process over the sample corpus's index: without the cache
(the GGUF file is dequantized at every start), with the cache being written (first start), and
with it in place (every later start). The generator's load alone is timed in-process too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.measure import REPO, Target, quiet, ratio, stopwatch

QUESTION = "What is the name of the station cat?"


def ask_in_new_process(env: dict[str, str], question: str = QUESTION) -> tuple[float, dict]:
    rag = Path(sys.executable).with_name("rag")
    with stopwatch() as wall:
        done = subprocess.run(
            [str(rag), "ask", question, "--index", "sample", "--json"],
            # start-up is timed, not the one-off choice of answer steps an index makes once
            env={"RAG_ANSWER_STEPS": "sentence"} | env,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"rag ask failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall(), json.loads(done.stdout)


def run(quick: bool) -> dict:
    quiet()
    from rag.config import Settings
    from rag.generators import load_generator
    from rag.indexing import index_corpus

    scratch = Path(tempfile.mkdtemp(prefix="rag-bench-startup-"))
    cache = scratch / "cache"
    index_corpus(
        REPO / "corpora" / "sample", "sample", Settings(index_root=scratch), show_progress=False
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {"RAG_INDEX_ROOT": str(scratch), "RAG_CACHE_DIR": str(cache)}

    plain, answer = ask_in_new_process(env | {"RAG_GENERATOR_CACHE": "false"})
    filling, _ = ask_in_new_process(env | {"RAG_GENERATOR_CACHE": "true"})
    cached, cached_answer = ask_in_new_process(env | {"RAG_GENERATOR_CACHE": "true"})
    assert cached_answer["answer"] == answer["answer"], (cached_answer["answer"], answer["answer"])

    with stopwatch() as from_gguf:
        load_generator(Settings(generator_cache=False))
    with stopwatch() as from_cache:
        load_generator(Settings(generator_cache=True, cache_dir=cache))

    gain = ratio(plain, cached)
    # Ready = models and index loaded: the wall time less the answer's own (its timings).
    ready = cached - cached_answer["timings"]["total_ms"] / 1000
    ready_cold = filling - cached_answer["timings"]["total_ms"] / 1000
    targets = [
        Target("start-up to first answer: no cache / cache", gain, "> 1 (reported)", gain > 1),
        Target("fresh `rag ask` ready, cache in place (s)", ready, "< 10 (issue 13)", ready < 10),
    ]
    figures = [
        f"process start to first answer (rag ask, sample index): no cache {plain:.1f} s; "
        f"first start writing the cache {filling:.1f} s; with the cache {cached:.1f} s "
        f"({gain:.2f}x faster); same answer: {answer['answer']!r}",
        f"ready to answer (wall less the answer's own {cached_answer['timings']['total_ms']:.0f} "
        f"ms): {ready:.1f} s with the cache, about {ready_cold:.1f} s on the start that fills it",
        f"generator load alone: from GGUF (dequantizing) {from_gguf():.1f} s, from the "
        f"safetensors cache {from_cache():.1f} s ({ratio(from_gguf(), from_cache()):.1f}x)",
    ]
    return {
        "seconds": {
            "first_answer_no_cache": round(plain, 2),
            "first_answer_writing_cache": round(filling, 2),
            "first_answer_cached": round(cached, 2),
            "ready_cached": round(ready, 2),
            "generator_load_gguf": round(from_gguf(), 2),
            "generator_load_cached": round(from_cache(), 2),
        },
        "answer_ms": answer["timings"],
        "figures": figures,
        "targets": [t.as_dict() for t in targets],
        "plot": {
            "kind": "bar",
            "title": "Start-up to first answer",
            "ylabel": "seconds",
            "bars": {
                "no cache": round(plain, 2),
                "writing cache": round(filling, 2),
                "cached": round(cached, 2),
            },
        },
    }
