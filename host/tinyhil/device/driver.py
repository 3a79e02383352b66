"""The protocol driver: requests and replies over any pyserial-like port.

Knows nothing about how the board was started (see strategies); only that
bytes go out with `write` and come back with `read`.
"""
from __future__ import annotations

import re
import termios
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from serial import SerialException

from tinyhil.errors import BoardNotResponding, DeviceError, ImageTooLarge, SampleDisturbed, UnsupportedOp
from tinyhil.protocol import (
    REPLY,
    VERSION,
    BatchRequest,
    ErrorCode,
    Frame,
    FrameDecoder,
    Kind,
    LayerCapture,
    LayersReply,
    LayersRequest,
    RunReply,
    RunRequest,
    TensorChunk,
    decode_error,
    parse_key_values,
)

# A loaded host can keep QEMU, or this process, off the CPU for a while: no
# RUN is given up on sooner than this, whatever timeout the caller set.
RUN_FLOOR_SECONDS = 2.0
# A RUN waits for its expected device time this many times over, on top of the
# caller's timeout: a slow board is not a dead board.
RUN_WORK_MARGIN = 3.0
# A RUN of unknown cost asking for at most this many inferences is sent as it
# is, waited for one timeout per inference. Learning the cost first (a
# one-inference RUN, itself given one timeout) would accept no slower board
# and, for the one or two inferences per op of a characterization, double the
# requests and add half the board's work again.
UNPROBED_INFERENCES = 2
# What a serial link that went away raises: pyserial's own errors, the OS's,
# and termios.error (not an OSError) from tcflush/tcgetattr on a pty whose
# other end (QEMU) has gone.
LINK_ERRORS = (OSError, SerialException, termios.error)

# How the firmware's fault handler (tinyhil_fatal) begins its ERROR: the board says nothing after it.
DEVICE_FAULT = "device fault"
ARENA_MISSING = re.compile(r"missing: (\d+)")
OP_MISSING = re.compile(r"Didn't find op for builtin opcode '(\w+)'")
# The first INFO after a reset is sent again after 0.25 s, then at doubling
# intervals: a board drops what comes before its UART is enabled (QEMU's STM32
# USART does, its boot polls the clock tree first), and one lost INFO must not
# cost a whole timeout.
BOOT_FIRST_WAIT = 0.25


def boot_waits(longest: float, budget: float) -> list[float]:
    """The waits of INFO's tries after a reset: 0.25 s doubling up to `longest`,
    until they add up to `budget` seconds."""
    waits: list[float] = []
    wait = min(BOOT_FIRST_WAIT, longest)
    while sum(waits) < budget:
        waits.append(wait)
        wait = min(2 * wait, longest)
    return waits


@dataclass(frozen=True)
class DeviceInfo:
    board: str
    core: str
    clock_hz: int
    counter: str
    counter_hz: int
    tflm: str
    build_id: str
    arena_bytes: int
    benchmarks: int
    max_request: int
    clock_source: str = ""  # e.g. "pll-hse-bypass-8MHz"; boards that say so
    warnings: str = ""  # what the board could not set up (a clock that did not lock, ...)
    batch: bool = False  # the firmware runs BATCH requests
    # counter ticks the core ran (not waiting for the host) since it started: a reading, not who it is
    busy_ticks: int | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, payload: bytes) -> DeviceInfo:
        kv = parse_key_values(payload)
        try:
            if int(kv["protocol"]) != VERSION:
                raise ValueError(f"protocol {kv['protocol']}, host speaks {VERSION}")
            return cls(
                board=kv["board"], core=kv["core"], clock_hz=int(kv["clock_hz"]),
                counter=kv["counter"], counter_hz=int(kv["counter_hz"]), tflm=kv["tflm"],
                build_id=kv["build_id"], arena_bytes=int(kv["arena_bytes"]),
                benchmarks=int(kv["benchmarks"]), max_request=int(kv["max_request"]),
                clock_source=kv.get("clock_source", ""), warnings=kv.get("warning", ""),
                batch=kv.get("batch") == "1",
                busy_ticks=int(kv["busy_ticks"]) if "busy_ticks" in kv else None,
            )
        except (KeyError, ValueError) as error:
            raise ValueError(f"malformed INFO reply ({error}): {payload[:200]!r}") from error


