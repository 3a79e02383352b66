"""`tinyhil characterize`: every op of a search space, measured on a board.

space -> op configs -> single-op int8 models -> images (many ops each) ->
board runs (measure/runner.py) -> rows of luts/<board>/ops.csv -> the space's LUT.

Rows are appended as they are measured, so an interrupted run (Ctrl-C, a
crashed QEMU, an unplugged board) loses nothing and the next run measures
only what is missing.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tinyhil import __version__
from tinyhil.board_catalog import BoardConfig
from tinyhil.errors import TinyhilError
from tinyhil.image.elf import compiler_of
from tinyhil.lut.sampling import choose_ops, parse_fraction
from tinyhil.lut.table import (
    MAX_ATTEMPTS,
    Lut,
    LutMeta,
    OpStore,
    ScannedRows,
    exclusive,
    failed,
    op_columns,
    read_meta,
    scan_rows,
    space_lut_path,
)
from tinyhil.measure.runner import ImageRunner, Item, Measurement, Packer, Timing, skipped
from tinyhil.models.single_op import (
    DIRECT,
    check_model_maker,
    generate_chain_models,
    generate_models,
    op_seed,
    prepare_direct_models,
)
from tinyhil.models.tflite_model import TfliteModel
from tinyhil.spaces import make_space
from tinyhil.spaces.ops import OpConfig
from tinyhil.verdict import OK

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
    # what was wrong with the store and what was done about it: malformed
    # lines measured again, failed ops retried or still failing
    report: tuple[str, ...] = ()


def store_meta(measurement: Measurement, board: BoardConfig) -> LutMeta:
    info = measurement.info
    return LutMeta(
        board=board.name, core=info.core, clock_hz=info.clock_hz, counter=info.counter,
        tflm=info.tflm, compiler=measurement.image.compiler or compiler_of(measurement.image.elf),
        flags=f"{board.core}; platformio.ini build_flags of env:{board.name}",
        tinyhil=__version__, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        firmware=measurement.image.firmware,
    )


class Characterizer:
    def __init__(self, board: BoardConfig, luts_dir: Path, repeats: int | None = None,
                 max_per_image: int = 100, port: str = "", progress=None, open_device=None,
                 model_maker: str = DIRECT, executor=None):
        """`executor`: where the images run when not on this host's board (a cluster:
        tinyhil.execute.cluster.DaskExecutor, anything with its `measure_images`);
        this process still writes every row."""
        self.board = board
        self.executor = executor
        self.open_device = open_device
        self.model_maker = check_model_maker(model_maker)  # how single-op models are made
        self.luts_dir = Path(luts_dir)
        self.store_path = self.luts_dir / board.name / "ops.csv"
        self.store: OpStore | None = None
        warmup, default_repeats = board.default_runs()
        self.runner = ImageRunner(board, repeats or default_repeats, max_per_image, port, progress,
                                  open_device=open_device, warmup=warmup)
        self.timing = self.runner.timing
        self.appended = 0  # op rows added to the store by this characterizer
        self._recorded: set[str] = set()  # op keys written by this characterizer (an op delivered twice: once)

    def _scan(self) -> ScannedRows:
        """The store, checked: every row and its metadata must be this board's."""
        return scan_rows(self.store_path, allow_torn_tail=True, board=self.board.name)

    def done_keys(self) -> set[str]:
        """Ops with a final row: good, flagged, or failed MAX_ATTEMPTS times. An op
        whose row failed fewer times, or is malformed, is measured (again)."""
        if not self.store_path.exists():
            return set()
        scanned = self._scan()
        return {key for key, status in zip(scanned.frame["key"], scanned.frame["status"])
                if not failed(status) or scanned.attempts.get(key, 0) >= MAX_ATTEMPTS}

    def store_problems(self, op_list: list[OpConfig]) -> list[str]:
        """What this run will measure again, and why (said before measuring)."""
        if not self.store_path.exists():
            return []
        scanned = self._scan()
        lines = [f"malformed, left out and measured again: {m}" for m in scanned.malformed]
        wanted = {op.key for op in op_list}
        for key, status in zip(scanned.frame["key"], scanned.frame["status"]):
            tries = scanned.attempts.get(key, 0)
            if key in wanted and failed(status) and tries < MAX_ATTEMPTS:
                lines.append(f"retried (attempt {tries + 1} of {MAX_ATTEMPTS}): {key}, which failed "
                             f"with {status}")
        return lines

    def still_failing(self, op_list: list[OpConfig]) -> list[str]:
        if not self.store_path.exists():
            return []
        scanned = self._scan()
        lines = []
        for op in op_list:
            if op.key in scanned.frame.index and failed(status := scanned.frame.at[op.key, "status"]):
                tries = scanned.attempts.get(op.key, 0)
                then = ("not retried again: remove its rows from the store to retry" if
                        tries >= MAX_ATTEMPTS else "retried on the next run")
                lines.append(f"still failing after {tries} attempt(s) ({then}): {op.key}: {status}")
        return lines

    def needs_overheads(self) -> bool:
        if not self.store_path.exists():
            return True
        meta = read_meta(self.store_path, self.board.name)
        return not (meta.invoke_cycles or meta.dispatch_cycles) or "chain_arena_bytes" not in meta.extra

    def check_port(self) -> None:
        """A physical board needs a serial port: say so before any model is made
        (on a cluster the workers own the boards and their ports; a board given
        by open_device, e.g. a labgrid place, brings its own)."""
        if self.executor is not None or self.open_device is not None:
            return
        if self.board.openocd_board and not (self.runner.port or self.board.upload_port):
            from tinyhil.device.stlink import find_port

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
            report = self.store_problems(op_list)
            appended = self.appended
            self._measure_missing(op_list, done)
            lut_path = self.write_space_lut(space_name, (window, channels), classes, op_list)
            report += self.timing.repaired + self.still_failing(op_list)
        self.timing.wall_s = time.monotonic() - started
        return CharacterizeResult(lut_path, len(op_list), sum(op.key in done for op in op_list),
                                  self.appended - appended, self.timing, sample or "", tuple(report))

    def measure_ops(self, op_list: list[OpConfig], wait_s: float = 0.0, on_wait=None) -> None:
        """Measures the ops not measured yet (and the overheads, once per board);
        waits up to `wait_s` for another process writing the store (table.exclusive)."""
        with exclusive(self.store_path, wait_s, on_wait):
            self._measure_missing(op_list, self.done_keys())

    def _measure_missing(self, op_list: list[OpConfig], done: set[str]) -> None:
        todo = [op for op in op_list if op.key not in done]
        if not todo and not self.needs_overheads():
            return  # a complete LUT: nothing to generate, no empty progress bar
        self.check_port()
        if self.model_maker == DIRECT:  # made while earlier images build and run (milliseconds each)
            chains = len(CHAIN_LENGTHS) if self.needs_overheads() else 0
            self.measure_items(self._item_stream(todo), len(todo) + chains)
        else:
            self.measure_items(self._items(todo))

    def _items(self, todo: list[OpConfig]) -> list[Item]:
        t0 = time.monotonic()
        task = self.runner.task("generate models", len(todo))
        paths = generate_models(todo, on_done=lambda _op: self.runner.advance(task),
                                maker=self.model_maker, repaired=self.timing.repaired)
        items = [Item(f"op-{zlib.crc32(op.key.encode()):08x}-{n}",
                      TfliteModel.from_bytes(paths[op.key].read_bytes(), op.key), op_seed(op), op)
                 for n, op in enumerate(todo)]
        if self.needs_overheads():
            chain_paths = generate_chain_models(CHAIN_LENGTHS, self.model_maker,
                                                repaired=self.timing.repaired)
            items = [Item(f"chain-{n}", TfliteModel.from_bytes(chain_paths[n].read_bytes(),
                                                               f"chain-{n}"), n, Chain(n))
                     for n in CHAIN_LENGTHS] + items
        self.timing.generate_s += time.monotonic() - t0
        return items

    def _item_stream(self, todo: list[OpConfig]) -> Iterator[Item]:
        """The items of _items, made one at a time while earlier ones are
        built into images and measured (the chains first)."""
        task = self.runner.task("generate models", len(todo))
        t0 = time.monotonic()
        if self.needs_overheads():
            chain_paths = generate_chain_models(CHAIN_LENGTHS, self.model_maker,
                                                repaired=self.timing.repaired)
            for n in CHAIN_LENGTHS:
                item = Item(f"chain-{n}", TfliteModel.from_bytes(chain_paths[n].read_bytes(), f"chain-{n}"),
                            n, Chain(n))
                self.timing.generate_s += time.monotonic() - t0
                yield item
                t0 = time.monotonic()
        # Made, read and run on the host by worker processes (the seconds they took are counted)
        self.timing.generate_s += time.monotonic() - t0
        for n, prepared in enumerate(prepare_direct_models(todo, on_seconds=self._add_generate_s)):
            op = prepared.op
            self.runner.advance(task)
            yield Item(f"op-{zlib.crc32(op.key.encode()):08x}-{n}", prepared.model, op_seed(op), op,
                       reference=prepared.reference)

    def _add_generate_s(self, seconds: float) -> None:
        self.timing.generate_s += seconds

    def measure_items(self, items: Iterable[Item], n_items: int | None = None) -> None:
        """Measures the items (a list, or an iterator of `n_items` still being made)."""
        chains: dict[int, Measurement] = {}
        if self.executor is not None:
            measurements = self._on_executor(items)
        elif isinstance(items, list):
            measurements = self.runner.run(items)
        else:
            measurements = self.runner.run_stream(items, n_items)
        try:
            for m in measurements:
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
        finally:
            if self.store is not None:
                self.store.sync()  # the rows appended since the last sync: on disk now

    def _on_executor(self, items: Iterable[Item]) -> Iterator[Measurement]:
        """The items packed into images as here, each image a job of the executor;
        the overhead chains are one job of their own, so one board measures them all."""
        task = self.runner.task("measure", None)

        def images() -> Iterator[list[Item]]:
            packer = Packer(self.board, self.runner.max_per_image)
            chain_items = []
            for item in items:
                if isinstance(item.subject, Chain):
                    chain_items.append(item)
                    if len(chain_items) == len(CHAIN_LENGTHS):
                        yield chain_items
                    continue
                full = packer.add(item)
                if full:
                    yield full
            if packer.current:
                yield packer.current

        try:
            for m in self.executor.measure_images(self.board, images(), self.runner.repeats, self.runner.warmup):
                name = getattr(m.item.subject, "key", m.item.name)
                if skipped(m.status):
                    self.timing.skipped.append(f"{name}: {m.status}")
                else:
                    self.timing.measured += 1
                    if m.status != OK:
                        self.timing.flagged.append(f"{name}: {m.status}")
                self.runner.advance(task)
                yield m
        finally:
            stats = self.executor.stats
            self.timing.images += sum(stats.jobs_by_board.values())
            self.timing.build_s += stats.seconds["build"]
            self.timing.boot_s += stats.seconds["boot"]
            self.timing.measure_s += stats.seconds["measure"]

    def _record(self, m: Measurement) -> None:
        key = m.item.subject.key
        if key in self._recorded or (key in self.store and not failed(str(self.store.rows[key]["status"]))):
            return  # delivered twice (a job run again elsewhere): recorded once
        self._recorded.add(key)
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
        self.appended += 1

    def _record_overheads(self, chains: dict[int, Measurement]) -> None:
        """total(n) - kernels(n) = invoke + n * dispatch, fitted over the chains;
        their arena use, for the fixed per-model part of the arena.

        `dispatch` is a net per-op term, and may be negative (qemu-m4: -22):
        totals come from unprofiled invokes, kernels from the profiled one,
        and each profiled kernel's window holds the profiler's own work (the
        rest of BeginEvent's counter read, its bookkeeping, EndEvent's call up
        to its read), which unprofiled invokes never run. So dispatch = the
        interpreter's per-op dispatch less that hook; the sum kernels + invoke
        + n x dispatch is what an unprofiled model takes, which is what an
        estimate needs. A board LUT made by calibration has no hook in its
        kernel cycles and keeps only the non-negative part (lut/calibration/)."""
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
        scanned = self._scan()
        rows, meta = scanned.frame, scanned.meta
        keys = [op.key for op in op_list if op.key in rows.index]
        space_meta = LutMeta(**{**meta.__dict__, "space": space_name,
                                "input": f"{input_shape[0]}x{input_shape[1]}", "extra": {
                                    **meta.extra, "classes": classes, "ops_in_space": len(op_list),
                                    "ops_measured": len(keys)}})
        lut = Lut(space_meta, rows.loc[keys])
        if not _same_table(path, lut):  # nothing new: the file is left as it is
            lut.write(path)
        return path


