"""Export the Python language reference topics bundled with CPython as one Markdown file each.

The text comes from ``pydoc_data.topics`` (what ``help("assert")`` shows), so the demo corpus is
produced by a recipe instead of being committed. Output is deterministic and ``docs/`` is replaced
as a whole, so re-running leaves no stale files and unchanged topics keep identical bytes.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from pydoc_data.topics import topics

DEFAULT_OUT = Path(__file__).resolve().parent / "docs"

# pydoc renders reST section underlines; map each underline character to a Markdown level.
HEADING_LEVELS = {"*": 1, "=": 2, "-": 3, "~": 4}


def _underline_level(title: str, underline: str) -> int | None:
    """Return the heading level if `underline` underlines `title` (reST style), else None."""
    if not title.strip() or title != title.lstrip() or len(underline) != len(title):
        return None
    if len(set(underline)) != 1:
        return None
    return HEADING_LEVELS.get(underline[0])


def topic_to_markdown(key: str, text: str) -> str:
    """Turn one pydoc topic into Markdown that starts with a `# Title` heading."""
    lines = text.strip("\n").split("\n")
    if len(lines) >= 2 and _underline_level(lines[0], lines[1]) == 1:
        title, lines = lines[0], lines[2:]
    else:
        title = key
    out = [f"# {title}"]
    i = 0
    while i < len(lines):
        level = _underline_level(lines[i], lines[i + 1]) if i + 1 < len(lines) else None
        if level is not None:
            out.append(f"{'#' * max(level, 2)} {lines[i]}")
            i += 2
        else:
            out.append(lines[i].rstrip())
            i += 1
    return "\n".join(out).rstrip() + "\n"


def export_topics(out_dir: Path) -> int:
    """Write every topic to `out_dir/<topic>.md`, replacing the directory; return the count."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the target so the final swap is a rename on the same filesystem.
    staging = Path(tempfile.mkdtemp(prefix=".docs-", dir=out_dir.parent))
    try:
        for key in sorted(topics):
            markdown = topic_to_markdown(key, topics[key])
            (staging / f"{key}.md").write_text(markdown, encoding="utf-8", newline="\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
            staging.rename(out_dir)
            shutil.rmtree(old)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return len(topics)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    count = export_topics(args.out)
    print(f"wrote {count} topics to {args.out}")


if __name__ == "__main__":
    main()
