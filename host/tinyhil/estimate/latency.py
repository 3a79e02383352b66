"""Latency of a whole architecture, estimated before it is ever run."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyhil.errors import TinyhilError
from tinyhil.lut.table import Lut
from tinyhil.spaces.arch import Architecture
from tinyhil.verdict import usable


class MissingOps(TinyhilError):
    """The architecture uses ops the LUT has no good measurement for."""


def check_covered(arch: Architecture, lut: Lut) -> None:
    missing = sorted({op.key for op in arch.runtime().ops if op not in lut
                      or not usable(lut.rows.loc[op.key, "status"])})
    if missing:
        m = lut.meta
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MissingOps(
            f"{len(missing)} op(s) of this architecture are not in {lut.path}: {shown}. "
            f"Measure them with: tinyhil characterize --space {m.space or arch.space} "
            f"--input {m.input or 'TxS'} --classes {m.extra.get('classes', '?')} --board {m.board}")


def op_kernel_cycles(op, lut: Lut, at: str = "point") -> float:
    """One op's kernel cycles in the LUT, at the point estimate or at a
    calibrated LUT's bound (`p95`, ...: the whole margin is the kernel's)."""
    from tinyhil.lut.calibration.board_lut import cycles_at

    row = lut.row(op)
    cycles = float(row["cycles"])
    return float(row["kernel_cycles"]) + cycles_at(lut.meta, op, cycles, at) - cycles


def lut_latency(arch: Architecture, lut: Lut, at: str = "point") -> float:
    """Sum of each op's measured kernel cycles, plus the interpreter's
    measured per-invoke and per-op overheads. `at`: the point estimate, or a
    calibrated LUT's bound (`p95`) on each op."""
    check_covered(arch, lut)
    ops = arch.runtime().ops
    kernels = sum(op_kernel_cycles(op, lut, at) for op in ops)
    return kernels + lut.meta.invoke_cycles + len(ops) * lut.meta.dispatch_cycles


@dataclass(frozen=True)
class MacsProxy:
    """The usual proxy: latency = slope x MACs + intercept, least squares over
    the LUT's single-op rows (so it is fitted before any whole model runs)."""

    slope: float
    intercept: float

    @classmethod
    def fit(cls, lut: Lut) -> MacsProxy:
        rows = lut.rows[lut.rows["status"].map(usable)]
        if len(rows) < 2:
            raise TinyhilError(f"{lut.path}: too few measured rows to fit a MACs proxy")
        slope, intercept = np.polyfit(rows["macs"].astype(float), rows["cycles"].astype(float), 1)
        return cls(float(slope), float(intercept))

    def __call__(self, arch: Architecture) -> float:
        return self.slope * arch.runtime().macs + self.intercept