@dataclass(frozen=True)
class BenchmarkEntry:
    index: int
    name: str
    model_bytes: int


class BenchDriver:
    """Sends one request at a time and waits for the reply with its sequence number.

    A lost or garbled frame (either way) is survived by resending the same
    request after its timeout; replies to earlier requests are ignored. After
    `retries` resends the board is declared not responding. A RUN whose timed
    sample stayed disturbed (ErrorCode.DISTURBED: another interrupt ran while it
    was timed) is sent again the same way; it never yields a figure.

    A RUN's timeout scales with the work it asks for: `timeout` plus the
    inferences it asks for times one inference's counter ticks (learnt from
    an earlier reply of the same benchmark, or from a one-inference RUN sent
    first), at the slowest speed the board may run (`ticks_per_second`). A RUN
    of unknown cost and at most UNPROBED_INFERENCES inferences gets `timeout`
    per inference instead, without the one-inference RUN.
    """

    def __init__(self, port, board_name: str, timeout: float = 10.0, retries: int = 2,
                 ticks_per_second: float = 0.0, inference_ticks: dict[int, int] | None = None):
        self.port = port
        self.board_name = board_name
        self.timeout = timeout
        self.retries = retries
        self.ticks_per_second = ticks_per_second  # 0: unknown, RUNs get `timeout` alone
        # benchmark -> counter ticks of its slowest inference seen; kept by the board across resets
        self.inference_ticks = {} if inference_ticks is None else inference_ticks
        self.resends = 0  # requests sent again after a timeout or a bad frame
        self.decoder = FrameDecoder()
        self._frames: deque[Frame] = deque()  # decoded, not taken yet (a batch's replies come in runs)
        self._seq = 0

    def info(self, waits: list[float] | None = None) -> DeviceInfo:
        """INFO; `waits` (see boot_waits) in place of `retries` tries of `timeout` each."""
        return DeviceInfo.parse(self._request(Kind.INFO, b"", "INFO", waits=waits))

    def list(self) -> list[BenchmarkEntry]:
        entries = []
        for line in self._request(Kind.LIST, b"", "LIST").decode().splitlines():
            index, name, size = line.split("\t")
            entries.append(BenchmarkEntry(int(index), name, int(size)))
        return entries

    def run(self, request: RunRequest, timeout: float | None = None) -> RunReply:
        if (timeout is None and self.ticks_per_second and request.benchmark not in self.inference_ticks
                and self._inferences(request) > UNPROBED_INFERENCES):
            # Unknown cost: one inference first, so the real RUN's timeout fits its work.
            self.run(RunRequest(request.benchmark, request.input, warmup=0, repeats=1,
                                profile=False, output_crc_only=True, seed=request.seed))
        what = f"RUN benchmark {request.benchmark} ({request.repeats} repeats)"
        payload = self._request(Kind.RUN, request.encode(), what,
                                timeout or self.run_timeout(request))
        try:
            reply = RunReply.decode(payload)
        except ValueError as error:
            raise BoardNotResponding(f"board {self.board_name}: {error} after {what}") from error
        self._learn(request.benchmark, reply)
        return reply

    def run_batch(self, batch: BatchRequest) -> Iterator[tuple[int, RunReply | Exception]]:
        """Sends `batch` and yields (k, reply) as the reply to its k-th RUN comes,
        or (k, error) for an ERROR (the error that RUN alone would raise), in
        ascending k. A reply lost on the line is skipped. It ends after the
        last reply, after a device fault (the board says nothing more), or
        when the next reply has not come within its RUN's timeout. Nothing is
        resent: a RUN it did not answer is the caller's to send again, once
        it has ended (a request sent while the board still runs the batch
        waits behind it). A link that is gone raises BoardNotResponding."""
        base = (self._seq + 1) & 0xFF
        count = len(batch.seeds)
        self._seq = (base + count - 1) & 0xFF  # the replies take seq .. seq + count - 1
        frame = Frame(Kind.BATCH, base, batch.encode()).encode()
        k = 0

        def answers(f: Frame) -> bool:
            return f.kind in (Kind.RUN | REPLY, Kind.ERROR) and k <= (f.seq - base) & 0xFF < count

        try:
            self.port.reset_input_buffer()
            self._clear()
            self.port.write(frame)
            self.port.flush()
            while k < count:
                got = self._await_frame(answers, self.run_timeout(batch.run(k)), give_up_on_bad=False)
                if got is None:
                    return
                k = (got.seq - base) & 0xFF
                what = f"RUN benchmark {batch.first + k} (in a batch)"
                if got.kind == Kind.ERROR:
                    code, message = decode_error(got.payload)
                    yield k, (SampleDisturbed(f"board {self.board_name}: {what} came back disturbed ({message})")
                              if code == ErrorCode.DISTURBED else self._explain(code, message, what))
                    if message.startswith(DEVICE_FAULT):
                        return  # the board's fault handler has said its last word
                else:
                    try:
                        reply = RunReply.decode(got.payload)
                    except ValueError:
                        reply = None  # whole on the line but not a reply: as if lost
                    if reply is not None:
                        self._learn(batch.first + k, reply)
                        yield k, reply
                k += 1
        except LINK_ERRORS as error:
            raise BoardNotResponding(f"board {self.board_name}: serial link lost during a batch of "
                                     f"{count} RUNs ({error})") from error

    def _learn(self, benchmark: int, reply: RunReply) -> None:
        if reply.repeat_ticks:
            seen = self.inference_ticks.get(benchmark, 0)
            self.inference_ticks[benchmark] = max(seen, *reply.repeat_ticks)

    def run_timeout(self, request: RunRequest) -> float:
        """Seconds to wait for the reply to `request`: never below the floor,
        and longer by the expected device time of the inferences asked for."""
        base = max(self.timeout, RUN_FLOOR_SECONDS)
        ticks = self.inference_ticks.get(request.benchmark)
        if not ticks or not self.ticks_per_second:
            inferences = self._inferences(request)
            return base * inferences if inferences <= UNPROBED_INFERENCES else base
        return base + RUN_WORK_MARGIN * self._inferences(request) * ticks / self.ticks_per_second

    @staticmethod
    def _inferences(request: RunRequest) -> int:
        return request.warmup + request.repeats + (1 if request.profile else 0)

    def layers(self, benchmark: int, input: bytes, capture: LayerCapture,
               timeout: float | None = None) -> LayerCapture:
        """Every tensor of one untimed inference on `input`, streamed into
        `capture` (LAYERS). Each request asks only for the units `capture`
        still lacks, so a garbled, dropped or duplicated TENSOR frame costs
        one more request for its op, not the whole stream; `capture` may
        hold what an earlier call (before a board reset) brought. The line
        may be quiet `timeout` seconds (default: a RUN's timeout for one
        inference) before a request is taken as lost; after `retries` + 1
        requests in a row that bring nothing new the board is not responding."""
        timeout = timeout or self.run_timeout(RunRequest(benchmark, input, warmup=0, repeats=1, profile=False))
        fruitless = 0
        while not capture.complete:
            request = LayersRequest.for_units(benchmark, input, capture.missing_units())
            before = (len(capture.tensors), capture.reply is not None)
            self._seq = (self._seq + 1) & 0xFF
            frame = Frame(Kind.LAYERS, self._seq, request.encode()).encode()
            what = f"LAYERS benchmark {benchmark} (units from {request.first})"
            try:
                self.port.reset_input_buffer()
                self.decoder.buffer.clear()
                self.port.write(frame)
                self.port.flush()
                error = self._collect(capture, timeout)
            except LINK_ERRORS as error:
                raise BoardNotResponding(
                    f"board {self.board_name}: serial link lost during {what} ({error})") from error
            if error is not None:
                raise self._explain(*error, what)
            if (len(capture.tensors), capture.reply is not None) == before:
                fruitless += 1
                if fruitless > self.retries:
                    raise BoardNotResponding(
                        f"board {self.board_name} did not answer {what} ({fruitless} tries in a row "
                        f"brought no tensor, {timeout:g} s of quiet each); "
                        f"{len(capture.missing_units())} of {len(capture.slots)} units missing")
            else:
                fruitless = 0
            self.resends += not capture.complete
        return capture

    def _collect(self, capture: LayerCapture, quiet: float) -> tuple[int, str] | None:
        """Frames of the current LAYERS request into `capture`, until its reply
        (or ERROR: returned) or `quiet` seconds without one of its frames."""
        deadline = time.monotonic() + quiet
        tensor, reply = Kind.TENSOR | REPLY, Kind.LAYERS | REPLY
        while time.monotonic() < deadline:
            chunk = self.port.read(max(1, getattr(self.port, "in_waiting", 0) or 1))
            for frame in self.decoder.feed(chunk) if chunk else ():
                if frame.seq != self._seq:
                    continue
                deadline = time.monotonic() + quiet  # the stream is alive
                if frame.kind == Kind.ERROR:
                    return decode_error(frame.payload)
                try:
                    if frame.kind == tensor:
                        capture.add(TensorChunk.decode(frame.payload))
                    elif frame.kind == reply:
                        capture.reply = LayersReply.decode(frame.payload)
                        return None
                except ValueError:  # a frame whose CRC held but whose content cannot be ours
                    capture.rejected += 1
        return None

    # ---------------------------------------------------------------------
    def _request(self, kind: Kind, payload: bytes, what: str, timeout: float | None = None,
                 waits: list[float] | None = None) -> bytes:
        self._seq = (self._seq + 1) & 0xFF
        frame = Frame(kind, self._seq, payload).encode()
        waits = waits or [timeout or self.timeout] * (self.retries + 1)
        disturbed = ""
        for attempt, timeout in enumerate(waits):
            self.resends += attempt > 0
            try:
                self.port.reset_input_buffer()
                self._clear()
                self.port.write(frame)
                self.port.flush()
                reply = self._await_frame(
                    lambda f: f.seq == self._seq and f.kind in (kind | REPLY, Kind.ERROR), timeout)
            except LINK_ERRORS as error:
                # The link itself is gone (QEMU died, cable pulled): no retry
                # on this port can help; the board's strategy must bring it back.
                raise BoardNotResponding(
                    f"board {self.board_name}: serial link lost during {what} ({error})"
                ) from error
            if reply is not None:
                if reply.kind == Kind.ERROR:
                    code, message = decode_error(reply.payload)
                    if code == ErrorCode.DISTURBED:
                        disturbed = message
                        continue
                    raise self._explain(code, message, what)
                return reply.payload
        if disturbed:
            raise SampleDisturbed(f"board {self.board_name}: {what} came back disturbed on "
                                  f"{len(waits)} tries, no figure taken ({disturbed})")
        each = f"{waits[0]:g} s each" if len(set(waits)) == 1 else f"{sum(waits):g} s in all"
        raise BoardNotResponding(f"board {self.board_name} did not answer {what} ({len(waits)} tries, {each})")

    def _explain(self, code: int, message: str, what: str) -> Exception:
        """Turns TFLM's own messages into the error a user can act on."""
        missing = ARENA_MISSING.search(message)
        if code == ErrorCode.ALLOCATE and missing:
            return ImageTooLarge(
                f"the model needs {missing.group(1)} more bytes of tensor arena than board "
                f"{self.board_name} has ({message.splitlines()[0]})"
            )
        op = OP_MISSING.search(message)
        if op:
            return UnsupportedOp(f"board {self.board_name}'s firmware lacks op {op.group(1)}")
        return DeviceError(code, f"board {self.board_name} refused {what}: {message}")

    def _clear(self) -> None:
        self.decoder.buffer.clear()
        self._frames.clear()

    def _await_frame(self, match: Callable[[Frame], bool], timeout: float,
                     give_up_on_bad: bool = True) -> Frame | None:
        """The first frame `match` accepts (others are dropped), or None after
        `timeout` or, with `give_up_on_bad`, once a frame failed its CRC and the
        line went quiet (the caller asks again rather than wait it out)."""
        deadline = time.monotonic() + timeout
        bad_frames = self.decoder.bad_frames
        while True:
            while self._frames:
                frame = self._frames.popleft()
                if match(frame):
                    return frame
            if time.monotonic() >= deadline:
                return None
            # what is there, or the rest of the frame begun: one read a reply, not one a byte
            chunk = self.port.read(max(self.decoder.wanted(), getattr(self.port, "in_waiting", 0) or 1))
            if not chunk:
                if give_up_on_bad and self.decoder.bad_frames > bad_frames and not self.decoder.buffer:
                    # A reply came and failed its CRC, and the line is quiet
                    # again: ask again now rather than wait out the timeout.
                    return None
                continue
            self._frames.extend(self.decoder.feed(chunk))
