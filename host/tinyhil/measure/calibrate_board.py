"""`tinyhil calibrate`: an emulated board's LUT -> a physical board's LUT.

reference rows (measured on the board) -> the same ops on the emulated board
(characterized first where its store lacks them) -> cross-validated models
(lut/calibration/) -> the emulated LUT's rows in board cycles, with metadata
saying calibrated, from what, and the expected error.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from tinyhil.board_catalog import BoardConfig, get_board
from tinyhil.files import writable_file
from tinyhil.lut.calibration.board_lut import calibrated_lut
from tinyhil.lut.calibration.cross_validation import Calibration, fit_calibration
from tinyhil.lut.calibration.errors import CalibrationError
from tinyhil.lut.calibration.features import training_frame
from tinyhil.lut.reference import ReferenceSet, read_reference
from tinyhil.lut.table import Lut, read_rows


@dataclass(frozen=True)
class CalibrationResult:
    calibration: Calibration
    frame: pd.DataFrame  # reference rows joined with their emulated measurements
    lut: Lut
    out: Path
    measured_now: int  # reference ops characterized on the emulated board now
    warnings: tuple[str, ...]


def emulated_store(lut: Lut) -> Path:
    """The emulated board's ops.csv beside the LUT (luts/<board>/ops.csv)."""
    return Path(lut.path).parent / "ops.csv"


def reference_frame(reference: ReferenceSet, emulated: BoardConfig, store: Path,
                    progress=None, port: str = "", flash_cache_bytes: int = 0, wait_s: float = 0.0,
                    on_wait=None, executor=None) -> tuple[pd.DataFrame, int]:
    """The reference ops measured on the emulated board (the missing ones
    first, through the same micro-benchmark path as `characterize`), with
    the physical board's flash cache in their features. Measuring waits up
    to `wait_s` for another process writing the store (`on_wait(message)`
    says so); with nothing to measure the store is only read. `executor`: where
    they are measured if not here (a cluster); this process writes the store."""
    from tinyhil.measure.characterize import Characterizer

    characterizer = Characterizer(emulated, store.parent.parent, progress=progress, port=port, executor=executor)
    before = characterizer.done_keys()
    missing = [op for op in reference.ops if op.key not in before]
    if missing:
        told = None if on_wait is None else (
            lambda message: on_wait(f"{message}, to measure the {len(missing)} reference op(s) it lacks"))
        characterizer.measure_ops(missing, wait_s, told)
    rows = read_rows(store, allow_torn_tail=True, board=emulated.name)
    return training_frame(reference, rows, flash_cache_bytes), len(characterizer.done_keys() - before)


def core_warnings(lut: Lut, board: BoardConfig, reference: ReferenceSet) -> list[str]:
    found = []
    if reference.core and reference.core != board.core:
        found.append(f"the reference {reference.path} was measured on a {reference.core}, "
                     f"{board.name} is a {board.core}")
    if lut.meta.core != (reference.core or board.core):
        found.append(f"the emulated LUT is for a {lut.meta.core}, the reference from a "
                     f"{reference.core or board.core} ({board.name}): "
                     "the calibration maps one core's instruction counts onto another's cycles, "
                     "expect it to be worse than its cross-validation says")
    return found


def calibrate(emulated_lut: Path, reference_path: Path, board_name: str, out: Path,
              progress=None, strict: bool = False, clock_hz: int | None = None, wait_s: float = 0.0,
              on_wait=None, executor=None) -> CalibrationResult:
    """`clock_hz`: the clock the reference was measured at, when not the
    board's configured one (cycles depend on it through flash wait states:
    the table is then for that clock, its ms too). `wait_s`, `on_wait`: see reference_frame."""
    if Path(out).name == "ops.csv":
        raise CalibrationError(f"--lut {out}: ops.csv is the name of a board's measured store; "
                               "give the calibrated table another name")
    reference = read_reference(reference_path, strict)  # every bad row named before any work
    writable_file(Path(out), "the calibrated LUT")
    board = get_board(board_name)
    clock_note = []
    if clock_hz and clock_hz != board.clock_hz:
        clock_note = [f"the reference was measured at {clock_hz / 1e6:g} MHz, {board.name} is configured for "
                      f"{board.clock_hz / 1e6:g} MHz: the table is for {clock_hz / 1e6:g} MHz (cycles and ms)"]
        board = replace(board, clock_hz=int(clock_hz))
    lut = Lut.load(emulated_lut)
    if lut.meta.extra.get("calibration"):
        raise CalibrationError(f"{emulated_lut} is itself calibrated; calibrate from a measured LUT")
    emulated = get_board(lut.meta.board)
    found = [] if emulated.emulated else [f"{emulated_lut} was measured on {lut.meta.board}, a physical board"]
    found += [f"left out {problem}" for problem in reference.skipped] + clock_note
    if reference.board and reference.board != board.name:
        raise CalibrationError(f"{reference_path} was measured on {reference.board}, not on {board.name}; "
                               f"give --board {reference.board} or that board's reference")
    found += core_warnings(lut, board, reference)
    if reference.counter == "qemu-icount":
        found.append(f"{reference_path} was measured on the emulated {reference.board}: its counts are "
                     "instructions, not a physical board's cycles")
    store = emulated_store(lut)
    frame, measured_now = reference_frame(reference, emulated, store, progress,
                                          flash_cache_bytes=board.flash_cache_bytes, wait_s=wait_s, on_wait=on_wait,
                                          executor=executor)
    missing = len(reference.rows) - len(frame)
    if missing:
        found.append(f"{missing} reference op(s) have no good measurement on {emulated.name} "
                     f"(flagged in {store}) and are left out of the fit")
    calibration = fit_calibration(frame)
    board_lut = calibrated_lut(lut, calibration, frame, board, reference_path, store)
    found += board_lut.meta.extra["calibration"]["warnings"]  # op types the fit never saw
    board_lut.write(Path(out))
    return CalibrationResult(calibration, frame, board_lut, Path(out), measured_now, tuple(found))
