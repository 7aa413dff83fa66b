"""Load a corpus (a directory, or one file) into Documents with stable ids and content hashes.

A file that cannot be read (binary, empty, not UTF-8, a corrupt PDF, a bad jsonl line) is
skipped with a warning naming it; the rest of the corpus still loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import InputError

log = logging.getLogger(__name__)

Skips = list[tuple[str, str]]
SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf", ".jsonl", ".docx", ".pptx", ".xlsx")
# Office files are zip archives: refuse ones that would inflate past this (zip bombs).
MAX_OFFICE_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Document:
    """One source document; `id` is stable across runs so re-indexing can tell what changed."""

    id: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        payload = json.dumps([self.title, self.text, self.metadata], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class Corpus:
    """What a corpus directory yielded: the documents and the files skipped, with reasons."""

    root: Path
    documents: list[Document]
    skipped: Skips


class SkipFile(Exception):
    """A file (or jsonl line) that cannot become a document; the message says why."""


def load_corpus(root: Path) -> Corpus:
    """Read every supported file under `root` (sorted, so ids and order are stable)."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"corpus directory {root} does not exist")
    if root.is_file():
        return _load_single_file(root)
    documents: list[Document] = []
    skipped: Skips = []
    seen: set[str] = set()
    for path, rel in _corpus_files(root.resolve(), skipped):
        try:
            loaded = _LOADERS[path.suffix.lower()](path, rel, skipped)
        except SkipFile as exc:
            log.warning("skipped %s: %s", rel, exc)
            skipped.append((rel, str(exc)))
            continue
        _add_unique(loaded, rel, documents, seen, skipped)
    if not documents:
        found = f" ({len(skipped)} files skipped)" if skipped else ""
        raise InputError(
            f"corpus {root} holds no loadable documents{found}; "
            f"supported types: {', '.join(SUFFIXES)}"
        )
    return Corpus(root=root, documents=documents, skipped=skipped)


def _load_single_file(path: Path) -> Corpus:
    """A corpus given as one file (e.g. a corpus.jsonl): ids are relative to its folder."""
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"{path} is not a supported file type ({', '.join(SUFFIXES)})")
    skipped: Skips = []
    try:
        loaded = _LOADERS[path.suffix.lower()](path, path.name, skipped)
    except SkipFile as exc:
        raise InputError(f"{path}: {exc}") from None
    documents: list[Document] = []
    _add_unique(loaded, path.name, documents, set(), skipped)
    return Corpus(root=path, documents=documents, skipped=skipped)


def _add_unique(
    loaded: list[Document], rel: str, documents: list[Document], seen: set[str], skipped: Skips
) -> None:
    """Append documents whose id is new; a repeated id is skipped, never silently merged."""
    for doc in loaded:
        if doc.id in seen:
            log.warning("skipped %s: duplicate document id %r", rel, doc.id)
            skipped.append((rel, f"duplicate document id {doc.id!r}"))
            continue
        seen.add(doc.id)
        documents.append(doc)


def _corpus_files(root: Path, skipped: Skips) -> Iterator[tuple[Path, str]]:
    """Supported files under root; links that lead outside it are refused."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.suffix.lower() not in SUFFIXES or rel.upper() == "SOURCE.MD":
            continue
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
            log.warning("skipped %s: a link that never resolves", rel)
            skipped.append((rel, "a link that never resolves (loop)"))
            continue
        if not real.is_relative_to(root):
            log.warning("skipped %s: links outside the corpus root", rel)
            skipped.append((rel, "links outside the corpus root"))
            continue
        if real.is_file():
            yield path, rel


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise SkipFile("empty file")
    if b"\x00" in data[:8192]:
        raise SkipFile("binary file (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SkipFile(f"not UTF-8 text (byte {exc.start})") from None


def _one(rel: str, title: str, text: str) -> list[Document]:
    text = text.strip()
    if not text:
        raise SkipFile("no text")
    return [Document(id=rel, title=title.strip() or rel, text=text)]


def _load_txt(path: Path, rel: str, skipped: Skips) -> list[Document]:
    return _one(rel, path.stem, _read_text(path))


def _load_md(path: Path, rel: str, skipped: Skips) -> list[Document]:
    text = _read_text(path)
    heading = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
    return _one(rel, heading.group(1) if heading else path.stem, text)


def _load_html(path: Path, rel: str, skipped: Skips) -> list[Document]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_read_text(path), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else path.stem
    if soup.title:
        soup.title.decompose()
    text = re.sub(r"\n\s*\n+", "\n\n", soup.get_text("\n"))
    return _one(rel, title, text)


def _load_pdf(path: Path, rel: str, skipped: Skips) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PdfStreamError

    if path.stat().st_size == 0:
        raise SkipFile("empty file")
    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata or {}).get("/Title") if reader.metadata else None
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, OSError) as exc:
        raise SkipFile(f"unreadable PDF ({exc})") from None
    return _one(rel, str(meta_title or path.stem), "\n\n".join(pages))


def _office_archive(path: Path) -> None:
    """Refuse what is not a sane zip archive before a library parses it."""
    import zipfile

    if path.stat().st_size == 0:
        raise SkipFile("empty file")
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise SkipFile(f"not an Office file (not a zip archive: {exc})") from None
    if inflated > MAX_OFFICE_BYTES:
        raise SkipFile(f"inflates to {inflated} bytes, over {MAX_OFFICE_BYTES}")


def _office(kind: str, path: Path, read: Callable[[Path], tuple[str | None, list[str]]], rel: str):
    """Run a format library's reader; any failure of a broken file becomes a skip."""
    _office_archive(path)
    try:
        title, blocks = read(path)
    except Exception as exc:  # lxml, zipfile, KeyError...: each library fails its own way
        raise SkipFile(f"unreadable {kind} ({type(exc).__name__}: {exc})") from None
    return _one(rel, title or path.stem, "\n\n".join(b for b in blocks if b.strip()))


