"""Promise 6 (loaders, chunker, paths): hostile files are loaded or skipped, never fatal.

Property-based with hypothesis; RAG_RELIABILITY_BUDGET scales the number of cases.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rag.documents import SUFFIXES, load_corpus
from rag.indexing import sync_index
from rag.store import load_index

from ..conftest import SAMPLE, FakeEmbedder
from ..office_files import write_docx, write_pptx, write_xlsx
from ..unit.test_store import chunker
from .conftest import scaled

GOOD = "The harbour beacon is painted saffron and blinks every nine seconds."
SEEDS = {
    ".pdf": (SAMPLE / "safety.pdf").read_bytes(),
    ".html": (SAMPLE / "equipment.html").read_bytes(),
    ".jsonl": (SAMPLE / "faq.jsonl").read_bytes(),
    ".md": (SAMPLE / "handbook.md").read_bytes(),
    ".txt": (SAMPLE / "notes.txt").read_bytes(),
}


def office_seeds() -> dict[str, bytes]:
    """A real .docx, .pptx and .xlsx (zip archives of XML), written once per run."""
    with tempfile.TemporaryDirectory() as folder:
        writers = {".docx": write_docx, ".pptx": write_pptx, ".xlsx": write_xlsx}
        return {
            suffix: write(Path(folder) / f"seed{suffix}").read_bytes()
            for suffix, write in writers.items()
        }


SEEDS |= office_seeds()
CASES = Counter()
FUZZ = settings(
    max_examples=scaled(150),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("RAG_RELIABILITY_BUDGET") is None,  # CI: the same cases
)


def load_beside_a_good_document(suffix: str, data: bytes) -> None:
    """The fuzzed file loads or is skipped with its reason; the good document always loads."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "good.txt").write_text(GOOD)
        (root / f"fuzzed{suffix}").write_bytes(data)
        corpus = load_corpus(root)
        ids = [d.id for d in corpus.documents]
        assert "good.txt" in ids
        from_file = [i for i in ids if i != "good.txt"]
        skipped = [where for where, _ in corpus.skipped if where.startswith("fuzzed")]
        assert from_file or skipped, "the file neither loaded nor was reported as skipped"
        for doc in corpus.documents:
            assert doc.text.strip() and isinstance(doc.title, str)
            for chunk in chunker(FakeEmbedder()).split(doc):
                assert doc.text[chunk.start : chunk.end] == chunk.text
    CASES[suffix] += 1


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=4096))
def test_every_loader_survives_random_bytes(suffix: str, data: bytes) -> None:
    load_beside_a_good_document(suffix, data)


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    """A real file of each format with bytes flipped, cut, spliced or repeated."""
    suffix = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[suffix])
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "truncate"]))
        if action == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 512))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif action == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 256))] * draw(st.integers(2, 20))
        else:
            del data[at:]
    return suffix, bytes(data)


@FUZZ
@given(case=mutated())
def test_every_loader_survives_mutated_real_files(case: tuple[str, bytes]) -> None:
    load_beside_a_good_document(*case)


