"""The layout of an index version, read in one place for every backend.

A version is a manifest (JSON: embedder, chunking, documents and their hashes, counts, and
where the chunks and vectors live) plus the data it names. In a folder store
(`indexes/<name>/`) the manifest is `v-<stamp>/manifest.json` and the live version is named by
the file `CURRENT`; in PostgreSQL the manifest is a row of `rag_versions` and the live version
a row of `rag_current`. Either way, names, version stamps and manifests are checked here.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.errors import CorruptIndexError, IndexFormatError, InputError

FORMAT_VERSION = 1
VECTORS, CHUNKS, MANIFEST, CURRENT = "vectors.faiss", "chunks.sqlite", "manifest.json", "CURRENT"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
REQUIRED = ("files", "counts", "embedder", "documents")


def check_name(name: str) -> str:
    """Index names become directory and row names: refuse anything that could leave `indexes/`."""
    if not NAME_PATTERN.match(name) or ".." in name:
        raise InputError(
            f"invalid index name {name!r}: use letters, digits, '.', '_' or '-' "
            "(no path separators, at most 64 characters)"
        )
    return name


def index_dir(root: Path, name: str) -> Path:
    return Path(root) / check_name(name)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_version() -> str:
    """A version name that sorts by time and never repeats."""
    return f"v-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def store_kind(manifest: dict[str, Any]) -> str:
    """Where a version lives: "local" (folder: SQLite + FAISS) or "postgres"."""
    return manifest.get("store", "local")


def check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """A manifest as read from a file or a row, or CorruptIndexError/IndexFormatError."""
    try:
        fmt = int(manifest["format_version"])
        missing = [k for k in REQUIRED if k not in manifest]
        if missing:
            raise KeyError(", ".join(missing))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptIndexError(f"index manifest {where} is unreadable ({exc})") from None
    if fmt > FORMAT_VERSION:
        raise IndexFormatError(
            f"index at {where} has format version {fmt}, newer than this rag understands "
            f"({FORMAT_VERSION}); upgrade rag or rebuild the index"
        )
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a version folder."""
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text("utf-8"))
    except FileNotFoundError:
        raise CorruptIndexError(f"index manifest {file} is missing; rebuild the index") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"index manifest {file} is unreadable ({exc})") from None
    return check_manifest(manifest, str(file))


def read_current(directory: Path) -> str | None:
    """The live version named by `CURRENT`, or None when the index has none."""
    try:
        return (directory / CURRENT).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def summary(name: str, manifest: dict[str, Any], size_mb: float) -> dict[str, Any]:
    """What `rag indexes` and `/indexes` say about a version."""
    return {
        "name": name,
        "version": manifest["version"],
        "store": store_kind(manifest),
        "documents": manifest["counts"]["documents"],
        "chunks": manifest["counts"]["chunks"],
        "embedder": manifest["embedder"]["name"],
        "chunking": manifest.get("chunking"),
        "created_at": manifest.get("created_at"),
        "updated_at": manifest.get("updated_at"),
        "build_seconds": manifest.get("last_build", {}).get("seconds", 0.0),
        "size_mb": size_mb,
    }
