"""Loading every supported format, and refusing bad input without losing the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.documents import load_corpus
from rag.errors import InputError

from ..conftest import SAMPLE


def ids(corpus) -> list[str]:
    return [d.id for d in corpus.documents]


def test_sample_corpus_loads_every_format() -> None:
    corpus = load_corpus(SAMPLE)
    assert corpus.skipped == []
    assert {"handbook.md", "equipment.html", "safety.pdf", "notes.txt", "faq-001"} <= set(
        ids(corpus)
    )
    by_id = {d.id: d for d in corpus.documents}
    assert "Marrow-7" in by_id["equipment.html"].text
    assert "SCRIPT_SHOULD_NOT_BE_INDEXED" not in by_id["equipment.html"].text
    assert "STYLE_SHOULD_NOT_BE_INDEXED" not in by_id["equipment.html"].text
    assert "Muster Point C" in by_id["safety.pdf"].text
    assert by_id["safety.pdf"].title == "Lumen Harbor Safety Procedures"
    assert by_id["handbook.md"].title.startswith("Lumen Harbor")


def test_ids_and_hashes_are_stable(tiny_corpus: Path) -> None:
    first, second = load_corpus(tiny_corpus), load_corpus(tiny_corpus)
    assert ids(first) == ["alpha.md", "beta.txt", "g-1", "g-2"]
    assert [d.hash for d in first.documents] == [d.hash for d in second.documents]
    (tiny_corpus / "beta.txt").write_text("Beta station keeps eighteen goats.\n")
    changed = {d.id: d.hash for d in load_corpus(tiny_corpus).documents}
    assert changed["beta.txt"] != first.documents[1].hash
    assert changed["alpha.md"] == first.documents[0].hash


def test_missing_and_empty_directories_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no loadable documents"):
        load_corpus(tmp_path / "empty")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("blob.txt", b"\x00\x01\x02binary\x00", "binary"),
        ("empty.md", b"   \n", "empty"),
        ("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"), "not UTF-8"),
        ("broken.pdf", b"%PDF-1.4\nthis is not really a pdf", "PDF"),
        ("zero.pdf", b"", "empty"),
        ("bad.jsonl", b'{"id": 1}\nnot json\n', "jsonl"),
    ],
)
def test_bad_files_are_skipped_and_named(
    tiny_corpus: Path, name: str, content: bytes, reason: str, caplog
) -> None:
    (tiny_corpus / name).write_bytes(content)
    corpus = load_corpus(tiny_corpus)
    assert len(corpus.documents) == 4, "the good documents still load"
    skipped = dict(corpus.skipped)
    assert name in skipped
    assert reason.lower() in skipped[name].lower()
    assert name in caplog.text


def test_bad_jsonl_lines_are_skipped_and_counted(tiny_corpus: Path) -> None:
    good = json.dumps({"id": "ok-1", "text": "Fine line."})
    (tiny_corpus / "mixed.jsonl").write_text(f'{good}\n{{"id": "x"}}\nnot json\n')
    corpus = load_corpus(tiny_corpus)
    assert "ok-1" in ids(corpus)
    assert [where for where, _ in corpus.skipped] == ["mixed.jsonl:2", "mixed.jsonl:3"]


def test_duplicate_ids_are_skipped(tiny_corpus: Path) -> None:
    (tiny_corpus / "dupe.jsonl").write_text(json.dumps({"id": "g-1", "text": "Other."}) + "\n")
    corpus = load_corpus(tiny_corpus)
    assert ids(corpus).count("g-1") == 1
    assert any("duplicate" in why for _, why in corpus.skipped)


def test_symlink_leaving_the_corpus_is_refused(tiny_corpus: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("The root password is hunter2.")
    (tiny_corpus / "link.txt").symlink_to(secret)
    corpus = load_corpus(tiny_corpus)
    assert "link.txt" not in ids(corpus)
    assert all("hunter2" not in d.text for d in corpus.documents)
    assert ("link.txt", "links outside the corpus root") in corpus.skipped


def test_a_single_jsonl_file_is_a_corpus(tiny_corpus: Path) -> None:
    corpus = load_corpus(tiny_corpus / "more.jsonl")
    assert ids(corpus) == ["g-1", "g-2"]
    assert corpus.documents[1].title == "Delta"
