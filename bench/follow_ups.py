"""When does a follow-up lean on the earlier turns? Retrieval with each rewriting rule.

    python -m bench.follow_ups ../shared/data/mtrag-clapnq ../shared/data/mtrag-fiqa --split tune

For each conversation of the datasets (the half given), the last user turn is made standalone
by the rules with `ELLIPTICAL_WORDS` set to each candidate (a question without a pronoun with
at most that many content words of its own gets the earlier topic glued on), and also not
rewritten at all; the gold documents' recall@k of hybrid retrieval is printed for each.
Embedder only (no generation): a minute or two.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import rag.conversation as conversation
from rag.config import Settings
from rag.conversation import Turn, standalone_question
from rag.embeddings import load_embedder
from rag.evaluation.data import in_split, load_dataset
from rag.indexing import index_corpus
from rag.retrieval import retrieve
from rag.store import load_index

CANDIDATES = (0, 1, 2, 3, 4, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--split", choices=["tune", "report", "all"], default="tune")
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="follow-ups-"))
    settings = Settings(index_root=root, refusal_gate="fixed")
    embedder = load_embedder(settings)
    print(f"recall@{args.k} of the gold documents, {args.split} half")
    print("dataset            n   none  " + "  ".join(f"w<={w:<3}" for w in CANDIDATES))
    for data in args.data:
        dataset = load_dataset(data)
        conversations = [c for c in in_split(dataset.conversations, args.split) if c.doc_ids]
        index_corpus(dataset.corpus, dataset.name, settings, embedder=embedder)
        index = load_index(settings, dataset.name)

        def recall(question: str, gold: list[str], index=index) -> float:
            found = {p.doc_id for p in retrieve(index, embedder, question, k=args.k)}
            return len(found & set(gold)) / len(gold)

        row = [statistics.fmean(recall(c.question, c.doc_ids) for c in conversations)]
        for words in CANDIDATES:
            conversation.ELLIPTICAL_WORDS = words
            row.append(
                statistics.fmean(
                    recall(
                        standalone_question(c.question, [Turn(q, a) for q, a in c.history]),
                        c.doc_ids,
                    )
                    for c in conversations
                )
            )
        cells = "  ".join(f"{v:6.1%}" for v in row)
        print(f"{dataset.name:16s} {len(conversations):3d}  {cells}")
        index.close()


if __name__ == "__main__":
    main()
