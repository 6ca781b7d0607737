"""A job's memory budget: every decode, inflate or copy is charged here before it happens.

Pipelines ask before they work: `budget.charge(n, "what")` raises BudgetExceeded when the job
would then hold more than its limit, so a 200 KiB file that claims to inflate to 6 GB fails
before a byte is inflated. `release` gives bytes back when a buffer is dropped; `charged`
tracks the peak for reports. Sizes are estimates of what the work will allocate (width x
height x channels x bytes per sample, frames x frame size, samples x 4), not measurements.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from plugin.errors import InputError

MIB = 1024 * 1024
# What one job may hold at once when no setting says otherwise.
DEFAULT_JOB_MEMORY_BYTES = 1536 * MIB


class BudgetExceeded(InputError):
    """The input would need more memory (or pixels, samples, bytes) than the job may use."""


@dataclass
class MemoryBudget:
    """What one job may allocate for the input named `source`. Thread-safe; not shared between
    jobs."""

    source: str
    limit_bytes: int = DEFAULT_JOB_MEMORY_BYTES
    held_bytes: int = 0
    peak_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def check(self, nbytes: int, what: str) -> None:
        """Raise when holding `nbytes` more would pass the limit; charges nothing."""
        with self._lock:
            self._refuse_if_over(nbytes, what)

    def charge(self, nbytes: int, what: str) -> None:
        """Record `nbytes` as held, or raise BudgetExceeded without recording anything."""
        with self._lock:
            self._refuse_if_over(nbytes, what)
            self.held_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.held_bytes)

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.held_bytes = max(0, self.held_bytes - nbytes)

    @contextmanager
    def held(self, nbytes: int, what: str) -> Iterator[None]:
        """Charge `nbytes` for the work inside the block (a temporary copy), released after it."""
        self.charge(nbytes, what)
        try:
            yield
        finally:
            self.release(nbytes)

    def _refuse_if_over(self, nbytes: int, what: str) -> None:
        if nbytes < 0:
            raise BudgetExceeded(self.source, f"{what}: impossible size {nbytes}")
        if self.held_bytes + nbytes > self.limit_bytes:
            raise BudgetExceeded(
                self.source,
                f"{what} needs {_mib(nbytes)} and the job already holds {_mib(self.held_bytes)} "
                f"of its {_mib(self.limit_bytes)} memory budget",
            )


def _mib(nbytes: int) -> str:
    return f"{nbytes / MIB:.1f} MiB"
