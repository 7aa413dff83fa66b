"""The generator backends side by side: the onnx engine against the transformers float32 path.

Decode tokens/s, time to first token on a ~1,500-token prompt, the same greedy answer on 50
grounded prompts (fictional-people questions with their passage, in the pipeline's prompt),
cold start to ready with the converted model cached, and peak RSS (each backend loaded in a
fresh process). Ratios are measured in one run, so they hold on a busy machine.

    python -m bench.generation [--quick] [--precision int4|int8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.measure import REPO, Target, quiet, ratio

PEOPLE = REPO.parent / "shared" / "data" / "fictional-people"
COVIDQA = REPO.parent / "shared" / "data" / "covidqa-dev"
CACHE = REPO / "indexes" / ".cache"  # where `make bench` keeps converted models between runs
LONG_TOKENS = 1500
# Units that make one CPU much faster than another; reported, never required.
SPECIAL_UNITS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")


def cpu() -> dict:
    """The CPU model and which of the special vector units it has."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line), "?"
    )
    flags = next(
        (line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")),
        [],
    )
    return {
        "model": model,
        "units": [u for u in SPECIAL_UNITS if u in flags],
        "cores": os.cpu_count(),
    }


def settings(backend: str, precision: str):
    from rag.config import Settings

    return Settings(
        generator_backend=backend,
        generator_precision=precision,
        generator_cache=True,
        cache_dir=CACHE,
        max_new_tokens=64,
    )


def grounded_chats(count: int) -> list[list[dict[str, str]]]:
    """Pipeline-shaped chats: one person's passage as [1], then a question about them."""
    from rag.prompt import SYSTEM, USER, answer_hint

    docs = {d["id"]: d for d in map(json.loads, (PEOPLE / "corpus.jsonl").open())}
    questions = [q for q in map(json.loads, (PEOPLE / "test.jsonl").open()) if q["doc_id"]]
    step = max(1, len(questions) // count)
    chats = []
    for q in questions[::step][:count]:
        doc = docs[q["doc_id"]]
        passage = f"[1] {doc['title']}\n<<<\n{doc['text']}\n>>>"
        user = USER.format(
            passages=passage, question=q["question"], hint=answer_hint(q["question"])
        )
        chats.append(
            [
                {"role": "system", "content": SYSTEM.format(abstain_text="I don't know.")},
                {"role": "user", "content": user},
            ]
        )
    return chats


def long_chat(generator) -> list[dict[str, str]]:
    """A question after one COVID-QA article cut to about LONG_TOKENS prompt tokens."""
    article = json.loads((COVIDQA / "corpus.jsonl").open().readline())["text"]
    words = article.split()

    def chat(n: int) -> list[dict[str, str]]:
        text = " ".join(words[:n]) + "\n\nWhat is this article about?"
        return [{"role": "user", "content": text}]

    low, high = 10, len(words)
    while low < high:  # the longest cut within LONG_TOKENS
        mid = (low + high + 1) // 2
        low, high = (
            (mid, high) if generator.count_tokens(chat(mid)) <= LONG_TOKENS else (low, mid - 1)
        )
    return chat(low)


def first_token_seconds(generator, chat, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generator.complete(chat, max_new_tokens=1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_rate(generator, chats) -> float:
    """Tokens/s after the first: (n - 1) tokens over the time past the first token."""
    tokens = seconds = 0.0
    for chat in chats:
        first = first_token_seconds(generator, chat, 1)
        start = time.perf_counter()
        result = generator.complete(chat, max_new_tokens=64)
        total = time.perf_counter() - start
        if result.completion_tokens > 1:
            tokens += result.completion_tokens - 1
            seconds += max(total - first, 1e-6)
    return tokens / seconds if seconds else 0.0


def child(backend: str, precision: str) -> None:
    """In a fresh process: load (from the cache), answer once; print seconds and peak RSS."""
    start = time.perf_counter()
    from rag.generators import load_generator

    generator = load_generator(settings(backend, precision))
    ready = time.perf_counter() - start
    generator.complete(grounded_chats(1)[0])
    print(json.dumps({"ready_s": ready, "peak_rss_mb": own_peak_rss_mb()}))


def own_peak_rss_mb() -> float:
    """This process's own peak RSS. Not `ru_maxrss`: Linux keeps it across fork and exec, so a
    child started by a parent holding both models reports the parent's peak, not its own."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fresh_process(backend: str, precision: str) -> dict:
    command = [
        sys.executable,
        "-m",
        "bench.generation",
        "--child",
        backend,
        "--precision",
        precision,
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def default_precision() -> str:
    """The onnx precision rag converts to unless told otherwise."""
    from rag.config import Settings

    return Settings.model_fields["generator_precision"].default


def run(quick: bool, precision: str | None = None) -> dict:
    quiet()
    precision = precision or default_precision()
    from rag.generators import load_generator

    machine = cpu()
    prompts = 10 if quick else 50
    # Convert (first run only) and fill the transformers cache before anything is timed.
    reference = load_generator(settings("transformers", precision))
    engine = load_generator(settings("onnx", precision))
    chats = grounded_chats(prompts)
    long = long_chat(reference)
    figures, numbers = [], {}
    for label, generator in (("transformers f32", reference), (f"onnx {precision}", engine)):
        numbers[label] = {
            "decode_tok_s": decode_rate(generator, chats[: 2 if quick else 6]),
            "ttft_long_s": first_token_seconds(generator, long, 1 if quick else 3),
            "answers": [generator.generate(chat) for chat in chats],
        } | fresh_process(generator.backend, precision)
        print(label, {k: v for k, v in numbers[label].items() if k != "answers"}, file=sys.stderr)
    ref, fast = numbers["transformers f32"], numbers[f"onnx {precision}"]
    same = sum(a == b for a, b in zip(ref["answers"], fast["answers"], strict=True)) / len(chats)
    decode = ratio(fast["decode_tok_s"], ref["decode_tok_s"])
    ttft = ratio(ref["ttft_long_s"], fast["ttft_long_s"])
    units = " ".join(machine["units"]) or "none"
    figures.append(f"CPU: {machine['model']}, {machine['cores']} cores, units: {units}")
    for label, n in numbers.items():
        figures.append(
            f"{label}: decode {n['decode_tok_s']:.1f} tokens/s, first token on a "
            f"{reference.count_tokens(long)}-token prompt {n['ttft_long_s']:.2f} s, "
            f"ready from cache {n['ready_s']:.1f} s, peak RSS {n['peak_rss_mb']:.0f} MB"
        )
    figures.append(f"same greedy answer on {same:.0%} of {len(chats)} grounded prompts")
    targets = [
        Target("decode tokens/s vs transformers f32", decode, ">= 4x", decode >= 4),
        Target("time to first token vs transformers f32", ttft, ">= 3x faster", ttft >= 3),
        Target("same greedy answers", same, ">= 0.9", same >= 0.9),
        Target("cold start from cache (s)", fast["ready_s"], "<= 3 s", fast["ready_s"] <= 3),
        Target(
            "peak RSS vs transformers f32",
            ratio(fast["peak_rss_mb"], ref["peak_rss_mb"]),
            "<= 1x",
            fast["peak_rss_mb"] <= ref["peak_rss_mb"],
        ),
    ]
    for n in numbers.values():
        n.pop("answers")
    return {
        "cpu": machine,
        "figures": figures,
        "targets": [t.as_dict() for t in targets],
        "numbers": numbers,
        "plot": {
            "kind": "bar",
            "title": "generator: decode tokens/s",
            "ylabel": "tokens/s",
            "bars": {label: round(n["decode_tok_s"], 1) for label, n in numbers.items()},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--precision", choices=["int4", "int8"], default=default_precision())
    parser.add_argument("--child", choices=["transformers", "onnx"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        quiet()
        child(args.child, args.precision)
        return
    result = run(args.quick, args.precision)
    print("\n".join(result["figures"]))
    for t in result["targets"]:
        print(
            f"target {t['name']}: {t['value']:.3g} ({t['goal']}) {'MET' if t['met'] else 'NOT MET'}"
        )


if __name__ == "__main__":
    main()
