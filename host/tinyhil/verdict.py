"""One rule for "does the device's output equal the host interpreter's?", and the
status strings a measurement is recorded with.

A leaf: `tinyhil run`, characterization, regression and deployment all decide
with `compare_output`; the LUT, the estimators and the reports only read the
status strings (`usable`, `skipped`), so they never load the device stage.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

OK = "ok"
# Outputs one quantization step off the host interpreter's: CMSIS-NN and
# TFLite round some requantizations differently. Flagged, but the timing is
# that of the same computation, so lookups may use it.
ROUNDING = "lsb1"
MISMATCH = "mismatch"
# The board, not the benchmark, failed (it gave up after every recovery
# step): nothing was measured, nothing may be recorded; a later run retries.
SKIPPED = "skipped"

EXACT, ONE_STEP = "exact", "one-step"


def usable(status: str) -> bool:
    """May a row with this status price an op (exact, or one rounding step off)?"""
    return status == OK or status.startswith(ROUNDING)


def skipped(status: str) -> bool:
    return status.startswith(SKIPPED)


@dataclass(frozen=True)
class OutputComparison:
    """A device output against the host interpreter's."""

    kind: str  # EXACT | ONE_STEP | MISMATCH
    max_steps: int | None  # largest |device - host| in int8 steps; None: only a CRC came back
    steps_off: int = 0  # outputs that differ
    size: int = 0  # outputs compared

    @property
    def usable(self) -> bool:
        return self.kind != MISMATCH

    @property
    def status(self) -> str:
        """The status string a measurement is recorded with."""
        if self.kind == EXACT:
            return OK
        if self.kind == ONE_STEP:
            return (f"{ROUNDING}: {self.steps_off} of {self.size} outputs one step off the host "
                    "TFLite interpreter (requantization rounding)")
        if self.max_steps is None:
            return f"{MISMATCH}: output differs from the host TFLite interpreter"
        return f"{MISMATCH}: outputs differ from the host TFLite interpreter by up to {self.max_steps} steps"


def compare_output(device: bytes | None, host: bytes, device_crc: int | None = None,
                   device_size: int | None = None) -> OutputComparison:
    """Compare by bytes when the device sent them, else by its CRC-32 and size
    (large outputs come back as a CRC only: equal or not, no step count)."""
    if device is None or len(device) != len(host):
        if device is None and device_size == len(host) and device_crc == zlib.crc32(host):
            return OutputComparison(EXACT, 0, 0, len(host))
        return OutputComparison(MISMATCH, None, 0, len(host))
    diff = np.abs(np.frombuffer(device, np.int8).astype(int) - np.frombuffer(host, np.int8))
    worst = int(diff.max()) if diff.size else 0
    kind = EXACT if worst == 0 else ONE_STEP if worst == 1 else MISMATCH
    return OutputComparison(kind, worst, int((diff > 0).sum()), int(diff.size))


def largest_steps(comparisons: list[OutputComparison]) -> int:
    """Largest difference in int8 steps over many outputs (one unknown counts as 255)."""
    return max((255 if c.max_steps is None else c.max_steps for c in comparisons), default=0)
