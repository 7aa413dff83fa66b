"""Promise 3: serving while re-indexing loses nothing (the real `rag serve` and `rag index`).

Clients on loopback keep asking while the served index is updated incrementally several
times and then rebuilt. No request may fail other than with the designed 503/504, every
answer names the index version it used, and no client ever sees versions go backwards.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ..conftest import SAMPLE
from ..integration.conftest import run_rag
from .conftest import scaled, serving

pytestmark = pytest.mark.slow
SEARCH = {"question": "What is the name of the station cat?", "k": 3}
ASK = {"question": "What is the station's postal box number?", "k": 3}
CHAT = {"messages": [{"role": "user", "content": "Who is the station director?"}]}


def client_loop(base: str, kind: str, stop: threading.Event, seen: list, errors: list) -> None:
    """One client, one request at a time: (status, version) of each answer, in order."""
    with httpx.Client(base_url=base, timeout=120) as client:
        while not stop.is_set():
            try:
                if kind == "search":
                    response = client.post("/search", json=SEARCH)
                elif kind == "ask":
                    response = client.post("/ask", json=ASK)
                else:
                    response = client.post("/v1/chat/completions", json=CHAT)
            except httpx.HTTPError as exc:
                errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                continue
            body = response.json() if response.status_code != 204 else {}
            version = body.get("version") or body.get("system_fingerprint")
            seen.append((response.status_code, version))


def test_requests_during_reindexing_all_succeed_and_versions_only_move_forward(
    tmp_path: Path,
) -> None:
    corpus = Path(shutil.copytree(SAMPLE, tmp_path / "sample"))
    env = {"RAG_INDEX_ROOT": str(tmp_path / "indexes")}
    first = run_rag("index", str(corpus), "--index", "sample", "--json", env=env)
    assert first.returncode == 0, first.stderr
    published = [json.loads(first.stdout)["version"]]
    command = [sys.executable, "-m", "rag.cli", "serve", "--index", "sample"]
    with serving(command, env, tmp_path / "server.log") as server:
        stop, errors = threading.Event(), []
        kinds = ["search", "search", "ask", "chat"]
        seen: list[list] = [[] for _ in kinds]
        clients = [
            threading.Thread(target=client_loop, args=(server.base, k, stop, s, errors))
            for k, s in zip(kinds, seen, strict=True)
        ]
        for client in clients:
            client.start()
        started = time.perf_counter()
        rounds = scaled(3)
        for n in range(rounds + 1):
            time.sleep(2)
            rebuild = n == rounds
            if not rebuild:
                (corpus / f"update-{n}.md").write_text(
                    f"# Update {n}\n\nThe relief crew number {n} arrives on pier {n + 4}.\n"
                )
            args = ["index", str(corpus), "--index", "sample", "--json"]
            run = run_rag(*args, *(["--rebuild"] if rebuild else []), env=env)
            assert run.returncode == 0, run.stderr
            published.append(json.loads(run.stdout)["version"])
        time.sleep(3)
        stop.set()
        for client in clients:
            client.join(timeout=180)
        seconds = time.perf_counter() - started
        final = httpx.post(f"{server.base}/search", json=SEARCH, timeout=60).json()["version"]

    statuses = Counter(status for per_client in seen for status, _ in per_client)
    versions = Counter(version for per_client in seen for status, version in per_client)
    print(
        f"load while re-indexing: {sum(statuses.values())} requests in {seconds:.0f} s over "
        f"{len(published) - 1} re-indexings ({rounds} incremental, 1 rebuild); statuses "
        f"{dict(statuses)}; transport errors {len(errors)}; versions served "
        f"{len(versions)} of {len(published)}"
    )
    assert errors == []
    assert set(statuses) <= {200, 503, 504}, statuses
    assert statuses[200] >= 20
    assert final == published[-1], "the last published version is served"
    for kind, per_client in zip(kinds, seen, strict=True):
        answered = [version for status, version in per_client if status == 200]
        assert all(v in published for v in answered), f"{kind}: a version nobody published"
        assert answered == sorted(answered), f"{kind} saw versions go backwards"
    assert len(versions) >= 3, "requests were served by several versions while re-indexing"
