"""The protocol driver: requests and replies over any pyserial-like port.

Knows nothing about how the board was started (see strategies); only that
bytes go out with `write` and come back with `read`.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from serial import SerialException

from ..errors import BoardNotResponding, DeviceError, ImageTooLarge, UnsupportedOp
from .protocol import (
    REPLY,
    VERSION,
    ErrorCode,
    Frame,
    FrameDecoder,
    Kind,
    RunReply,
    RunRequest,
    decode_error,
    parse_key_values,
)

ARENA_MISSING = re.compile(r"missing: (\d+)")
OP_MISSING = re.compile(r"Didn't find op for builtin opcode '(\w+)'")


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
    request after `timeout`; replies to earlier requests are ignored. After
    `retries` resends the board is declared not responding.
    """

    def __init__(self, port, board_name: str, timeout: float = 10.0, retries: int = 2):
        self.port = port
        self.board_name = board_name
        self.timeout = timeout
        self.retries = retries
        self.decoder = FrameDecoder()
        self._seq = 0

    def info(self) -> DeviceInfo:
        return DeviceInfo.parse(self._request(Kind.INFO, b"", "INFO"))

    def list(self) -> list[BenchmarkEntry]:
        entries = []
        for line in self._request(Kind.LIST, b"", "LIST").decode().splitlines():
            index, name, size = line.split("\t")
            entries.append(BenchmarkEntry(int(index), name, int(size)))
        return entries

    def run(self, request: RunRequest, timeout: float | None = None) -> RunReply:
        what = f"RUN benchmark {request.benchmark} ({request.repeats} repeats)"
        payload = self._request(Kind.RUN, request.encode(), what, timeout)
        try:
            return RunReply.decode(payload)
        except ValueError as error:
            raise BoardNotResponding(f"board {self.board_name}: {error} after {what}") from error

    # ---------------------------------------------------------------------
    def _request(self, kind: Kind, payload: bytes, what: str, timeout: float | None = None) -> bytes:
        self._seq = (self._seq + 1) & 0xFF
        frame = Frame(kind, self._seq, payload).encode()
        timeout = timeout or self.timeout
        for _attempt in range(self.retries + 1):
            try:
                self.port.reset_input_buffer()
                self.decoder.buffer.clear()
                self.port.write(frame)
                self.port.flush()
                reply = self._await(kind, timeout)
            except (OSError, SerialException) as error:
                # The link itself is gone (QEMU died, cable pulled): no retry
                # on this port can help; the board's strategy must bring it back.
                raise BoardNotResponding(
                    f"board {self.board_name}: serial link lost during {what} ({error})"
                ) from error
            if reply is not None:
                if reply.kind == Kind.ERROR:
                    raise self._explain(*decode_error(reply.payload), what)
                return reply.payload
        raise BoardNotResponding(
            f"board {self.board_name} did not answer {what} "
            f"({self.retries + 1} tries, {timeout:g} s each)"
        )

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

    def _await(self, kind: Kind, timeout: float) -> Frame | None:
        deadline = time.monotonic() + timeout
        bad_frames = self.decoder.bad_frames
        while time.monotonic() < deadline:
            chunk = self.port.read(max(1, getattr(self.port, "in_waiting", 0) or 1))
            if not chunk:
                if self.decoder.bad_frames > bad_frames and not self.decoder.buffer:
                    # A reply came and failed its CRC, and the line is quiet
                    # again: ask again now rather than wait out the timeout.
                    return None
                continue
            for frame in self.decoder.feed(chunk):
                if frame.seq == self._seq and frame.kind in (kind | REPLY, Kind.ERROR):
                    return frame
        return None
