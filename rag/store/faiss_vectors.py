"""The vectors of a folder version: FAISS files beside the SQLite chunk store.

`rag.store.local` owns the chunk store (SQLite + FTS5), the manifest and atomic publishing;
this module only answers "which chunk ids are nearest to this vector" for a loaded version
(`VectorStore`) and builds the vectors of a new version (`VectorWriter`).

FAISS chooses its index by size when a version is written: exact inner product
(`IndexIDMap2(IndexFlatIP)`) below `exact_limit` chunks, an inverted file storing float16
(`IVF<nlist>,SQfp16`, ids kept by the IVF itself so that `remove_ids` works) above it. float16
needs no trained value ranges, so vectors added later are stored as faithfully as the first
ones (8-bit codes clip values outside the ranges seen in training). Both are memory-mapped
when loaded, so a server's resident memory grows with the lists it touches, not with the size
of the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from rag.errors import CorruptIndexError

VECTORS = "vectors.faiss"
DEFAULT_EXACT_LIMIT = 100_000


class VectorStore(Protocol):
    """The vectors of one loaded, read-only version."""

    @property
    def size(self) -> int: ...

    def search(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the n nearest chunks, best first."""
        ...

    def similarity(self, query: np.ndarray, ids: list[int]) -> dict[int, float]:
        """Cosine of the query with these stored chunks (hits found by the lexical side)."""
        ...

    def close(self) -> None: ...


class VectorWriter(Protocol):
    """The vectors of a version being built; nothing is visible to readers until `save`."""

    def add(self, ids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def save(self, directory: Path) -> dict[str, Any]:
        """Make the vectors durable (files go into `directory`); the manifest's `vectors` entry."""
        ...

    def abandon(self) -> None: ...


def vectors_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's `vectors` entry; indexes written before it existed are exact FAISS."""
    return manifest.get("vectors") or {"backend": "faiss", "kind": "exact"}


def nlist_for(size: int) -> int:
    """IVF lists: a power of two near 2*sqrt(size) (2048 at a million, ~500 chunks each).

    Measured at a million chunks: 1024 lists need twice the probes for the same recall, so
    searches scan twice as many vectors; more lists cost more to train and assign.
    """
    return max(64, 2 ** round(math.log2(2 * math.sqrt(max(size, 1)))))


@dataclass(frozen=True)
class FaissBackend:
    """Vectors in `vectors.faiss` beside the chunk store; exact or IVF chosen by size."""

    exact_limit: int = DEFAULT_EXACT_LIMIT
    nprobe: int = 48
    mmap: bool = True
    name: str = "faiss"

    def open(self, path: Path, entry: dict[str, Any]) -> FaissVectors:
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if self.mmap else 0
        try:
            index = faiss.read_index(str(path / VECTORS), flags)
        except RuntimeError as exc:
            raise CorruptIndexError(f"cannot read {path / VECTORS}: {exc}") from None
        return FaissVectors(index)

    def writer(
        self,
        directory: Path,
        tag: str,
        base: dict[str, Any] | None,
        base_path: Path | None,
        dimension: int,
    ) -> FaissWriter:
        # Read the base afresh rather than cloning the loaded one: that one is memory-mapped.
        index = faiss.read_index(str(base_path / VECTORS)) if base_path is not None else None
        return FaissWriter(self, index or exact_index(dimension))

    def fit(self, index: faiss.Index) -> faiss.Index:
        """The index this many vectors should be served from, converting when size says so.

        IVF centroids are trained once; they are retrained when the index has grown enough
        that twice as many lists would be chosen (about four times the size trained on).
        Going back to exact happens only below half the limit, so that an index near the
        limit does not flip between kinds on every update.
        """
        size = int(index.ntotal)
        if isinstance(index, faiss.IndexIVF):
            if size < self.exact_limit // 2:
                ids, vectors = all_vectors(index)
                exact = exact_index(index.d)
                exact.add_with_ids(vectors, ids)
                return exact
            if nlist_for(size) < 2 * index.nlist:
                index.nprobe = min(self.nprobe, index.nlist)  # the setting may have changed
                return index
        elif size < self.exact_limit:
            return index
        return self.train_ivf(*all_vectors(index))

    def train_ivf(self, ids: np.ndarray, vectors: np.ndarray) -> faiss.IndexIVF:
        size, dimension = vectors.shape
        nlist = nlist_for(size)
        quantizer = faiss.IndexFlatIP(dimension)
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer, dimension, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        ivf.cp.niter = 10  # centroids good enough for routing; 25 costs 2.5x the time
        rng = np.random.default_rng(0)
        sample = rng.choice(size, size=min(size, 40 * nlist), replace=False)
        ivf.train(vectors[np.sort(sample)])
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by id
        for start in range(0, size, 100_000):
            ivf.add_with_ids(vectors[start : start + 100_000], ids[start : start + 100_000])
        ivf.nprobe = min(self.nprobe, nlist)
        return ivf


def exact_index(dimension: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def all_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every stored chunk (IVF ones decoded from float16)."""
    if isinstance(index, faiss.IndexIVF):
        lists = index.invlists
        ids = np.concatenate(
            [np.zeros(0, dtype=np.int64)]
            + [
                faiss.rev_swig_ptr(lists.get_ids(n), lists.list_size(n)).copy()
                for n in range(index.nlist)
                if lists.list_size(n)
            ]
        )
        vectors = np.vstack(
            [np.zeros((0, index.d), dtype=np.float32)]
            + [index.reconstruct_batch(ids[s : s + 100_000]) for s in range(0, len(ids), 100_000)]
        )
        return ids, vectors
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    return ids, index.index.reconstruct_n(0, index.ntotal)


def describe(index: faiss.Index) -> dict[str, Any]:
    if isinstance(index, faiss.IndexIVF):
        return {
            "backend": "faiss",
            "kind": "ivf",
            "factory": f"IVF{index.nlist},SQfp16",
            "nlist": int(index.nlist),
            "nprobe": int(index.nprobe),
        }
    return {"backend": "faiss", "kind": "exact", "factory": "IDMap2,Flat"}


class FaissVectors:
    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def search(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        if self.size == 0:
            return []
        scores, ids = self.index.search(query.reshape(1, -1), min(n, self.size))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def similarity(self, query: np.ndarray, ids: list[int]) -> dict[int, float]:
        return {i: float(self.index.reconstruct(i) @ query) for i in ids}

    def close(self) -> None:
        self.index = None


class FaissWriter:
    def __init__(self, backend: FaissBackend, index: faiss.Index) -> None:
        self.backend = backend
        self.index = index

    def add(self, ids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        self.index.remove_ids(ids)

    def save(self, directory: Path) -> dict[str, Any]:
        self.index = self.backend.fit(self.index)
        faiss.write_index(self.index, str(directory / VECTORS))
        return describe(self.index)

    def abandon(self) -> None:
        self.index = None
