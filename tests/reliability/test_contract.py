"""Promise 8: the API contract, checked by schemathesis with every check it has.

Against the real app under uvicorn (fake models, so hundreds of generated requests fit in
CI), once without an API key and once with one, so that the auth checks run too. The real
server with the real models is fuzzed for server errors in tests/integration/test_server.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import fake_server_at, scaled

KEY = "contract-key-1c2d3e"


@pytest.mark.parametrize("api_key", [None, KEY], ids=["open", "with-key"])
def test_schemathesis_all_checks_pass(tmp_path: Path, api_key: str | None) -> None:
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis, "schemathesis is installed by `make install`"
    env = {"RAG_API_KEY": api_key} if api_key else {}
    with fake_server_at(tmp_path / "server", **env) as server:
        result = subprocess.run(
            [
                schemathesis,
                "--config-file",
                str(Path(__file__).with_name("schemathesis.toml")),
                "run",
                f"{server.base}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(scaled(40)),
                "--request-timeout",
                "30",
                *(["--header", f"X-API-Key: {api_key}"] if api_key else []),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
    summary = result.stdout[result.stdout.find("Test cases:") :][:300]
    print(f"schemathesis ({'with key' if api_key else 'open'}): {' '.join(summary.split())}")
    failures = result.stdout[result.stdout.find("FAILURES") :][:8000]
    assert result.returncode == 0, failures or result.stdout[-4000:] + result.stderr[-2000:]
