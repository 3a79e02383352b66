"""`tinyhil characterize`: every op of a search space, measured on a board.

space -> op configs -> single-op int8 models -> images (many ops each) ->
board runs (measure.py) -> rows of luts/<board>/ops.csv -> the space's LUT.

Rows are appended as they are measured, so an interrupted run (Ctrl-C, a
crashed QEMU, an unplugged board) loses nothing and the next run measures
only what is missing.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .bench.single_op import generate_chain_models, generate_models, op_seed
from .bench.tflite_model import TfliteModel
from .boards import BoardConfig
from .build.elf import compiler_of
from .build.firmware import firmware_hash
from .errors import TinyhilError
from .lut.sampling import choose_ops, parse_fraction
from .lut.table import (Lut, LutMeta, OpStore, exclusive, op_columns, read_meta, read_rows,
                        space_lut_path)
from .measure import ImageRunner, Item, Measurement, Timing, skipped
from .spaces import make_space
from .spaces.ops import OpConfig

CHAIN_LENGTHS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Chain:
    """n tiny ops in a row, measured to split interpreter overheads."""

    length: int


@dataclass(frozen=True)
class CharacterizeResult:
    lut_path: Path
    total_ops: int
    already_measured: int
    measured_now: int  # op rows added (the overhead chains not counted)
    timing: Timing
    sample: str = ""  # "5%": total_ops is the sample, not the whole space


def store_meta(measurement: Measurement, board: BoardConfig) -> LutMeta:
    info = measurement.info
    return LutMeta(
        board=board.name, core=info.core, clock_hz=info.clock_hz, counter=info.counter,
        tflm=info.tflm, compiler=compiler_of(measurement.image.elf),
        flags=f"{board.core}; platformio.ini build_flags of env:{board.name}",
        tinyhil=__version__, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        firmware=firmware_hash(),
    )


class Characterizer:
    def __init__(self, board: BoardConfig, luts_dir: Path, repeats: int = 3,
                 max_per_image: int = 100, port: str = "", progress=None, open_device=None):
        self.board = board
        self.luts_dir = Path(luts_dir)
        self.store_path = self.luts_dir / board.name / "ops.csv"
        self.store: OpStore | None = None
        self.runner = ImageRunner(board, repeats, max_per_image, port, progress,
                                  open_device=open_device)
        self.timing = self.runner.timing

    def done_keys(self) -> set[str]:
        if not self.store_path.exists():
            return set()
        return set(read_rows(self.store_path, allow_torn_tail=True).index)

    def needs_overheads(self) -> bool:
        if not self.store_path.exists():
            return True
        meta = read_meta(self.store_path)
        return not (meta.invoke_cycles or meta.dispatch_cycles) or "chain_arena_bytes" not in meta.extra

    def check_port(self) -> None:
        """A physical board needs a serial port: say so before any model is made."""
        if self.board.openocd_board and not (self.runner.port or self.board.upload_port):
            from .device.stlink import find_port

            self.runner.port = find_port(self.board)  # the one ST-LINK attached, or why not
        elif not self.board.emulated and not (self.runner.port or self.board.upload_port):
            raise TinyhilError(f"board {self.board.name} is physical and needs its serial port: pass "
                               "--port /dev/ttyACM0 (or set upload_port in platformio.ini)")

    def run(self, space_name: str, window: int, channels: int, classes: int,
            limit: int | None = None, sample: str | None = None, seed: int = 0) -> CharacterizeResult:
        """The space's ops (its first `limit`, or a calibration `sample` such as
        "5%": see lut/sampling.py) measured, and the space's LUT written."""
        started = time.monotonic()
        space = make_space(space_name, window, channels, classes)
        op_list = space.op_configs()[:limit]
        if sample:
            op_list = choose_ops(op_list, parse_fraction(sample, len(op_list)), seed)
        with exclusive(self.store_path):
            done = self.done_keys()
            self._measure_missing(op_list, done)
            lut_path = self.write_space_lut(space_name, (window, channels), classes, op_list)
            measured_now = len(self.done_keys() - done)
        self.timing.wall_s = time.monotonic() - started
        return CharacterizeResult(lut_path, len(op_list), sum(op.key in done for op in op_list),
                                  measured_now, self.timing, sample or "")

    def measure_ops(self, op_list: list[OpConfig]) -> None:
        """Measures the ops not measured yet (and the overheads, once per board)."""
        with exclusive(self.store_path):
            self._measure_missing(op_list, self.done_keys())

    def _measure_missing(self, op_list: list[OpConfig], done: set[str]) -> None:
        todo = [op for op in op_list if op.key not in done]
        if not todo and not self.needs_overheads():
            return  # a complete LUT: nothing to generate, no empty progress bar
        self.check_port()
        self.measure_items(self._items(todo))


    def _items(self, todo: list[OpConfig]) -> list[Item]:
        t0 = time.monotonic()
        task = self.runner.task("generate models", len(todo))
        paths = generate_models(todo, on_done=lambda _op: self.runner.advance(task))
        items = [Item(f"op-{zlib.crc32(op.key.encode()):08x}-{n}",
                      TfliteModel.from_bytes(paths[op.key].read_bytes(), op.key), op_seed(op), op)
                 for n, op in enumerate(todo)]
        if self.needs_overheads():
            chain_paths = generate_chain_models(CHAIN_LENGTHS)
            items = [Item(f"chain-{n}", TfliteModel.from_bytes(chain_paths[n].read_bytes(),
                                                               f"chain-{n}"), n, Chain(n))
                     for n in CHAIN_LENGTHS] + items
        self.timing.generate_s += time.monotonic() - t0
        return items

    def measure_items(self, items: list[Item]) -> None:
        chains: dict[int, Measurement] = {}
        for m in self.runner.run(items):
            if skipped(m.status):
                continue  # the board failed, not the op: reported, measured next run
            if self.store is None:  # the first answer tells the board's set-up
                self.store = OpStore(self.store_path, store_meta(m, self.board))
            if isinstance(m.item.subject, Chain):
                if m.cycles:
                    chains[m.item.subject.length] = m
                if len(chains) == len(CHAIN_LENGTHS):
                    self._record_overheads(chains)
            else:
                self._record(m)

    def _record(self, m: Measurement) -> None:
        row = op_columns(m.item.subject)
        row["status"] = m.status
        if m.cycles:
            model = m.item.model
            tensors = model.input_bytes + sum(t.nbytes for t in model.outputs)
            row.update(cycles=m.median, cycles_min=min(m.cycles), cycles_max=max(m.cycles),
                       n=len(m.cycles), kernel_cycles=m.kernel_cycles,
                       ms=m.median / self.store.meta.clock_hz * 1e3, arena_bytes=m.arena_used,
                       scratch_bytes=max(0, m.arena_used - tensors))
        self.store.append(row)

    def _record_overheads(self, chains: dict[int, Measurement]) -> None:
        """total(n) - kernels(n) = invoke + n * dispatch, fitted over the chains;
        their arena use, for the fixed per-model part of the arena."""
        lengths = np.array(sorted(chains), float)
        overhead = np.array([chains[int(n)].median - chains[int(n)].kernel_cycles for n in lengths])
        dispatch, invoke = np.polyfit(lengths, overhead, 1)
        self.store.update_meta(invoke_cycles=round(float(invoke), 1),
                               dispatch_cycles=round(float(dispatch), 1),
                               extra={**self.store.meta.extra, "chain_arena_bytes": {
                                   str(n): chains[n].arena_used for n in sorted(chains)}})

    def write_space_lut(self, space_name: str, input_shape: tuple[int, int], classes: int,
                        op_list: list[OpConfig]) -> Path:
        path = space_lut_path(self.luts_dir, self.board.name, space_name, input_shape, classes)
        if not self.store_path.exists():
            return path
        rows = read_rows(self.store_path, allow_torn_tail=True)
        keys = [op.key for op in op_list if op.key in rows.index]
        meta = read_meta(self.store_path)
        space_meta = LutMeta(**{**meta.__dict__, "space": space_name,
                                "input": f"{input_shape[0]}x{input_shape[1]}", "extra": {
                                    **meta.extra, "classes": classes, "ops_in_space": len(op_list),
                                    "ops_measured": len(keys)}})
        Lut(space_meta, rows.loc[keys]).write(path)
        return path


def space_lut(board: BoardConfig, space_name: str, window: int, channels: int, classes: int,
              luts_dir: Path, progress=None):
    """The space's LUT for this board: read if complete, else the missing ops
    are characterized first (what every search and deployment starts with)."""
    path = space_lut_path(luts_dir, board.name, space_name, (window, channels), classes)
    if path.exists():  # a calibrated LUT stands for measurements the board never made
        lut = Lut.load(path)
        ops = make_space(space_name, window, channels, classes).op_configs()
        if lut.meta.extra.get("calibration") and all(op in lut for op in ops):
            return lut
    result = Characterizer(board, luts_dir, progress=progress).run(space_name, window, channels, classes)
    return Lut.load(result.lut_path)
