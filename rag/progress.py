"""The one progress-bar helper: tqdm on stderr, silent when the caller asks for quiet."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(
    items: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it", show=True
) -> Iterator[T]:
    """Wrap an iterable in a progress bar with a time estimate, or pass it through."""
    if not show:
        yield from items
        return
    yield from tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)


def bar(total: int, *, desc: str, unit: str, show: bool = True) -> tqdm:
    """A bar advanced by hand (e.g. by chunks embedded per batch)."""
    return tqdm(
        total=total, desc=desc, unit=unit, disable=not show, dynamic_ncols=True, leave=False
    )
