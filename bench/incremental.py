"""Item 2: incremental update of a 10,000-document corpus against a full build.

The documents are short passages (about 40 words) cut from covidqa-dev's articles, so a full
build of 10,000 of them fits the benchmark's budget on 2 cores; they sit in one .jsonl file,
one document a line. A no-change `rag index` reads and hashes the corpus and stops; a 1% change
edits 100 documents, which are re-chunked and re-embedded while the other 9,900 are kept.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.measure import COVIDQA, PYTHON_REFERENCE, Target, quiet, ratio, stopwatch

WORDS_PER_DOC = 40


def passages(count: int) -> list[str]:
    """`count` passages of WORDS_PER_DOC words, cycling through the source text if needed."""
    source = COVIDQA / "corpus.jsonl"
    if source.is_file():
        text = " ".join(json.loads(line)["text"] for line in source.open())
    else:  # a checkout without ../shared: the shipped Python reference
        text = " ".join(p.read_text() for p in sorted((PYTHON_REFERENCE / "docs").glob("*.md")))
    words = text.split()
    step = len(words) // WORDS_PER_DOC
    return [
        " ".join(words[(n % step) * WORDS_PER_DOC : (n % step + 1) * WORDS_PER_DOC])
        + ("" if n < step else f" (copy {n // step})")
        for n in range(count)
    ]


def write_corpus(path: Path, texts: list[str]) -> None:
    with path.open("w") as handle:
        for n, text in enumerate(texts):
            record = {"id": f"doc-{n:05d}", "title": f"Passage {n}", "text": text}
            handle.write(json.dumps(record) + "\n")


def run(quick: bool) -> dict:
    quiet()
    from rag.config import Settings
    from rag.embeddings import load_embedder
    from rag.indexing import index_corpus

    count = 1_000 if quick else 10_000
    scratch = Path(tempfile.mkdtemp(prefix="rag-bench-incremental-"))
    corpus = scratch / "corpus.jsonl"
    texts = passages(count)
    write_corpus(corpus, texts)
    settings = Settings(index_root=scratch / "indexes")
    embedder = load_embedder(settings)  # loaded once, as in a long-lived process

    with stopwatch() as full:
        built = index_corpus(corpus, "inc", settings, embedder=embedder, show_progress=False)
    with stopwatch() as unchanged:  # the CLI path: no model needed, none passed
        same = index_corpus(corpus, "inc", settings, show_progress=False)
    assert not same.written, same
    changed = count // 100
    for n in range(0, count, count // changed):
        texts[n] = texts[n] + " Revised: this passage was updated."
    write_corpus(corpus, texts)
    with stopwatch() as one_percent:
        update = index_corpus(corpus, "inc", settings, embedder=embedder, show_progress=False)
    assert update.changed == changed, update

    no_change_share = ratio(unchanged(), full())
    change_share = ratio(one_percent(), full())
    targets = [
        Target("no-change re-index / full build", no_change_share, "< 0.02", no_change_share < 0.02)
    ]
    figures = [
        f"corpus: {count} documents of ~{WORDS_PER_DOC} words, {built.chunks} chunks (one .jsonl)",
        f"full build {full():.1f} s ({built.chunks / full():.1f} chunks/s, embedder loaded)",
        f"no-change re-index {unchanged():.2f} s = {no_change_share:.2%} of the full build",
        f"1% change ({changed} documents edited) {one_percent():.2f} s = {change_share:.2%} of "
        "the full build",
    ]
    return {
        "documents": count,
        "chunks": built.chunks,
        "seconds": {
            "full_build": round(full(), 3),
            "no_change": round(unchanged(), 3),
            "one_percent_change": round(one_percent(), 3),
        },
        "figures": figures,
        "targets": [t.as_dict() for t in targets],
        "plot": {
            "kind": "bar",
            "title": f"Incremental update ({count} documents)",
            "ylabel": "seconds",
            "bars": {
                "full build": round(full(), 2),
                "1% changed": round(one_percent(), 2),
                "no change": round(unchanged(), 2),
            },
        },
    }
