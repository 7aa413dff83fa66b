"""A corpus of a style none of our settings saw: the README of every installed Python package.

    python -m bench.package_docs /tmp/package-docs

Public text already on the machine (each distribution's long description, from its METADATA),
written as corpus.jsonl without questions, so `rag eval` and bench/refusal.py generate cloze
questions from it. Only descriptions of 3,000 characters or more, at most `--limit` of them.
"""

from __future__ import annotations

import argparse
import json
from importlib.metadata import distributions
from pathlib import Path


def package_docs(limit: int) -> list[dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for dist in distributions():
        name = dist.metadata.get("Name") or ""
        text = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        key = name.lower().replace("_", "-")
        if name and len(text) >= 3000 and key not in seen:
            seen[key] = {"id": f"pkg-{key}", "title": name, "text": text[:20_000]}
    return [seen[k] for k in sorted(seen)][:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=60)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    docs = package_docs(args.limit)
    with open(args.out / "corpus.jsonl", "w") as handle:
        for doc in docs:
            handle.write(json.dumps(doc) + "\n")
    print(f"{len(docs)} package descriptions in {args.out / 'corpus.jsonl'}")


if __name__ == "__main__":
    main()
