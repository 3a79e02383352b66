"""Measuring many models on a board: pack them into firmware images, build the
next image while the board runs the current one, run each benchmark with a
seeded input, and check its output against the host interpreter.

Shared by `characterize` (single ops) and `validate` (whole networks).
"""
from __future__ import annotations

import math
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace

from tinyhil.board_catalog import BoardConfig
from tinyhil.device.boards import Board, open_board
from tinyhil.device.driver import DeviceInfo
from tinyhil.device.recovery import boot_with_recovery, run_with_recovery
from tinyhil.errors import BoardGaveUp, BoardNotResponding, DeviceError, ImageTooLarge
from tinyhil.image.firmware import BuiltImage, build_image, one_firmware, stop_builds
from tinyhil.image.sources import Benchmark, ImageSpec
from tinyhil.models.tflite_model import TfliteModel
from tinyhil.protocol import BatchRequest, OpTicks, RunReply, RunRequest, seeded_bytes
from tinyhil.stage_progress import progress_bar_stage
from tinyhil.verdict import EXACT, MISMATCH, OK, SKIPPED, compare_output, skipped

CODE_RESERVE_BYTES = 192 * 1024  # runner + TFLM + CMSIS-NN, with room to spare
OUTPUT_BYTES_SENT = 16 * 1024  # larger outputs come back as a CRC only
# QEMU's pace is sampled during the run, on every RATE_EVERY-th image that has
# an op large enough: that op run for about RATE_INSTRUCTIONS guest instructions
# (50 ms or so), so that the samples see the run's conditions as they change.
RATE_INSTRUCTIONS = 4e7
RATE_EVERY = 12
# Images booted ahead of the one measured, on an emulated board. Three: QEMU's
# pty takes input only once QEMU has seen it opened, which it checks once a
# second after start-up unless the host was quicker; so a QEMU may first
# answer a second after it started, longer than an image takes (0.2-0.6 s).
PREBOOT_IMAGES = 3


@dataclass(frozen=True)
class Item:
    """One benchmark: a model, the seed of its input, and what it stands for."""

    name: str
    model: TfliteModel
    seed: int
    subject: object = None  # the op config, architecture, ... it measures
    reference: bytes | None = None  # the host's output for the seeded input, if made already


@dataclass(frozen=True)
class Measurement:
    item: Item
    status: str
    cycles: tuple[float, ...] = ()
    profile: tuple[tuple[str, float], ...] = ()  # (op, cycles) of the profiled run
    arena_used: int = 0
    image: BuiltImage | None = None
    info: DeviceInfo | None = None
    seconds: float = 0.0  # the board's time for this item: its run request (and any recovery)

    @property
    def median(self) -> float:
        return statistics.median(self.cycles)

    @property
    def kernel_cycles(self) -> float:
        return sum(c for _, c in self.profile)


@dataclass
class Timing:
    generate_s: float = 0.0
    build_s: float = 0.0
    boot_s: float = 0.0
    measure_s: float = 0.0
    # the measuring's own wait for the next image to be made, built and booted
    wait_s: float = 0.0
    wall_s: float = 0.0
    images: int = 0
    measured: int = 0
    # emulated boards: the instructions the images ran, as their firmware counts them
    # (INFO busy_ticks at the end of each image), and of how many images
    guest_instructions: float = 0.0
    guest_images: int = 0
    # QEMU's own pace on this run's ops (rate_instructions in rate_seconds: a
    # long RUN of an op less a one-inference RUN of it), and the probe's wall time
    rate_instructions: float = 0.0
    rate_seconds: float = 0.0
    rate_probe_s: float = 0.0
    rate_samples: int = 0
    rate_due: int = 0  # images to go before the next sample

    @property
    def guest_rate(self) -> float:
        """QEMU's guest instructions per second on this run's ops (0: not measured)."""
        return self.rate_instructions / self.rate_seconds if self.rate_seconds > 0 else 0.0

    @property
    def ceiling_s(self) -> float:
        """The emulator's own limit: the instructions the images ran at QEMU's pace."""
        return self.guest_instructions / self.guest_rate if self.guest_rate else 0.0
    flagged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # cached images/models that failed their check


def pack(items: list[Item], board: BoardConfig, max_per_image: int) -> list[list[Item]]:
    """As few images as flash and the cap allow, evenly filled (515 ops in
    six images of ~86, not five of 100 and one of 15)."""
    images = _greedy(items, board, max_per_image)
    if len(images) > 1:
        even = _greedy(items, board, math.ceil(len(items) / len(images)))
        if len(even) == len(images):
            return even
    return images


