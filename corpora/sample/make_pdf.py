"""Write `safety.pdf`, the sample corpus's PDF, by hand with the standard library only.

No PDF layout library is a project dependency, and a hand-written file keeps the test fixture
small and deterministic: the same text always gives the same bytes. The PDF uses the built-in
Helvetica fonts (no embedding) and one text object per page, so any extractor can read it back.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

TITLE = "Lumen Harbor Safety Procedures"

# (style, paragraph): "h1" title, "h2" section heading, "p" body text wrapped to the page width.
CONTENT: list[tuple[str, str]] = [
    ("h1", TITLE),
    (
        "p",
        "These procedures apply to everyone at Lumen Harbor Research Station, including "
        "visitors. Read them during your first day and ask the safety officer about anything "
        "that is unclear.",
    ),
    ("h2", "Safety officer"),
    (
        "p",
        "The station safety officer is Rafe Okonkwo-Lindqvist. He checks every fire "
        "extinguisher and first-aid kit on the first Monday of each month.",
    ),
    ("h2", "Fire alarm"),
    (
        "p",
        "When the fire alarm sounds, all staff gather at Muster Point C beside the old "
        "lighthouse. Do not stop to collect belongings, and do not go back inside until the "
        "safety officer has counted everyone.",
    ),
    ("h2", "Radio"),
    (
        "p",
        "In an emergency, call the station on VHF radio channel 14. Routine traffic uses "
        "channel 9, which must be kept short so that channel 14 stays clear.",
    ),
    ("h2", "Boat operations"),
    (
        "p",
        "Small-boat operations stop when the wind speed exceeds 28 knots. Everyone on a boat "
        "wears a lifejacket, and at least two people must be aboard on every trip outside the "
        "harbour.",
    ),
    ("h2", "Cold water"),
    (
        "p",
        "Anyone who falls into the sea must be checked by the station medic within 30 minutes, "
        "even if they feel well. Immersion suits hang in the boathouse drying room.",
    ),
]

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
MARGIN = 64
WRAP_CHARS = 86  # keeps this text (at most ~430 pt wide in 11 pt Helvetica) inside the margins
FONTS = {"h1": ("F2", 18, 28), "h2": ("F2", 13, 24), "p": ("F1", 11, 15)}  # name, size, leading
LINES_PER_PAGE = 44  # 44 body lines of 15 pt leading fit between the margins


def _escape(text: str) -> str:
    """Escape a string for a PDF literal; the built-in fonts only cover Latin-1."""
    text.encode("latin-1")  # fail loudly rather than write a glyph the font lacks
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def layout(content: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Split the content into pages of (style, line) pairs."""
    lines: list[tuple[str, str]] = []
    for style, paragraph in content:
        wrapped = textwrap.wrap(paragraph, WRAP_CHARS) if style == "p" else [paragraph]
        lines.extend((style, line) for line in wrapped)
    return [lines[i : i + LINES_PER_PAGE] for i in range(0, len(lines), LINES_PER_PAGE)]


def content_stream(lines: list[tuple[str, str]]) -> bytes:
    """One BT/ET text object; each line moves down by its own leading from the previous one."""
    ops = ["BT", f"{MARGIN} {PAGE_HEIGHT - MARGIN} Td"]
    for i, (style, line) in enumerate(lines):
        font, size, leading = FONTS[style]
        if i:
            ops.append(f"0 -{leading} Td")
        ops.append(f"/{font} {size} Tf ({_escape(line)}) Tj")
    ops.append("ET")
    return "\n".join(ops).encode("latin-1")


def build_pdf(content: list[tuple[str, str]], title: str) -> bytes:
    """Assemble the objects, the xref table (byte offsets) and the trailer of a PDF 1.4 file."""
    pages = layout(content)
    first_page = 5  # objects 1-4 are the catalog, the page tree and the two fonts
    page_ids = [first_page + 2 * i for i in range(len(pages))]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] "
        f"/Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    ]
    for page_id, lines in zip(page_ids, pages, strict=True):
        stream = content_stream(lines)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] "
            f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> "
            f"/Contents {page_id + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    info_id = len(objects) + 1
    objects.append(f"<< /Title ({_escape(title)}) /Producer (make_pdf.py) >>".encode("latin-1"))

    # The binary comment line tells transfer tools the file is binary, as the spec recommends.
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    # Each xref entry is exactly 20 bytes, including its two-byte end of line.
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\n" % (len(objects) + 1, info_id)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def main(argv: list[str] | None = None) -> None:
    default = Path(__file__).resolve().parent / "safety.pdf"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default, help=f"(default: {default})")
    args = parser.parse_args(argv)
    data = build_pdf(CONTENT, TITLE)
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {len(layout(CONTENT))} page(s), {len(data)} bytes")


if __name__ == "__main__":
    main()