def _same_table(path: Path, lut: Lut) -> bool:
    """Does the table at `path` hold what `lut` would write (rows and metadata)?"""
    if not path.is_file():
        return False
    try:
        there = Lut.load(path, board=lut.meta.board)
    except TinyhilError:
        return False
    # when it was written is no content: a table re-measured as it was (lut verify --update) stays as committed
    return replace(there.meta, created="") == replace(lut.meta, created="") and there.text() == lut.text()


def space_lut(board: BoardConfig, space_name: str, window: int, channels: int, classes: int,
              luts_dir: Path, progress=None, executor=None):
    """The space's LUT for this board: read if complete, else the missing ops
    are characterized first (what every search and deployment starts with;
    on `executor`'s boards if given: a cluster)."""
    path = space_lut_path(luts_dir, board.name, space_name, (window, channels), classes)
    if path.exists():  # a calibrated LUT stands for measurements the board never made
        lut = Lut.load(path, board=board.name)
        ops = make_space(space_name, window, channels, classes).op_configs()
        if lut.meta.extra.get("calibration") and all(op in lut for op in ops):
            return lut
    result = Characterizer(board, luts_dir, progress=progress, executor=executor).run(
        space_name, window, channels, classes)
    return Lut.load(result.lut_path, board=board.name)
