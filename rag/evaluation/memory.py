"""Peak resident memory of a phase, from Linux's VmHWM (reset through /proc/self/clear_refs)."""

from __future__ import annotations

import contextlib
from pathlib import Path


def _vm(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakMemory:
    """`with PeakMemory() as m: ...` then `m.peak_mb`: the highest RSS seen inside the block."""

    peak_mb: float = 0.0

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_mb = max(_vm("VmHWM"), _vm("VmRSS"))
