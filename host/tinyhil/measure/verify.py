"""`tinyhil lut verify`: a committed table re-measured by today's firmware.

A LUT names the firmware that measured it (its fingerprint, image/
fingerprint.py). Verifying rebuilds today's firmware, measures the table's
rows again (all, or a seeded sample that covers every kernel path) through
the same path as `characterize` (into a scratch store), and compares op by
op. On an emulated board counts are exact, so any difference is a failure;
on a physical board a row fails when it leaves the table's stated bound (a
calibrated table's bound per kernel path; a measured one's own spread, and
1 % more). `update` writes today's rows back (emulated boards, every row):
the store and each space table of the board, rows in their order.
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from tinyhil.board_catalog import BoardConfig, get_board
from tinyhil.errors import TinyhilError
from tinyhil.image.fingerprint import firmware_fingerprint
from tinyhil.image.firmware import tflm_dir
from tinyhil.lut.calibration.board_lut import is_calibrated, lut_bounds
from tinyhil.lut.calibration.bounds import BOUND
from tinyhil.lut.calibration.features import kernel_path
from tinyhil.lut.sampling import choose_ops
from tinyhil.lut.table import COLUMNS, Lut, LutMeta, exclusive, row_op
from tinyhil.measure.characterize import Characterizer
from tinyhil.verdict import usable

COMPARED = ("cycles", "kernel_cycles", "arena_bytes", "scratch_bytes")  # what an estimate reads
PHYSICAL_SLACK = 0.01  # a measured physical table: its own min..max spread, and this much more


class VerifyError(TinyhilError):
    """A table that cannot be verified as asked."""


@dataclass(frozen=True)
class RowDiff:
    key: str
    column: str
    committed: float
    measured: float
    tolerance: float = 0.0  # relative: 0 on exact-count boards

    @property
    def change(self) -> float:
        return (self.measured - self.committed) / self.committed if self.committed else math.inf


@dataclass(frozen=True)
class LutCheck:
    """One table against today's measurements of its rows."""

    path: Path
    board: str
    fingerprint: str  # the table's
    today: str  # today's firmware's, for its board
    rows: int  # usable rows in the table
    checked: int  # of them re-measured now
    diffs: tuple[RowDiff, ...]
    overheads: tuple[tuple[str, float, float], ...]  # (name, committed, measured) that differ
    calibrated: bool

    @property
    def ok(self) -> bool:
        return not self.diffs and not self.overheads

    @property
    def keys_changed(self) -> int:
        return len({d.key for d in self.diffs})


