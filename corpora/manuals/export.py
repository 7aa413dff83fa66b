"""Export manual pages of common Debian tools, rendered to plain text, as an evaluation set.

Manual pages are reference text: terse option lists where many pages share the same words
(``-f``, ``--verbose``, "exit status"), so a question must be matched to the right tool. The
pages are read from /usr/share/man/man1 at export time and rendered by ``roff.py`` in Python, so
the export needs neither man nor groff; only the questions are committed, in questions.jsonl,
and every gold answer is checked against the rendered text.
"""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

# Run as a script (even with python -I): find roff.py beside it and evalset.py one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from evalset import ExportError, SourceDocument, export, log
from roff import render

HERE = Path(__file__).resolve().parent
MAN_DIR = Path("/usr/share/man")
# Section 1 pages from packages of priority required on Debian (coreutils, tar, gzip, grep, sed,
# findutils, diffutils, util-linux, bsdutils, dpkg, passwd, hostname, ncurses-bin), each
# under 60,000 characters rendered (find(1), at 80,000, and bash(1) are left out).
PAGES = (
    "ls", "cp", "sort", "uniq", "cut", "tail", "date", "dd", "df", "du", "chmod", "ln", "split",
    "timeout", "shred", "numfmt", "mktemp",
    "tar", "gzip", "grep", "sed", "xargs", "diff",
    "dmesg", "flock", "getopt", "ionice", "taskset", "more", "logger", "script", "su",
    "passwd", "chage", "dpkg", "dpkg-query", "hostname", "tput",
)  # fmt: skip
MAX_CHARS = 60_000


def page_source(name: str, hops: int = 3) -> str | None:
    """The roff source of `name`(1), following a ``.so`` redirect; None if not installed."""
    for path in (MAN_DIR / "man1" / f"{name}.1.gz", MAN_DIR / "man1" / f"{name}.1"):
        if path.is_file():
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            try:
                source = data.decode("utf-8")
            except UnicodeDecodeError:
                source = data.decode("latin-1")
            redirect = re.match(r"\.so\s+man1/(\S+)\.1(?:\.gz)?\s*$", source.strip())
            if redirect and hops:
                return page_source(redirect.group(1), hops - 1)
            return source
    return None


def title_of(name: str, text: str) -> str:
    """``ls(1): list directory contents``, from the page's NAME line."""
    match = re.search(r"^NAME\n\s+(.+)", text, re.M)
    line = " ".join(match.group(1).split()) if match else ""
    _, dash, summary = line.partition(" - ")
    return f"{name}(1): {summary}" if dash else f"{name}(1)"


def read_documents() -> list[SourceDocument]:
    documents = []
    for name in PAGES:
        source = page_source(name)
        if source is None:
            log.warning("%s(1) is not installed", name)
            continue
        text = render(source)
        if len(text) > MAX_CHARS:
            raise ExportError(f"{name}(1) renders to {len(text)} characters (limit {MAX_CHARS})")
        documents.append(SourceDocument(name, title_of(name, text), text))
    if not documents:
        raise ExportError(
            f"none of the {len(PAGES)} manual pages is under {MAN_DIR}/man1: minimal images "
            "(debian:*-slim, Ubuntu minimal) drop man pages; remove the path-exclude lines in "
            "/etc/dpkg/dpkg.cfg.d/ and reinstall the packages, or export on a full Debian system"
        )
    return documents


def main(argv: list[str] | None = None) -> int:
    return export(
        argv,
        description=__doc__.splitlines()[0],
        default_out=HERE / "data" / "manuals",
        questions_path=HERE / "questions.jsonl",
        expected_ids=PAGES,
        read_documents=read_documents,
    )


if __name__ == "__main__":
    sys.exit(main())
