"""Bounded load test of `rag serve` on loopback: p50/p95 latency, throughput, status counts.

    python bench/loadtest.py --base http://127.0.0.1:8000 --requests 24 --clients 1,4,16

Each level sends a fixed number of POST /ask requests with `clients` workers, stopping early
at --max-seconds. Loopback only: the script refuses other hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from urllib.parse import urlparse

import httpx

QUESTIONS = [
    "What is the name of the station cat?",
    "What is the station's postal box number?",
    "Who is the director of Lumen Harbor Research Station?",
    "What is the backup generator at Lumen Harbor called?",
]


async def level(base: str, clients: int, requests: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    todo = iter(range(requests))
    stop_at = time.perf_counter() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        for n in todo:
            if time.perf_counter() > stop_at:
                return
            start = time.perf_counter()
            try:
                body = {"question": QUESTIONS[n % len(QUESTIONS)], "k": 4}
                response = await client.post(f"{base}/ask", json=body)
                statuses[str(response.status_code)] += 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(ordered[min(int(p * len(ordered)), len(ordered) - 1)], 2) if ordered else None

    return {
        "clients": clients,
        "sent": sum(statuses.values()),
        "ok": len(latencies),
        "statuses": dict(statuses),
        "p50_s": pct(0.50),
        "p95_s": pct(0.95),
        "mean_s": round(statistics.fmean(latencies), 2) if latencies else None,
        "throughput_rps": round(len(latencies) / wall, 3),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=24, help="per concurrency level")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--max-seconds", type=float, default=180, help="per level")
    parser.add_argument("--json", dest="out", help="also write the results to this file")
    args = parser.parse_args()
    if urlparse(args.base).hostname not in {"127.0.0.1", "localhost", "::1"}:
        parser.error("loopback only: --base must be 127.0.0.1 or localhost")
    results = []
    for clients in (int(c) for c in args.clients.split(",")):
        result = asyncio.run(level(args.base, clients, args.requests, args.max_seconds))
        results.append(result)
        print(
            f"{clients:>3} clients: {result['ok']}/{result['sent']} ok, p50 {result['p50_s']} s, "
            f"p95 {result['p95_s']} s, {result['throughput_rps']} answers/s, "
            f"statuses {result['statuses']}",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