@dataclass(frozen=True)
class VerifyResult:
    checks: tuple[LutCheck, ...]
    seconds: float
    measured_ops: int
    updated: tuple[Path, ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def todays_firmware(meta: LutMeta) -> str:
    """The fingerprint the table should name: its board's firmware today (a
    calibrated table's: the emulated board that measured what it was fitted on)."""
    calibration = meta.extra.get("calibration") or {}
    return firmware_fingerprint(get_board(calibration.get("from_board") or meta.board), tflm_dir())


def staleness(path: Path, meta: LutMeta) -> str | None:
    """Why `path` was not measured by today's firmware (None: it was)."""
    today = todays_firmware(meta)
    if meta.firmware == today:
        return None
    return (f"{path} was measured by firmware {meta.firmware or '(none recorded)'}, not today's {today} "
            f"({meta.board}): `tinyhil lut verify {path} --all` re-measures it, --update rewrites it "
            "(or `tinyhil characterize` into a new luts directory)")


def lut_files(paths: list[Path], board: str | None = None) -> list[Path]:
    """The LUTs named, or under the directories named (the store of a board first)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            candidates = sorted(path.rglob("*.csv"), key=lambda p: (p.parent, p.name != "ops.csv", p.name))
            found += [p for p in candidates if p.with_suffix(".meta.json").is_file()]
        elif path.is_file():
            found.append(path)
        else:
            raise VerifyError(f"{path}: no such LUT or directory")
    if board:
        found = [p for p in found if Lut.load(p).meta.board == board]
    if not found:
        raise VerifyError(f"no LUT in {', '.join(map(str, paths))}" + (f" for board {board}" if board else ""))
    return list(dict.fromkeys(found))


def sample_keys(lut: Lut, n: int, seed: int) -> list[str]:
    """n usable rows, seeded, spread over every kernel path (lut/sampling.py)."""
    good = lut.rows[lut.rows["status"].map(usable)]
    ops = [row_op(r) for _, r in good.iterrows()]
    return [op.key for op in choose_ops(ops, min(n, len(ops)), seed)]


def tolerance(meta: LutMeta, row: pd.Series, board: BoardConfig) -> float:
    """How far a re-measured row may land from the committed one."""
    if board.exact_counts:
        return 0.0
    if is_calibrated(meta):
        bounds = lut_bounds(meta)
        if bounds is None:
            raise VerifyError(f"the calibrated LUT for {meta.board} records no bound: calibrate it again")
        return bounds.fraction(kernel_path(row_op(row)), BOUND)
    spread = (float(row["cycles_max"]) - float(row["cycles_min"])) / float(row["cycles"])
    return spread + PHYSICAL_SLACK


def compare(lut: Lut, fresh: Lut, keys: list[str], board: BoardConfig) -> tuple[RowDiff, ...]:
    diffs = []
    for key in keys:
        old = lut.rows.loc[key]
        status = fresh.rows.at[key, "status"] if key in fresh.rows.index else "not measured"
        if not (usable(old["status"]) and usable(status)):
            if usable(old["status"]) or usable(status) or old["status"] != status:
                diffs.append(RowDiff(key, f"status: {old['status']} -> {status}", float(old["cycles"]),
                                     float(fresh.rows.at[key, "cycles"]) if usable(status) else math.nan))
            continue
        new = fresh.rows.loc[key]
        # a calibrated table's cycles are predictions: only they are compared, within the bound
        columns = ("cycles",) if is_calibrated(lut.meta) or not board.exact_counts else COMPARED
        allowed = tolerance(lut.meta, old, board)
        for column in columns:
            a, b = float(old[column]), float(new[column])
            if (a != b) if allowed == 0 else abs(b - a) > allowed * abs(a):
                diffs.append(RowDiff(key, column, a, b, allowed))
    return tuple(diffs)


def compare_overheads(meta: LutMeta, fresh: LutMeta, board: BoardConfig) -> tuple[tuple[str, float, float], ...]:
    if not board.exact_counts or is_calibrated(meta):
        return ()  # a physical board's overheads vary run to run; a calibrated table's are fitted
    pairs = [("invoke_cycles", meta.invoke_cycles, fresh.invoke_cycles),
             ("dispatch_cycles", meta.dispatch_cycles, fresh.dispatch_cycles)]
    arena, fresh_arena = meta.extra.get("chain_arena_bytes", {}), fresh.extra.get("chain_arena_bytes", {})
    pairs += [(f"chain_arena_bytes[{n}]", float(arena[n]), float(fresh_arena.get(n, math.nan)))
              for n in sorted(arena)]
    return tuple((name, a, b) for name, a, b in pairs if a != b)


def verify_luts(paths: list[Path], sample: int | None = None, seed: int = 0, board: str | None = None,
                port: str = "", progress=None, update: bool = False) -> VerifyResult:
    """Re-measures the rows of every LUT named (per board, each op once) and compares."""
    started = time.monotonic()
    files = lut_files(paths, board)
    if update and sample is not None:
        raise VerifyError("--update rewrites whole tables: give --all, not --sample")
    by_board: dict[str, list[tuple[Path, Lut]]] = {}
    for path in files:
        lut = Lut.load(path)
        by_board.setdefault(lut.meta.board, []).append((path, lut))
    checks, updated, measured = [], [], 0
    for board_name, luts in by_board.items():
        config = get_board(board_name)
        if update and not config.exact_counts:
            raise VerifyError(f"--update re-measures exact-count (emulated) boards only; {board_name} is "
                              "physical: characterize it, or calibrate it again from its emulated twin")
        if any(is_calibrated(lut.meta) for _, lut in luts) and config.emulated:
            raise VerifyError(f"{board_name} is emulated but a LUT of it says it is calibrated")
        chosen = {path: sample_keys(lut, sample, seed) if sample is not None else list(lut.rows["key"])
                  for path, lut in luts}
        keys = list(dict.fromkeys(k for ks in chosen.values() for k in ks))
        ops = [row_op(lut.rows.loc[k]) for k in keys for lut in
               [next(lut for path, lut in luts if k in chosen[path])]]
        with tempfile.TemporaryDirectory(prefix="tinyhil-verify-") as scratch:
            characterizer = Characterizer(config, Path(scratch), port=port, progress=progress)
            characterizer.check_port()
            characterizer.measure_ops(ops)
            fresh = Lut.load(Path(scratch) / board_name / "ops.csv")
        measured += len(ops)
        for path, lut in luts:
            checks.append(LutCheck(path, board_name, lut.meta.firmware, todays_firmware(lut.meta),
                                   int(lut.rows["status"].map(usable).sum()),
                                   len(chosen[path]), compare(lut, fresh, chosen[path], config),
                                   compare_overheads(lut.meta, fresh.meta, config), is_calibrated(lut.meta)))
            if update:
                updated.append(rewrite(path, lut, fresh))
    return VerifyResult(tuple(checks), time.monotonic() - started, measured, tuple(updated))


def rewrite(path: Path, lut: Lut, fresh: Lut) -> Path:
    """The table with today's rows (its keys, in its order) and today's meta,
    keeping what the table adds to the store's (its space, input, classes)."""
    keys = [k for k in lut.rows["key"] if k in fresh.rows.index]
    missing = [k for k in lut.rows["key"] if k not in fresh.rows.index]
    if missing:
        raise VerifyError(f"{path}: {len(missing)} row(s) not measured again (e.g. {missing[0]}): not rewritten")
    extra = {**lut.meta.extra, **{k: v for k, v in fresh.meta.extra.items() if k == "chain_arena_bytes"}}
    meta = replace(fresh.meta, space=lut.meta.space, input=lut.meta.input, extra=extra,
                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    with exclusive(path.with_name("ops.csv")):  # no characterization appends to the store meanwhile
        Lut(meta, fresh.rows.loc[keys, COLUMNS]).write(path)
    return path


__all__ = ["LutCheck", "RowDiff", "VerifyError", "VerifyResult", "lut_files", "staleness", "todays_firmware",
           "verify_luts"]
