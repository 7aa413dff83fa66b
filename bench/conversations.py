"""Follow-up questions: answered as well as the same question asked standalone?

For each two-turn conversation of bench/conversations.jsonl (sample and python-reference
corpora) the first question is answered, then the follow-up is asked four ways: standalone
(the reference, written by hand), as-is (no rewrite), rewritten by rules, rewritten by the
model (rag/conversation.py). An answer is right when it holds one of the expected strings and
did not abstain. Run it alone with `python -m bench.conversations` (real models, a few minutes).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import PYTHON_REFERENCE, REPO, Target

SET = Path(__file__).with_name("conversations.jsonl")
CORPORA = {"sample": REPO / "corpora" / "sample", "python-reference": PYTHON_REFERENCE}
WAYS = ("standalone", "none", "rules", "model")


def right(answer, expected: list[str]) -> bool:
    text = answer.answer.lower()
    found = any(re.search(rf"(?<!\w){re.escape(e.lower())}(?!\w)", text) for e in expected)
    return found and not answer.abstained


def run(quick: bool = False) -> dict:
    from rag.chain import open_pipeline
    from rag.config import Settings
    from rag.conversation import Turn, standalone_question
    from rag.embeddings import load_embedder
    from rag.generators import load_generator
    from rag.indexing import index_corpus

    conversations = [json.loads(line) for line in SET.read_text().splitlines() if line.strip()]
    if quick:
        conversations = conversations[:6]
    settings = Settings(
        index_root=Path(tempfile.mkdtemp(prefix="rag-conv-")), answer_steps="sentence"
    )
    embedder, generator = load_embedder(settings), load_generator(settings)
    pipelines = {}
    for name in sorted({c["corpus"] for c in conversations}):
        index_corpus(CORPORA[name], name, settings, embedder=embedder, show_progress=False)
        pipelines[name] = open_pipeline(settings, name, embedder=embedder, generator=generator)
    rows, seconds = [], {way: 0.0 for way in WAYS}
    for conversation in conversations:
        pipeline = pipelines[conversation["corpus"]]
        first = pipeline.ask(conversation["first"])
        history = [Turn(conversation["first"], first.answer)]
        row = {"follow_up": conversation["follow_up"], "first_answer": first.answer}
        for way in WAYS:
            start = time.perf_counter()
            if way == "standalone":
                question = conversation["standalone"]
            else:
                question = standalone_question(
                    conversation["follow_up"], history, strategy=way, generator=generator
                )
            answer = pipeline.ask(question)
            seconds[way] += time.perf_counter() - start
            gold = any(
                s.doc_id.rsplit("/", 1)[-1] == conversation["doc_id"] for s in answer.sources
            )
            row[way] = {
                "question": question,
                "answer": answer.answer,
                "right": right(answer, conversation["expected"]),
                "gold_retrieved": gold,
            }
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), file=sys.stderr)
    n = len(rows)
    reference = [r["standalone"]["right"] for r in rows]
    summary = {}
    for way in WAYS:
        correct = [r[way]["right"] for r in rows]
        summary[way] = {
            "right": sum(correct),
            "gold_retrieved": sum(r[way]["gold_retrieved"] for r in rows),
            # as well as standalone: right whenever the standalone question was right
            "as_well_as_standalone": sum(c >= s for c, s in zip(correct, reference, strict=True)),
            "seconds_per_question": round(seconds[way] / n, 2),
        }
    figures = [
        f"{way:>10}: right {s['right']}/{n}, gold passage retrieved {s['gold_retrieved']}/{n}, "
        f"as well as standalone {s['as_well_as_standalone']}/{n}, "
        f"{s['seconds_per_question']} s per question"
        for way, s in summary.items()
    ]
    best = max(("rules", "model"), key=lambda w: summary[w]["as_well_as_standalone"])
    return {
        "figures": figures,
        "summary": summary,
        "rows": rows,
        "targets": [
            Target(
                "follow-ups answered as well as standalone, rules (share)",
                summary["rules"]["as_well_as_standalone"] / n,
                "at least the model rewrite's share",
                best == "rules",
            ).as_dict()
        ],
    }


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv)
    print("\n".join(result["figures"]))
    out = Path(tempfile.gettempdir()) / "rag-conversations.json"
    out.write_text(json.dumps({k: result[k] for k in ("summary", "rows")}, indent=2))
    print(f"rows: {out}")
