"""`tinyhil characterize`: every op of a search space, measured on a board.

space -> op configs -> single-op int8 models -> images (many ops each) ->
board runs -> rows of luts/<board>/ops.csv -> the space's LUT.

Rows are appended as they are measured, so an interrupted run (Ctrl-C, a
crashed QEMU, an unplugged board) loses nothing and the next run measures
only what is missing. The next image builds while the board runs this one.
"""
from __future__ import annotations

import statistics
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .bench.single_op import generate_chain_models, generate_models, op_seed
from .bench.tflite_model import TfliteModel
from .boards import BoardConfig
from .build.elf import compiler_of
from .build.firmware import BuiltImage, build_image, firmware_hash
from .build.image import Benchmark, ImageSpec
from .device.boards import Board, open_board
from .device.protocol import RunRequest, seeded_bytes
from .errors import BoardNotResponding, DeviceError, ImageTooLarge
from .lut.table import OK, Lut, LutMeta, OpStore, op_columns, read_meta, read_rows, space_lut_path
from .spaces import make_space
from .spaces.ops import OpConfig

CHAIN_LENGTHS = (1, 2, 4, 8)
CODE_RESERVE_BYTES = 192 * 1024  # runner + TFLM + CMSIS-NN, with room to spare


@dataclass
class Timing:
    generate_s: float = 0.0
    build_s: float = 0.0
    boot_s: float = 0.0
    measure_s: float = 0.0
    wall_s: float = 0.0
    images: int = 0
    measured: int = 0
    flagged: list[str] = field(default_factory=list)

    @property
    def ops_per_minute(self) -> float:
        return self.measured / self.wall_s * 60 if self.wall_s else 0.0


@dataclass(frozen=True)
class CharacterizeResult:
    lut_path: Path
    total_ops: int
    already_measured: int
    timing: Timing


@dataclass(frozen=True)
class Item:
    """One benchmark of an image: an op to measure, or an overhead chain."""

    name: str
    model: TfliteModel
    op: OpConfig | None = None
    chain: int = 0