def _read_docx(path: Path) -> tuple[str | None, list[str]]:
    """Paragraphs, then tables row by row (cells joined by " | "); title: core or first heading."""
    import docx

    document = docx.Document(str(path))
    paragraphs = [
        (p.style.name if p.style is not None else "", p.text) for p in document.paragraphs
    ]
    heading = next(
        (
            text
            for style, text in paragraphs
            if text.strip() and style.startswith(("Title", "Heading"))
        ),
        None,
    )
    tables = [
        " | ".join(cell.text.strip() for cell in row.cells)
        for table in document.tables
        for row in table.rows
    ]
    return document.core_properties.title or heading, [t for _, t in paragraphs] + tables


def _read_pptx(path: Path) -> tuple[str | None, list[str]]:
    """Each slide's text frames in order, then its notes; title: core or first slide's title."""
    import pptx

    presentation = pptx.Presentation(str(path))
    blocks, first_title = [], None
    for slide in presentation.slides:
        if first_title is None and slide.shapes.title is not None:
            first_title = slide.shapes.title.text_frame.text or None
        for shape in slide.shapes:
            if shape.has_text_frame:
                blocks.append(shape.text_frame.text)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            blocks.append(slide.notes_slide.notes_text_frame.text)
    return presentation.core_properties.title or first_title, blocks


def _read_xlsx(path: Path) -> tuple[str | None, list[str]]:
    """Every sheet under its name, a line per row (cells joined by " | "); values, not formulas."""
    import openpyxl

    workbook = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    try:
        blocks = []
        for sheet in workbook.worksheets:
            rows = [
                " | ".join("" if v is None else str(v) for v in row).strip(" |")
                for row in sheet.iter_rows(values_only=True)
            ]
            rows = [r for r in rows if r]
            if rows:
                blocks.append(f"{sheet.title}\n" + "\n".join(rows))
        return workbook.properties.title, blocks
    finally:
        workbook.close()


def _load_docx(path: Path, rel: str, skipped: Skips) -> list[Document]:
    return _office("Word document", path, _read_docx, rel)


def _load_pptx(path: Path, rel: str, skipped: Skips) -> list[Document]:
    return _office("PowerPoint presentation", path, _read_pptx, rel)


def _load_xlsx(path: Path, rel: str, skipped: Skips) -> list[Document]:
    return _office("Excel workbook", path, _read_xlsx, rel)


def _load_jsonl(path: Path, rel: str, skipped: Skips) -> list[Document]:
    """One document per line: {"id", "text", optional "title", optional "metadata"}.

    A bad line is skipped (and counted) without losing the good lines of the same file.
    """
    docs: list[Document] = []
    bad: Skips = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            doc_id, text = str(record["id"]), record["text"]
            if not isinstance(text, str) or not text.strip():
                raise ValueError("empty 'text'")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            bad.append((f"{rel}:{number}", _describe(exc)))
            continue
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            metadata = {"value": metadata}
        title = str(record.get("title") or doc_id)
        docs.append(Document(id=doc_id, title=title, text=text.strip(), metadata=metadata))
    if not docs:
        raise SkipFile("no valid jsonl records (each line needs 'id' and 'text')")
    if bad:
        log.warning("skipped %d lines of %s (first: %s: %s)", len(bad), rel, *bad[0])
        skipped.extend(bad)
    return docs


def _describe(exc: Exception) -> str:
    return f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)


_LOADERS: dict[str, Callable[[Path, str, Skips], list[Document]]] = {
    ".txt": _load_txt,
    ".md": _load_md,
    ".html": _load_html,
    ".htm": _load_html,
    ".pdf": _load_pdf,
    ".jsonl": _load_jsonl,
    ".docx": _load_docx,
    ".pptx": _load_pptx,
    ".xlsx": _load_xlsx,
}