def _greedy(items: list[Item], board: BoardConfig, max_per_image: int) -> list[list[Item]]:
    """In order: as many benchmarks per image as flash and the cap allow."""
    packer = Packer(board, max_per_image)
    images = [full for full in map(packer.add, items) if full]
    return images + ([packer.current] if packer.current else [])


class Packer:
    """Fills images in order, one benchmark at a time: `add` hands back the
    image it closes (flash budget or cap reached), if any."""

    def __init__(self, board: BoardConfig, max_per_image: int):
        self.budget = max(board.flash_bytes - CODE_RESERVE_BYTES, board.flash_bytes // 2)
        self.max_per_image = max_per_image
        self.current: list[Item] = []
        self.used = 0

    def add(self, item: Item) -> list[Item] | None:
        size = len(item.model.flatbuffer)
        full = None
        if self.current and (len(self.current) >= self.max_per_image or self.used + size > self.budget):
            full, self.current, self.used = self.current, [], 0
        self.current.append(item)
        self.used += size
        return full


@dataclass
class _Upcoming:
    """An image handed to the builder, and its boot once started."""

    items: list[Item]
    build: Future  # -> (BuiltImage, build seconds)
    boot: Future | None = None  # -> _Booted


@dataclass(frozen=True)
class _Booted:
    image: BuiltImage
    build_s: float
    boot_s: float
    board: Board | None  # None: the board gave up (error)
    info: DeviceInfo | None
    error: BoardGaveUp | None = None


# The main thread waits in slices: a SIGINT the kernel hands to another thread
# (a builder's, a booter's) only sets Python's flag, and a main thread blocked
# without a timeout would see it when the wait ends (a TFLM compile: minutes).
WAIT_SLICE_S = 0.25


def _result(future: Future):
    """future.result(), waited for so that Ctrl-C is taken at once."""
    while True:
        try:
            return future.result(timeout=WAIT_SLICE_S)
        except FutureTimeout:
            continue


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def _close_booted(future: Future) -> None:
    if not future.cancelled() and future.exception() is None and future.result().board is not None:
        future.result().board.close()


class ImageRunner:
    def __init__(self, board: BoardConfig, repeats: int = 3, max_per_image: int = 100,
                 port: str = "", progress=None, timing: Timing | None = None,
                 open_device: Callable[[], Board] | None = None, warmup: int = 1):
        self.board = board
        self.repeats = repeats
        self.warmup = warmup
        self.max_per_image = max_per_image
        self.port = port
        self.progress = progress
        self.timing = timing or Timing()
        # How to get a board (a farm worker's own instance, a proxied one, ...)
        self.open_device = open_device or (lambda: open_board(self.board, port=self.port))
        # The next image boots while this one is measured: emulated boards only
        # (each open_device() is a QEMU of its own); a physical board is one board.
        self.preboot = board.emulated

    def task(self, description: str, total: int):
        return self.progress.add_task(description, total=total) if self.progress else None

    def advance(self, task, n: int = 1) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task, n)

    def image_spec(self, items: list[Item]) -> ImageSpec:
        """The firmware image that runs these items (in this order)."""
        return ImageSpec(self.board.name, tuple(
            Benchmark(i.name, i.model.flatbuffer, i.model.ops, i.model.input_bytes)
            for i in items), seeded_inputs=True)

    def run(self, items: list[Item]) -> Iterator[Measurement]:
        """Yields one measurement per item, image after image."""
        images = pack(items, self.board, self.max_per_image)
        yield from self._run_images(images, len(images), len(items))

    def run_in_image(self, image_items: list[Item], items: list[Item]) -> Iterator[Measurement]:
        """Yields a measurement of each of `items`, run in the one image of
        `image_items` (a pinned board's: it runs that image whatever it measures)."""
        index = {item.name: n for n, item in enumerate(image_items)}
        missing = [item.name for item in items if item.name not in index]
        if missing:
            raise ValueError(f"not in the image: {', '.join(missing[:5])}")
        built = build_image(self.image_spec(image_items), self.board)
        self.timing.build_s += built.build_seconds
        self.timing.images += 1
        yield from self._run_image(built, items, self.task("measure", len(items)),
                                   indices=[index[item.name] for item in items])

    def run_stream(self, items: Iterable[Item], n_items: int) -> Iterator[Measurement]:
        """As run, for items still being made: a thread takes them as they
        come, packs them in order and hands each image to the builder as soon
        as it is full, so making models, building and measuring overlap."""
        stop = threading.Event()

        def images() -> Iterator[list[Item]]:
            packer = Packer(self.board, self.max_per_image)
            for item in items:
                if stop.is_set():
                    return
                full = packer.add(item)
                if full:
                    yield full
            if packer.current:
                yield packer.current

        try:
            yield from self._run_images(images(), None, n_items, stop)
        finally:
            stop.set()

    def _run_images(self, images: Iterable[list[Item]], n_images: int | None, n_items: int,
                    stop: threading.Event | None = None) -> Iterator[Measurement]:
        build_task = self.task("build images", n_images)
        measure_task = self.task("measure", n_items)

        on_stage = progress_bar_stage(self.progress) if self.progress is not None else None

        def build(image_items: list[Item]) -> tuple[BuiltImage, float]:
            t0 = time.monotonic()
            built = build_image(self.image_spec(image_items), self.board, on_stage=on_stage)
            self.advance(build_task)
            return built, time.monotonic() - t0

        # One builder thread: the next image compiles while the board runs this one;
        # a feeder thread submits the images as they are packed.
        ready: queue.Queue = queue.Queue()
        futures = []

        def feed() -> None:
            try:
                for image_items in images:
                    if stop is not None and stop.is_set():
                        break
                    future = builder.submit(build, image_items)
                    futures.append(future)
                    ready.put((image_items, future))
            except BaseException as error:  # handed to the consumer, raised there
                ready.put(error)
            ready.put(None)

        # Taken from `ready`, not measured yet: _Upcoming images (booting ahead, on an
        # emulated board, while the one before is measured) or the feeder's error.
        pending: deque = deque()
        fed_all = False

        def take(wait: bool) -> None:
            nonlocal fed_all
            while not fed_all:
                try:
                    entry = ready.get(block=wait, timeout=WAIT_SLICE_S if wait else None)
                except queue.Empty:
                    if wait:
                        continue  # still waiting, in slices (WAIT_SLICE_S)
                    return
                wait = False
                if entry is None:
                    fed_all = True
                else:
                    pending.append(entry if isinstance(entry, BaseException) else _Upcoming(*entry))

        def boot_next() -> None:
            """The images after the one being measured boot now (once built), in
            booter threads: QEMU's start-up is not waited for between images."""
            take(wait=False)
            for upcoming in list(pending)[:PREBOOT_IMAGES] if self.preboot else ():
                if isinstance(upcoming, _Upcoming) and upcoming.boot is None:
                    upcoming.boot = booter.submit(self._boot, upcoming.build)

        with ThreadPoolExecutor(1) as builder, ThreadPoolExecutor(PREBOOT_IMAGES) as booter, one_firmware():
            feeder = threading.Thread(target=feed, name="tinyhil-pack", daemon=True)
            feeder.start()
            try:
                while True:
                    t0 = time.monotonic()
                    take(wait=not pending)
                    if not pending:
                        break
                    upcoming = pending.popleft()
                    if isinstance(upcoming, BaseException):
                        raise upcoming
                    booted = _result(upcoming.boot) if upcoming.boot else self._boot(upcoming.build)
                    self.timing.wait_s += time.monotonic() - t0
                    image = booted.image
                    if image.repaired:
                        self.timing.repaired.append(image.repaired)
                    self.timing.build_s += booted.build_s
                    self.timing.boot_s += booted.boot_s
                    self.timing.images += 1
                    yield from self._run_image(image, upcoming.items, measure_task, booted, boot_next)
            except BaseException:
                stop_builds()  # Ctrl-C: the builder thread's compilers end now, not when done
                raise
            finally:
                if stop is not None:
                    stop.set()
                feeder.join()
                for f in futures:
                    f.cancel()
                for upcoming in pending:
                    if isinstance(upcoming, _Upcoming) and upcoming.boot is not None:
                        upcoming.boot.cancel()
                        upcoming.boot.add_done_callback(_close_booted)  # booted ahead, never measured

    def _boot(self, build: Future) -> _Booted:
        """The image, once built, started on a board that answers (or the error
        of a board that gave up: its benchmarks are skipped)."""
        image, build_s = _result(build)
        t0 = time.monotonic()
        board = self.open_device()
        try:
            info = boot_with_recovery(board, image)
        except BoardGaveUp as error:
            board.close()
            return _Booted(image, build_s, time.monotonic() - t0, None, None, error)
        except BaseException:
            board.close()
            raise
        return _Booted(image, build_s, time.monotonic() - t0, board, info)

    def _run_image(self, image: BuiltImage, items: list[Item], task, booted: _Booted | None = None,
                   between: Callable[[], None] | None = None,
                   indices: list[int] | None = None) -> Iterator[Measurement]:
        """The image's items (its benchmarks at `indices`, default all in order)
        measured, on the board it was `booted` on (booted here if not);
        `between()` is called after each item."""
        if booted is None:
            booted = self._boot(_done((image, 0.0)))
            self.timing.boot_s += booted.boot_s
        if booted.error is not None:
            for item in items:
                self.timing.skipped.append(f"{item.model.name}: {booted.error}")
                self.advance(task)
                yield Measurement(item, f"{SKIPPED}: {booted.error}", image=image)
            return
        with booted.board as board:
            if between is not None:
                between()
            t0 = time.monotonic()
            largest: tuple[float, int] = (0.0, -1)  # (cycles, index) of the image's largest op
            for index, (item, measurement) in enumerate(self._measure(board, image, items, booted.info, indices)):
                measurement = replace(measurement, seconds=time.monotonic() - t0)
                self.timing.measure_s += measurement.seconds
                if measurement.cycles:
                    largest = max(largest, (measurement.median, index))
                if skipped(measurement.status):
                    self.timing.skipped.append(f"{item.model.name}: {measurement.status}")
                elif measurement.status != OK:
                    self.timing.flagged.append(f"{item.model.name}: {measurement.status}")
                if not skipped(measurement.status):
                    self.timing.measured += 1
                self.advance(task)
                yield measurement
                if between is not None:
                    between()
                t0 = time.monotonic()
            if self._count_guest_work(board):
                self.timing.rate_due -= 1
                # (a pinned image's subset: `largest` is no benchmark number there; the next image samples)
                if self.timing.rate_due <= 0 and indices is None and self._measure_rate(board, items, *largest):
                    self.timing.rate_due = RATE_EVERY

    def _measure(self, board: Board, image: BuiltImage, items: list[Item], info: DeviceInfo,
                 indices: list[int] | None = None) -> Iterator[tuple[Item, Measurement]]:
        """The items' measurements, in order: the RUNs of up to a batch of them
        in one request where the firmware takes BATCH, each as it is answered
        (the board goes on with the next meanwhile); alone, each with the
        recovery steps, where it does not, and for what a batch left unsettled
        (a lost reply, a disturbed sample, an output to look at closer, a
        board that stopped answering)."""
        at = list(range(len(items))) if indices is None else list(indices)  # benchmark numbers
        consecutive = at == list(range(at[0], at[0] + len(at))) if at else True  # a BATCH runs a range
        capacity = BatchRequest.capacity(info.max_request) if getattr(info, "batch", False) and consecutive else 0
        index = 0
        while index < len(items):
            end = min(len(items), index + max(1, capacity))
            answered: dict[int, object] = {}
            if end - index >= 2:
                start = index
                batch = BatchRequest(at[start], tuple(item.seed for item in items[index:end]),
                                     warmup=self.warmup, repeats=self.repeats)
                try:
                    for k, result in board.driver.run_batch(batch):
                        answered[start + k] = result
                        while index in answered:
                            settled = self._settled(board, items[index], image, info, answered[index])
                            if settled is None:
                                break  # looked at once the batch is over
                            yield items[index], settled
                            del answered[index]
                            index += 1
                except BoardNotResponding:
                    pass  # the link went: what is left goes alone, with the recovery steps
            for i in range(index, end):
                yield items[i], self._run_one(board, at[i], items[i], image, info, answered.get(i))
            index = end

    def _settled(self, board: Board, item: Item, image: BuiltImage, info: DeviceInfo,
                 result: object) -> Measurement | None:
        """The measurement a batch's answer settles at once: an output equal to
        the host's, or an error of the benchmark itself; None for the rest."""
        if isinstance(result, (DeviceError, ImageTooLarge)):
            return Measurement(item, f"error: {result}", image=image, info=info)
        if not isinstance(result, RunReply):
            return None
        comparison = compare_output(result.output, self._reference(item), result.output_crc, result.output_size)
        if comparison.kind != EXACT:
            return None
        return self._measurement(board, item, comparison.status, result, image, info)

    def _run_one(self, board: Board, index: int, item: Item, image: BuiltImage,
                 info: DeviceInfo, answered: object = None) -> Measurement:
        """The item measured alone (or from the reply a batch `answered`)."""
        # The firmware makes the input from the seed: nothing to upload. The
        # output comes back as its CRC: equal to the host's, it is the same
        # output; otherwise its bytes are asked for to tell how far it is off.
        request = RunRequest(index, warmup=self.warmup, repeats=self.repeats, profile=True,
                             output_crc_only=True, seed=item.seed)
        try:
            reply = answered if isinstance(answered, RunReply) else run_with_recovery(board, request)
            status = self._output_status(board, index, item, reply, self._reference(item))
        except BoardGaveUp as error:
            return Measurement(item, f"{SKIPPED}: {error}", image=image, info=info)
        except (DeviceError, ImageTooLarge) as error:
            return Measurement(item, f"error: {error}", image=image, info=info)
        return self._measurement(board, item, status, reply, image, info)

    @staticmethod
    def _reference(item: Item) -> bytes:
        if item.reference is not None:
            return item.reference
        return item.model.reference_output(seeded_bytes(item.seed, item.model.input_bytes))

    @staticmethod
    def _measurement(board: Board, item: Item, status: str, reply: RunReply, image: BuiltImage,
                     info: DeviceInfo) -> Measurement:
        return Measurement(
            item, status,
            cycles=tuple(board.ticks_to_cycles(t) for t in reply.repeat_ticks),
            profile=tuple((p.op, board.ticks_to_cycles(p.ticks)) for p in reply.profile),
            arena_used=reply.arena_used, image=image, info=info)

    def _count_guest_work(self, board: Board) -> bool:
        """On an emulated board: the instructions the image ran (the firmware's
        busy ticks: all it did but wait for the host), added to the run's.
        False where there is nothing to count (a physical board, a firmware
        that does not count, a board that went quiet at the end)."""
        if not self.board.emulated or board.driver is None:
            return False
        try:
            info = board.driver.info()
        except (BoardNotResponding, ValueError):
            return False
        if info.busy_ticks is None:
            return False
        self.timing.guest_instructions += board.ticks_to_cycles(info.busy_ticks)
        self.timing.guest_images += 1
        return True

    def _measure_rate(self, board: Board, items: list[Item], cycles: float, index: int) -> bool:
        """A sample of QEMU's pace on this image's largest op: a RUN of it
        repeated many times less a RUN of one inference, in guest instructions
        (busy ticks before and after each) per host second. The fixed parts
        (the request's bytes, the reply, the host's wake-up) are in both and
        cancel out. False if the op is too small to time QEMU by."""
        repeats = min(1000, max(2, math.ceil(RATE_INSTRUCTIONS / max(cycles, 1))))
        if index < 0 or cycles * (repeats - 1) < RATE_INSTRUCTIONS / 4:
            return False
        started = time.monotonic()
        try:
            busy = [board.driver.info().busy_ticks]
            seconds = []
            for n in (1, repeats):
                t0 = time.monotonic()
                board.driver.run(RunRequest(index, warmup=0, repeats=n, profile=False, output_crc_only=True,
                                            seed=items[index].seed))
                seconds.append(time.monotonic() - t0)
                busy.append(board.driver.info().busy_ticks)
        except (BoardNotResponding, DeviceError, ValueError):
            return False  # no figure: the next image tries again
        finally:
            self.timing.rate_probe_s += time.monotonic() - started
        extra_instructions = board.ticks_to_cycles((busy[2] - busy[1]) - (busy[1] - busy[0]))
        if seconds[1] <= seconds[0] or extra_instructions <= 0:
            return False
        self.timing.rate_instructions += extra_instructions
        self.timing.rate_seconds += seconds[1] - seconds[0]
        self.timing.rate_samples += 1
        return True

    @staticmethod
    def _output_status(board: Board, index: int, item: Item, reply, host: bytes) -> str:
        """The status of the device's output against the host's `host` bytes."""
        comparison = compare_output(reply.output, host, reply.output_crc, reply.output_size)
        if comparison.usable or len(host) > OUTPUT_BYTES_SENT or reply.output_size != len(host):
            return comparison.status
        # The CRCs differ: the output's bytes (one unprofiled inference) tell how far.
        again = run_with_recovery(board, RunRequest(index, warmup=0, repeats=1, profile=False,
                                                    output_crc_only=False, seed=item.seed))
        if again.output_crc != reply.output_crc:
            return f"{MISMATCH}: the board's output changed from one run to the next"
        return compare_output(again.output, host).status


__all__ = ["ImageRunner", "Item", "Measurement", "OpTicks", "Timing", "pack"]
