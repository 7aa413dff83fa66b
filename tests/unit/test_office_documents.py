"""Word, PowerPoint and Excel files: text, titles, stable ids and hashes, skips for broken ones."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from rag.documents import load_corpus

from ..office_files import write_docx, write_pptx, write_xlsx

pytest.importorskip("docx", reason="python-docx is a dependency: pip install -e .")


@pytest.fixture
def office_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "office"
    root.mkdir()
    (root / "plans").mkdir()
    write_docx(root / "briefing.docx")
    write_pptx(root / "plans" / "winter.pptx")
    write_xlsx(root / "fuel.xlsx")
    return root


def test_office_files_load_with_titles_and_text(office_corpus: Path) -> None:
    corpus = load_corpus(office_corpus)
    assert corpus.skipped == []
    docs = {d.id: d for d in corpus.documents}
    assert sorted(docs) == ["briefing.docx", "fuel.xlsx", "plans/winter.pptx"]
    briefing = docs["briefing.docx"]
    assert briefing.title == "Boat safety briefing"
    assert "locker B7" in briefing.text and "Flares | the orange drum" in briefing.text
    slides = docs["plans/winter.pptx"]
    assert slides.title == "Winter plan"
    assert "9 March" in slides.text and "4,200 krona" in slides.text
    assert "spare hydrophone" in slides.text  # speaker notes are text too
    fuel = docs["fuel.xlsx"]
    assert fuel.title == "Fuel log" and "Fuel\nTank | Litres\nNorth tank | 3100" in fuel.text


def test_docx_title_falls_back_to_its_first_heading(tmp_path: Path) -> None:
    write_docx(tmp_path / "untitled.docx", title=None)
    (doc,) = load_corpus(tmp_path).documents
    assert doc.title == "Boat safety briefing"


def test_office_ids_and_hashes_are_stable(office_corpus: Path) -> None:
    first = {d.id: d.hash for d in load_corpus(office_corpus).documents}
    assert first == {d.id: d.hash for d in load_corpus(office_corpus).documents}


def corrupt_zip(path: Path) -> None:
    """A real zip archive whose document part is not XML."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<nope")
        archive.writestr("word/document.xml", "not xml at all")


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".xlsx"])
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "not an office file"),
        (lambda p: p.write_text("plain text pretending"), "not an office file"),
        (corrupt_zip, "unreadable"),
    ],
)
def test_broken_office_files_are_skipped_and_named(
    tmp_path: Path, suffix: str, make, reason: str, caplog
) -> None:
    (tmp_path / "good.txt").write_text("The beacon blinks every nine seconds.")
    make(tmp_path / f"broken{suffix}")
    corpus = load_corpus(tmp_path)
    assert [d.id for d in corpus.documents] == ["good.txt"]
    skipped = dict(corpus.skipped)
    assert reason in skipped[f"broken{suffix}"].lower()
    assert f"broken{suffix}" in caplog.text


def test_a_zip_bomb_is_refused_before_parsing(tmp_path: Path, monkeypatch) -> None:
    from rag import documents

    (tmp_path / "good.txt").write_text("The beacon blinks every nine seconds.")
    write_docx(tmp_path / "big.docx")
    monkeypatch.setattr(documents, "MAX_OFFICE_BYTES", 1000)
    corpus = load_corpus(tmp_path)
    assert [where for where, _ in corpus.skipped] == ["big.docx"]
    assert "inflates" in corpus.skipped[0][1]
