"""`tinyhil run`: one int8 model, measured on a board, checked against the host.

model -> image (build) -> board (device) -> figures + bit-exactness check.
"""
from __future__ import annotations

import statistics
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyhil.board_catalog import BoardConfig
from tinyhil.device.boards import open_board
from tinyhil.device.driver import DeviceInfo
from tinyhil.device.recovery import boot_with_recovery, run_with_recovery
from tinyhil.image.firmware import BuiltImage, build_image
from tinyhil.image.sources import Benchmark, ImageSpec, benchmark_name
from tinyhil.models.tflite_model import TfliteModel
from tinyhil.protocol import RunRequest
from tinyhil.verdict import EXACT, compare_output


@dataclass(frozen=True)
class OpProfile:
    index: int
    op: str
    cycles: float


@dataclass(frozen=True)
class RunReport:
    model: str
    board: str
    core: str
    counter: str
    clock_hz: int
    tflm: str
    image_id: str
    build_seconds: float
    cached_build: bool
    cycles: tuple[float, ...]  # one per repeat
    ops: tuple[OpProfile, ...]
    arena_used: int
    arena_bytes: int
    flash_bytes: int
    ram_bytes: int
    model_bytes: int
    device_output: str  # hex of the bytes, or "crc32:..." when the output was too large to send
    host_output: str
    output_matches: bool  # bit-exact
    output_status: str  # verdict.OK, one step off (usable, as characterization records it), or a mismatch
    board_warnings: str = ""  # INFO's `warning` (a clock that did not lock, a counter fallback)

    @property
    def cycles_min(self) -> float:
        return min(self.cycles)

    @property
    def cycles_median(self) -> float:
        return statistics.median(self.cycles)

    @property
    def cycles_max(self) -> float:
        return max(self.cycles)

    def ms(self, cycles: float) -> float:
        return cycles / self.clock_hz * 1e3

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(cycles_min=self.cycles_min, cycles_median=self.cycles_median,
                    cycles_max=self.cycles_max, ms_median=self.ms(self.cycles_median))
        return data


def model_image(model: TfliteModel, board: BoardConfig) -> ImageSpec:
    bench = Benchmark(benchmark_name(model.name), model.flatbuffer, model.ops, model.input_bytes)
    return ImageSpec(board.name, (bench,))


def measure(image: BuiltImage, info: DeviceInfo, board, model: TfliteModel, input_bytes: bytes,
            repeats: int, warmup: int) -> RunReport:
    """Runs benchmark 0 of a booted image and compares with the host interpreter."""
    reply = run_with_recovery(board, RunRequest(0, input_bytes, warmup=warmup, repeats=repeats,
                                                profile=True))
    host = model.reference_output(input_bytes)
    if reply.output is not None:
        device_output, host_output = reply.output.hex(), host.hex()
    else:  # too large for one frame: the firmware sent the CRC-32 of its output
        device_output, host_output = f"crc32:{reply.output_crc:08x}", f"crc32:{zlib.crc32(host):08x}"
    comparison = compare_output(reply.output, host, reply.output_crc, reply.output_size)
    return RunReport(
        model=model.name, board=image.board.name, core=info.core, counter=info.counter,
        clock_hz=info.clock_hz, tflm=info.tflm, image_id=image.image_id,
        build_seconds=image.build_seconds, cached_build=image.cached,
        cycles=tuple(board.ticks_to_cycles(t) for t in reply.repeat_ticks),
        ops=tuple(OpProfile(i, p.op, board.ticks_to_cycles(p.ticks))
                  for i, p in enumerate(reply.profile)),
        arena_used=reply.arena_used, arena_bytes=info.arena_bytes,
        flash_bytes=image.size.flash, ram_bytes=image.size.ram,
        model_bytes=len(model.flatbuffer),
        device_output=device_output, host_output=host_output, output_matches=comparison.kind == EXACT,
        output_status=comparison.status,
        board_warnings=info.warnings,
    )


def run_model(path: Path, board: BoardConfig, repeats: int = 20, warmup: int = 1,
              seed: int = 0, port: str = "", timeout: float = 30.0, log=None,
              open_device=None, on_stage=None, input_bytes: bytes | None = None,
              image_path: Path | None = None) -> RunReport:
    """`open_device()`, if given, supplies the board (a farm's, one behind a test proxy);
    `on_stage` hears of a long build (stage_progress.StageProgress). The input is
    `input_bytes`, else random bytes from `seed`. `image_path`: the image built
    elsewhere by `tinyhil build` (refused unless this host would build the same
    firmware and image)."""
    model = TfliteModel.load(path)
    if image_path is not None:
        from tinyhil.image.shipped import import_image

        image = import_image(image_path, model_image(model, board), board)
    else:
        image = build_image(model_image(model, board), board, log=log, on_stage=on_stage)
    input_bytes = model.random_input(seed) if input_bytes is None else input_bytes
    device = open_device() if open_device else open_board(board, port=port, timeout=timeout)
    with device:
        info = boot_with_recovery(device, image)
        return measure(image, info, device, model, input_bytes, repeats, warmup)


def build_model_image(path: Path, board: BoardConfig, out: Path, log=None, on_stage=None) -> BuiltImage:
    """`tinyhil build`: the image `tinyhil run` would boot, built without a board,
    copied to `out` with its sidecar (image/shipped.py)."""
    from tinyhil.image.shipped import export_image

    model = TfliteModel.load(path)
    image = build_image(model_image(model, board), board, log=log, on_stage=on_stage)
    export_image(image, out)
    return image