@FUZZ
@given(
    text=st.text(min_size=1, max_size=3000),
    title=st.text(max_size=300),
    size=st.integers(16, 120),
)
@example(text="0" * 17, title="", size=16)  # found by CI: one word longer than a chunk
def test_chunker_keeps_offsets_for_any_text(text: str, title: str, size: int) -> None:
    from rag.documents import Document

    doc = Document(id="x", title=title or "x", text=text)
    split = chunker(FakeEmbedder(), size=size, overlap=size // 4).split(doc)
    for chunk in split:
        assert chunk.text.strip() and doc.text[chunk.start : chunk.end] == chunk.text
    # No character but whitespace is lost. (A word may be cut: the splitter's last resort,
    # for a run of text without a space longer than a chunk, splits it between characters.)
    covered = bytearray(len(text))
    for chunk in split:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    lost = [i for i, c in enumerate(text) if not covered[i] and not c.isspace()]
    assert not lost, f"text was lost at {lost[:5]}: {[text[i] for i in lost[:5]]}"
    CASES["chunker"] += 1


def test_zzz_report_fuzz_cases() -> None:
    """Runs last in this module: the number of cases each fuzzer ran (the figure reported)."""
    print(f"fuzz cases: {dict(CASES)} ({sum(CASES.values())} in all)")
    assert sum(CASES.values()) >= 3 * scaled(150) or not CASES


def test_an_indexing_run_survives_a_hostile_corpus(tmp_path: Path) -> None:
    """Every kind of bad file at once: the run completes, names each skip, indexes the rest."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "good.txt").write_text(GOOD)
    hostile = {
        "nul.txt": b"text\x00with NUL",
        "latin1.md": "caf\xe9".encode("latin-1"),
        "empty.html": b"",
        "deep.html": b"<div>" * 50_000 + b"deep" + b"</div>" * 50_000,
        "trunc.pdf": SEEDS[".pdf"][: len(SEEDS[".pdf"]) // 2],
        "garbage.pdf": b"%PDF-1.7\n" + os.urandom(5000),
        "lines.jsonl": b'{"id": 1, "text": 2}\n[1,2]\n"str"\n{"id": "a", "text": ""}\nnull\n',
        "bom.txt": b"\xef\xbb\xbf" + b"\xff\xfe",
        "huge-line.jsonl": b'{"id": "big", "text": "' + b"A" * 2_000_000 + b'"}\n',
    }
    for name, data in hostile.items():
        (root / name).write_bytes(data)
    embedder = FakeEmbedder()
    corpus = load_corpus(root)
    report = sync_index(
        corpus, tmp_path / "idx", "h", embedder, chunker(embedder), show_progress=False
    )
    skipped = {where.split(":")[0] for where, _ in report.skipped}
    loaded = {d.id for d in corpus.documents}
    assert loaded == {"good.txt", "deep.html", "big"}  # big: the id inside huge-line.jsonl
    assert skipped == set(hostile) - {"deep.html", "huge-line.jsonl"}
    index = load_index(tmp_path / "idx", "h")
    assert index.size == report.chunks > 0
    index.close()


def test_paths_that_leave_the_corpus_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("The vault code is 7-7-3-1.")
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "good.txt").write_text(GOOD)
    (root / "abs-link.txt").symlink_to(outside / "secret.txt")
    (root / "sub" / "rel-link.md").symlink_to(Path("../../outside/secret.txt"))
    (root / "dir-link").symlink_to(outside, target_is_directory=True)
    (root / "chain.txt").symlink_to(root / "sub" / "rel-link.md")
    (root / "passwd.txt").symlink_to("/etc/passwd")
    (root / "loop-a.txt").symlink_to(root / "loop-b.txt")
    (root / "loop-b.txt").symlink_to(root / "loop-a.txt")
    (root / "dangling.txt").symlink_to(root / "nowhere.txt")
    os.mkfifo(root / "fifo.txt")  # reading it would block forever
    (root / "inside-link.txt").symlink_to(root / "good.txt")

    corpus = load_corpus(root)
    texts = " ".join(d.text for d in corpus.documents)
    assert "vault code" not in texts and "root:" not in texts
    assert {d.id for d in corpus.documents} == {"good.txt", "inside-link.txt"}
    refused = {where for where, why in corpus.skipped if "outside the corpus" in why}
    assert {"abs-link.txt", "sub/rel-link.md", "chain.txt", "passwd.txt"} <= refused
    assert {"loop-a.txt", "loop-b.txt"} <= {where for where, why in corpus.skipped if "loop" in why}


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/etc", "x\x00y"])
def test_index_names_cannot_leave_the_index_root(tmp_path: Path, name: str) -> None:
    from rag.errors import InputError

    embedder = FakeEmbedder()
    corpus = load_corpus(SAMPLE)
    with pytest.raises(InputError, match="invalid index name"):
        sync_index(corpus, tmp_path / "idx", name, embedder, chunker(embedder), show_progress=False)
    assert list(tmp_path.iterdir()) == []
