"""A model's latency on a physical board, predicted from the board's
(calibrated) LUT: each op's kernel cycles at the point estimate and at its
bound, plus the board's invoke and per-op overheads: the same sum as the
LUT estimator (estimate.lut_latency), shown beside what the emulated board
measured."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinyhil.errors import TinyhilError
from tinyhil.estimate.latency import op_kernel_cycles
from tinyhil.lut.calibration.board_lut import calibration_warnings, is_calibrated
from tinyhil.lut.calibration.bounds import BOUND
from tinyhil.lut.calibration.features import kernel_path
from tinyhil.lut.table import Lut
from tinyhil.spaces.ops import OpConfig
from tinyhil.verdict import usable


class PredictError(TinyhilError):
    """No board LUT can price this model."""


@dataclass(frozen=True)
class PredictedOp:
    index: int
    op: OpConfig | None
    kernel_cycles: float | None  # None: no LUT row for it
    kernel_bound: float | None


@dataclass(frozen=True)
class Prediction:
    board: str
    lut: Path
    clock_hz: int
    bound: str
    ops: tuple[PredictedOp, ...]
    invoke_cycles: float
    dispatch_cycles: float
    calibrated: bool
    warnings: tuple[str, ...] = ()  # the model's op types the calibration never saw

    @property
    def total(self) -> float:
        return sum(o.kernel_cycles for o in self.ops) + self.invoke_cycles + len(self.ops) * self.dispatch_cycles

    @property
    def total_bound(self) -> float:
        return sum(o.kernel_bound for o in self.ops) + self.invoke_cycles + len(self.ops) * self.dispatch_cycles

    def ms(self, cycles: float) -> float:
        return cycles / self.clock_hz * 1e3

    def latency(self) -> BoardLatency:
        return BoardLatency(self.board, self.bound, self.ms(self.total), self.ms(self.total_bound), str(self.lut),
                            self.calibrated)


@dataclass(frozen=True)
class BoardLatency:
    """A whole model's latency predicted on a (physical) board: the point
    estimate and its bound. With one, a deployment's latency verdict is the
    bound's against the target, not what the emulated board measured."""

    board: str
    bound: str  # p50, p90, p95, p99 (a measured LUT: the point itself)
    ms: float
    ms_bound: float
    lut: str
    calibrated: bool = True


def covering_lut(board: str, op_list: list[OpConfig], luts: Path) -> Lut:
    """The board's LUT (luts/<board>/*.csv, calibrated tables first) that holds
    every op with a usable row."""
    candidates = sorted((Path(luts) / board).glob("*.csv"), key=lambda p: (p.name == "ops.csv", p.name))
    if not candidates:
        raise PredictError(f"no LUT for {board} in {luts}/{board}/: make one with `tinyhil calibrate "
                           f"--emulated luts/<emulated board>/<space LUT>.csv --reference ... --board {board}`")
    best, best_missing = None, None
    for path in candidates:
        lut = Lut.load(path, board=board)
        missing = [op.key for op in op_list
                   if op not in lut or not usable(lut.rows.loc[op.key, "status"])]
        if not missing:
            return lut
        if best_missing is None or len(missing) < len(best_missing):
            best, best_missing = path, missing
    shown = ", ".join(best_missing[:4]) + (f" and {len(best_missing) - 4} more" if len(best_missing) > 4 else "")
    raise PredictError(f"no LUT of {board} holds every op of this model; the closest, {best}, lacks {shown}: "
                       f"calibrate a LUT that has them for {board}")


def predict(op_list: list[OpConfig | None], board: str, luts: Path = Path("luts"), at: str = BOUND,
            lut: Lut | None = None) -> Prediction:
    unknown = [i for i, op in enumerate(op_list) if op is None]
    if unknown:
        raise PredictError(f"op(s) #{', #'.join(map(str, unknown))} of this model are none tinyhil can "
                           "look up in a LUT")
    lut = lut or covering_lut(board, op_list, luts)
    rows = tuple(PredictedOp(i, op, op_kernel_cycles(op, lut), op_kernel_cycles(op, lut, at))
                 for i, op in enumerate(op_list))
    m = lut.meta
    warnings = calibration_warnings(m, [kernel_path(op) for op in op_list])
    return Prediction(m.board, Path(lut.path), m.clock_hz, at, rows, m.invoke_cycles, m.dispatch_cycles,
                      is_calibrated(m), tuple(warnings))
