"""Export the licence texts that Debian ships in /usr/share/common-licenses as an evaluation set.

Legal documents name their subject once and then say "the Licensor", "You", "this License", and
several of them are near copies of each other (GPL-2 and GPL-3, LGPL-2 and LGPL-2.1, GFDL-1.2 and
GFDL-1.3): a retriever must tell versions apart. The text is read from the machine (base-files
ships it on every Debian system); only the questions are committed, in questions.jsonl, and every
gold answer is checked against the exported text.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: evalset.py (shared with the other exporters) is one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evalset import SourceDocument, export, log

HERE = Path(__file__).resolve().parent
LICENSE_DIR = Path("/usr/share/common-licenses")
# File name (the document id) -> title. GFDL, GPL and LGPL are symlinks to files listed here.
LICENSES = {
    "Apache-2.0": "Apache License, Version 2.0",
    "Artistic": "The Artistic License",
    "BSD": "BSD License (Regents of the University of California)",
    "CC0-1.0": "Creative Commons CC0 1.0 Universal",
    "GFDL-1.2": "GNU Free Documentation License, Version 1.2",
    "GFDL-1.3": "GNU Free Documentation License, Version 1.3",
    "GPL-1": "GNU General Public License, Version 1",
    "GPL-2": "GNU General Public License, Version 2",
    "GPL-3": "GNU General Public License, Version 3",
    "LGPL-2": "GNU Library General Public License, Version 2",
    "LGPL-2.1": "GNU Lesser General Public License, Version 2.1",
    "LGPL-3": "GNU Lesser General Public License, Version 3",
    "MPL-1.1": "Mozilla Public License, Version 1.1",
    "MPL-2.0": "Mozilla Public License, Version 2.0",
}


def clean(text: str) -> str:
    """The licence as written, less form feeds, trailing blanks and runs of blank lines."""
    lines = [line.rstrip() for line in text.replace("\f", "").splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def read_documents() -> list[SourceDocument]:
    documents = []
    for name, title in LICENSES.items():
        path = LICENSE_DIR / name
        if not path.is_file():
            log.warning("%s is missing", path)
            continue
        documents.append(SourceDocument(name, title, clean(path.read_text(encoding="utf-8"))))
    return documents


def main(argv: list[str] | None = None) -> int:
    return export(
        argv,
        description=__doc__.splitlines()[0],
        default_out=HERE / "data" / "licenses",
        questions_path=HERE / "questions.jsonl",
        expected_ids=LICENSES,
        read_documents=read_documents,
    )


if __name__ == "__main__":
    sys.exit(main())
