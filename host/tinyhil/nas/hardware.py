"""A board's LUT for the seeds' APIs, which take no LUT: `board=` names the
board (default the emulated Cortex-M4) and its table of measured ops prices
every candidate; ops the table lacks are measured on the board first, so a
candidate beyond the characterized space is measured, never silently refused.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from tinyhil.errors import TinyhilError
from tinyhil.estimate import MissingOps
from tinyhil.lut.table import Lut, LutError
from tinyhil.nas.constraints import Profile, profile
from tinyhil.spaces.arch import Architecture
from tinyhil.spaces.ops import OpConfig
from tinyhil.verdict import usable

DEFAULT_BOARD = "qemu-m4"


def default_luts_dir() -> Path:
    """$TINYHIL_LUTS, else the project's luts/ directory."""
    from tinyhil.project import project_dir

    return Path(os.environ.get("TINYHIL_LUTS") or project_dir() / "luts")


class BoardPricer:
    """Profiles architectures with a board's LUT (`lut`, else luts/BOARD/ops.csv,
    every op the board has measured), measuring missing ops on demand."""

    def __init__(self, board: str | None = None, lut: Lut | None = None, luts: Path | None = None,
                 measure_missing: bool = True, log: Callable[[str], None] = print):
        if board and lut is not None and lut.meta.board != board:
            raise LutError(f"{lut.path or 'the LUT given'} is a LUT of board {lut.meta.board}, not of {board}, "
                           f"the board it prices for here: give {board}'s LUT, or --board {lut.meta.board}")
        self.board = board or (lut.meta.board if lut is not None else DEFAULT_BOARD)
        self.luts = Path(luts) if luts else default_luts_dir()
        self.measure_missing = measure_missing
        self.log = log
        self.measured_ops: list[str] = []  # keys measured on demand by this pricer
        self.lut = lut if lut is not None else self._board_lut()

    @property
    def store_path(self) -> Path:
        return self.luts / self.board / "ops.csv"

    def _board_lut(self) -> Lut | None:
        return Lut.load(self.store_path, board=self.board) if self.store_path.is_file() else None

    def missing(self, archs: Iterable[Architecture]) -> list[OpConfig]:
        found: dict[str, OpConfig] = {}
        for arch in archs:
            for op in arch.runtime().ops:
                if self.lut is None or op not in self.lut or not usable(self.lut.rows.loc[op.key, "status"]):
                    found.setdefault(op.key, op)
        return list(found.values())

    def prefetch(self, archs: Iterable[Architecture]) -> None:
        """Measures, in one go, every op of `archs` the LUT lacks (one batch of
        firmware images instead of one per candidate)."""
        todo = self.missing(archs)
        if todo and self.measure_missing:
            self._measure(todo)

    def profile(self, arch: Architecture) -> Profile:
        self.prefetch([arch])
        if self.lut is None:
            raise MissingOps(f"no LUT for board {self.board} in {self.luts} and measuring is off")
        return profile(arch, self.lut)

    def _measure(self, todo: list[OpConfig]) -> None:
        from tinyhil.board_catalog import get_board
        from tinyhil.measure.characterize import Characterizer

        board = get_board(self.board)
        self.log(f"measuring {len(todo)} op(s) the {self.board} LUT lacks on {self.board} "
                 f"(added to {self.store_path}) ...")
        Characterizer(board, self.luts).measure_ops(todo)
        fresh = Lut.load(self.store_path, board=self.board)
        if self.lut is None or self.lut.path == fresh.path:
            self.lut = fresh
        else:  # a given LUT (e.g. a space's): keep its rows, add the new measurements
            new = fresh.rows.loc[[op.key for op in todo if op.key in fresh.rows.index]]
            rows = pd.concat([self.lut.rows.drop(new.index, errors="ignore"), new])
            self.lut = Lut(self.lut.meta, rows, self.lut.path)
        self.measured_ops += [op.key for op in todo]
        lacking = [op.key for op in todo if op not in self.lut
                   or not usable(self.lut.rows.loc[op.key, "status"])]
        if lacking:
            raise TinyhilError(f"{self.board} could not measure {len(lacking)} op(s): "
                               f"{', '.join(lacking[:5])} (see {self.store_path})")


def engine_lut(board: str, space: str, window: int, channels: int, classes: int,
               luts: Path) -> Lut | None:
    """What TinyTNAS and Tiny-TimeNAS start from: the space's LUT if there is one
    (it may be calibrated for a physical board), else every op the board has
    measured; they measure what is missing as they meet it (characterizing a
    whole Tiny-TimeNAS space up front would take thousands of ops)."""
    from tinyhil.lut.table import space_lut_path

    path = space_lut_path(luts, board, space, (window, channels), classes)
    if path.is_file():
        return Lut.load(path, board=board)
    store = Path(luts) / board / "ops.csv"
    return Lut.load(store, board=board) if store.is_file() else None


def covering_lut(board: str, lut: Lut | None, luts: Path, archs: Iterable[Architecture],
                 log: Callable[[str], None] = print) -> Lut:
    """`lut` with every op of `archs` in it (missing ones measured on `board`)."""
    pricer = BoardPricer(board, lut, luts, log=log)
    pricer.prefetch(archs)
    return pricer.lut