def pack(items: list[Item], board: BoardConfig, max_per_image: int) -> list[list[Item]]:
    """Greedy, in order: as many benchmarks per image as flash and the cap allow."""
    budget = max(board.flash_bytes - CODE_RESERVE_BYTES, board.flash_bytes // 2)
    images, current, used = [], [], 0
    for item in items:
        size = len(item.model.flatbuffer)
        if current and (len(current) >= max_per_image or used + size > budget):
            images.append(current)
            current, used = [], 0
        current.append(item)
        used += size
    if current:
        images.append(current)
    return images


def _image_spec(board: BoardConfig, items: list[Item]) -> ImageSpec:
    return ImageSpec(board.name, tuple(
        Benchmark(i.name, i.model.flatbuffer, i.model.ops, i.model.input_bytes) for i in items),
        seeded_inputs=True)


def board_meta(board: BoardConfig, image: BuiltImage, info, store_path: Path) -> LutMeta:
    return LutMeta(
        board=board.name, core=info.core, clock_hz=info.clock_hz, counter=info.counter,
        tflm=info.tflm, compiler=compiler_of(image.elf),
        flags=f"{board.core}; platformio.ini build_flags of env:{board.name}",
        tinyhil=__version__, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        firmware=firmware_hash(),
    )


class Characterizer:
    def __init__(self, board: BoardConfig, luts_dir: Path, repeats: int = 3,
                 max_per_image: int = 100, port: str = "", progress=None):
        self.board = board
        self.luts_dir = Path(luts_dir)
        self.repeats = repeats
        self.max_per_image = max_per_image
        self.port = port
        self.progress = progress
        self.store_path = self.luts_dir / board.name / "ops.csv"
        self.store: OpStore | None = None
        self.timing = Timing()

    # -- what is left to do --------------------------------------------------
    def done_keys(self) -> set[str]:
        if not self.store_path.exists():
            return set()
        return set(read_rows(self.store_path, allow_torn_tail=True).index)

    def needs_overheads(self) -> bool:
        if not self.store_path.exists():
            return True
        meta = read_meta(self.store_path)
        return not (meta.invoke_cycles or meta.dispatch_cycles)

    # -- the run ---------------------------------------------------------------
    def run(self, space_name: str, window: int, channels: int, classes: int,
            limit: int | None = None) -> CharacterizeResult:
        started = time.monotonic()
        space = make_space(space_name, window, channels, classes)
        op_list = space.op_configs()[:limit]
        done = self.done_keys()
        self.measure_ops([op for op in op_list if op.key not in done])
        self.timing.wall_s = time.monotonic() - started
        lut_path = self.write_space_lut(space_name, (window, channels), classes, op_list)
        return CharacterizeResult(lut_path, len(op_list), sum(op.key in done for op in op_list),
                                  self.timing)

    def measure_ops(self, todo: list[OpConfig]) -> None:
        """Measures these ops (and the overheads, once per board) into the store."""
        items = self._items(todo)
        if items:
            self._measure_images(pack(items, self.board, self.max_per_image))

    def _task(self, description: str, total: int):
        return self.progress.add_task(description, total=total) if self.progress else None

    def _advance(self, task, n: int = 1) -> None:
        if self.progress and task is not None:
            self.progress.advance(task, n)

    def _items(self, todo: list[OpConfig]) -> list[Item]:
        t0 = time.monotonic()
        task = self._task("generate models", len(todo))
        paths = generate_models(todo, on_done=lambda _op: self._advance(task))
        items = [Item(f"op-{zlib.crc32(op.key.encode()):08x}-{n}",
                      TfliteModel.from_bytes(paths[op.key].read_bytes(), op.key), op)
                 for n, op in enumerate(todo)]
        if items and self.needs_overheads():
            chain_paths = generate_chain_models(CHAIN_LENGTHS)
            chains = [Item(f"chain-{n}", TfliteModel.from_bytes(chain_paths[n].read_bytes(),
                                                                f"chain-{n}"), chain=n)
                      for n in CHAIN_LENGTHS]
            items = chains + items
        self.timing.generate_s += time.monotonic() - t0
        return items

    def _measure_images(self, images: list[list[Item]]) -> None:
        build_task = self._task("build images", len(images))
        measure_task = self._task("measure ops", sum(len(i) for i in images))

        def build(items: list[Item]) -> tuple[BuiltImage, float]:
            t0 = time.monotonic()
            built = build_image(_image_spec(self.board, items), self.board)
            self._advance(build_task)
            return built, time.monotonic() - t0

        # One builder thread: the next image compiles while the board runs this one.
        with ThreadPoolExecutor(1) as builder:
            futures = [builder.submit(build, items) for items in images]
            try:
                for items, future in zip(images, futures):
                    image, seconds = future.result()
                    self.timing.build_s += seconds
                    self.timing.images += 1
                    self._measure_image(image, items, measure_task)
            finally:
                for f in futures:
                    f.cancel()

    def _measure_image(self, image: BuiltImage, items: list[Item], task) -> None:
        with open_board(self.board, port=self.port) as board:
            t0 = time.monotonic()
            info = board.boot(image)
            self.timing.boot_s += time.monotonic() - t0
            if self.store is None:
                self.store = OpStore(self.store_path, board_meta(self.board, image, info,
                                                                 self.store_path))
            chains: dict[int, tuple[float, float]] = {}
            t0 = time.monotonic()
            for index, item in enumerate(items):
                result = self._run_one(board, index, item)
                if item.chain:
                    if result[0] is not None:
                        chains[item.chain] = result[:2]
                else:
                    self._record(item, result)
                self._advance(task)
            self.timing.measure_s += time.monotonic() - t0
            if chains:
                self._record_overheads(chains)

    def _run_one(self, board: Board, index: int, item: Item):
        """(median cycles, summed kernel cycles, (reply, cycles), status); the
        numbers are None when the board refused the benchmark."""
        model = item.model
        seed = op_seed(item.op) if item.op else item.chain
        # The firmware makes the input from the seed: nothing to upload.
        request = RunRequest(index, warmup=1, repeats=self.repeats, profile=True,
                             output_crc_only=True, seed=seed)
        data = seeded_bytes(seed, model.input_bytes)
        try:
            reply = board.driver.run(request)
        except BoardNotResponding:
            board.reset()  # one more chance after a reset: never a half-read number
            reply = board.driver.run(request)
        except (DeviceError, ImageTooLarge) as error:
            return (None, None, None, f"error: {error}")
        host = model.reference_output(data)
        cycles = [board.ticks_to_cycles(t) for t in reply.repeat_ticks]
        kernel = sum(board.ticks_to_cycles(p.ticks) for p in reply.profile)
        same = reply.output_size == len(host) and reply.output_crc == zlib.crc32(host)
        status = OK if same else "mismatch: output differs from the host TFLite interpreter"
        return statistics.median(cycles), kernel, (reply, cycles), status

    def _record(self, item: Item, result) -> None:
        median, kernel, details, status = result
        row = op_columns(item.op)
        row["status"] = status
        if details is not None:
            reply, cycles = details
            tensors = item.model.input_bytes + sum(t.nbytes for t in item.model.outputs)
            row.update(cycles=median, cycles_min=min(cycles), cycles_max=max(cycles),
                       n=len(cycles), kernel_cycles=kernel,
                       ms=median / self.store.meta.clock_hz * 1e3, arena_bytes=reply.arena_used,
                       scratch_bytes=max(0, reply.arena_used - tensors))
        if status != OK:
            self.timing.flagged.append(f"{item.op.key}: {status}")
        self.store.append(row)
        self.timing.measured += 1

    def _record_overheads(self, chains: dict[int, tuple[float, float]]) -> None:
        """total(n) - kernels(n) = invoke + n * dispatch, fitted over the chains."""
        lengths = np.array(sorted(chains), float)
        overhead = np.array([chains[int(n)][0] - chains[int(n)][1] for n in lengths])
        dispatch, invoke = np.polyfit(lengths, overhead, 1)
        self.store.update_meta(invoke_cycles=round(float(invoke), 1),
                               dispatch_cycles=round(float(dispatch), 1))

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
                                    "classes": classes, "ops_in_space": len(op_list),
                                    "ops_measured": len(keys)}})
        Lut(space_meta, rows.loc[keys]).write(path)
        return path


def iter_flagged(lut: Lut) -> Iterator[str]:
    for key, status in lut.rows["status"].items():
        if status != OK:
            yield f"{key}: {status}"
