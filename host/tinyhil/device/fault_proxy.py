"""A faulty serial line, on purpose: a relay between the host and a board's
serial port that garbles, drops, duplicates and stalls frames on a seeded
schedule, to show that no fault of the link becomes a wrong number.

    host (pyserial) <-> our pty <-> FaultProxy <-> the board's port (QEMU pty, ...)

It is a `Board.link`: the board hands it its real port on every bring-up
(QEMU gets a new pty when it restarts) and opens the pty it returns instead.
Faults are made per frame, so that each one counted is one the protocol
must survive; bytes outside frames are relayed as they come.
"""
from __future__ import annotations

import fcntl
import os
import random
import select
import struct
import termios
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from tinyhil.protocol import CRC, HEADER, MAX_PAYLOAD, SYNC, Kind

KINDS = ("garble", "drop", "duplicate", "stall")
# Done to the board itself, just after a RUN request went through: the
# benchmark is interrupted mid-way (actions supplied by whoever owns the board).
BOARD_KINDS = ("board_reset", "qemu_killed")
# Bytes of noise into the board's input at random moments after a RUN, while
# it measures (FaultPlan.noise): they must not change a single count.
NOISE_KIND = "noise"
# Done to the board between two requests: just after a reply reached the host.
IDLE_KINDS = ("qemu_killed_idle",)
RUN_KIND = int(Kind.RUN)
BATCH_KIND = int(Kind.BATCH)  # RUNs of many benchmarks in one request: measuring too
MEASURING_KINDS = (RUN_KIND, BATCH_KIND)
NOISE_BYTES = [b for b in range(256) if b != SYNC[0]]


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 0
    to_host: float = 0.3  # chance that a frame from the board gets a fault
    to_board: float = 0.05  # chance that a frame to the board gets one
    kinds: tuple[str, ...] = KINDS
    stall_s: float = 0.6  # mean-ish; each stall lasts 0.2-2x this
    board_faults: float = 0.0  # chance that a RUN request is followed by a board fault
    noise: float = 0.0  # chance that a RUN request is followed by noise (NOISE_KIND)
    noise_window_s: float = 0.05  # the noise comes within this time after the request
    idle_faults: float = 0.0  # chance that a reply is followed by an IDLE_KINDS fault
    boot_faults: float = 0.0  # chance that a power-on is cut short (regress/faults.py does it)

    def __post_init__(self):
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")


class _Framer:
    """Cuts a byte stream into whole frames (by their length field) and the
    bytes between them, without checking CRCs: the proxy is the line, not the host."""

    def __init__(self):
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        self.buffer.extend(data)
        out = []
        while True:
            start = self.buffer.find(SYNC)
            if start < 0:
                keep = 1 if self.buffer[-1:] == SYNC[:1] else 0
                if len(self.buffer) > keep:
                    out.append((False, bytes(self.buffer[: len(self.buffer) - keep])))
                    del self.buffer[: len(self.buffer) - keep]
                return out
            if start:
                out.append((False, bytes(self.buffer[:start])))
                del self.buffer[:start]
            if len(self.buffer) < HEADER.size:
                return out
            _, _, _, length = HEADER.unpack_from(self.buffer)
            end = HEADER.size + length + CRC.size
            if length > MAX_PAYLOAD:
                out.append((False, bytes(self.buffer[:1])))
                del self.buffer[:1]
                continue
            if len(self.buffer) < end:
                return out
            out.append((True, bytes(self.buffer[:end])))
            del self.buffer[:end]


class FaultProxy:
    def __init__(self, plan: FaultPlan = FaultPlan()):
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.faults: Counter[str] = Counter()  # injected, by kind
        self.frames: Counter[str] = Counter()  # relayed, by direction
        self.enabled = True
        self.board_actions: dict[str, Callable[[], None]] = {}  # kind -> do it (BOARD_KINDS)
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._fds: list[int] = []
        self._noise_due: list[tuple[float, bytes]] = []  # (monotonic time, bytes) to the board

    # ---- Board.link ----------------------------------------------------------
    def __call__(self, board_port: str) -> str:
        self.close()
        board_fd = os.open(board_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(board_fd)
        host_master, host_slave = os.openpty()
        tty.setraw(host_slave)
        name = os.ttyname(host_slave)
        self._fds = [board_fd, host_master, host_slave]
        self._noise_due = []  # meant for the board that is gone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, args=(board_fd, host_master, self._stop),
                                        daemon=True, name="fault-proxy")
        self._thread.start()
        return name

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2)
            self._thread = None
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []

    def count(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    # ---- the relay -----------------------------------------------------------
    def _relay(self, board_fd: int, host_fd: int, stop: threading.Event) -> None:
        framers = {board_fd: _Framer(), host_fd: _Framer()}
        peer = {board_fd: host_fd, host_fd: board_fd}
        while not stop.is_set():
            self._send_due_noise(board_fd)
            try:
                ready, _, _ = select.select([board_fd, host_fd], [], [], self._next_wait_s())
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                except OSError:  # the board's pty is gone (QEMU killed): EIO ...
                    data = b""
                if not data:  # ... or end of file
                    if fd == board_fd:
                        self._hang_up(host_fd)
                        return
                    continue
                to_host = fd == board_fd
                for is_frame, chunk in framers[fd].feed(data):
                    out = self._mangle(chunk, to_host) if is_frame else chunk
                    if out:
                        self._write(peer[fd], out)
                    if is_frame:
                        self._after(chunk, to_host)

    def _hang_up(self, host_fd: int) -> None:
        """The board's end went away: so does the host's, as a real line would
        (the host then sees what it sees on a QEMU pty: EIO, termios.error)."""
        if host_fd in self._fds:
            self._fds.remove(host_fd)
            os.close(host_fd)

    def _after(self, frame: bytes, to_host: bool) -> None:
        self._schedule_noise(frame, to_host)
        if to_host:
            self._after_reply()
            return
        if not self.enabled or not self.board_actions or frame[2] not in MEASURING_KINDS:
            return
        if self.rng.random() < self.plan.board_faults:
            kind = self.rng.choice(sorted(k for k in self.board_actions if k in BOARD_KINDS))
            time.sleep(self.rng.uniform(0.0, 0.02))  # somewhere inside the benchmark
            try:
                self.board_actions[kind]()
            except OSError:
                return  # the board was already gone: no fault made
            self.count(kind)

    # ---- noise while the board measures ----------------------------------------
    def _schedule_noise(self, frame: bytes, to_host: bool) -> None:
        """After a RUN (or BATCH) went to the board: one to three bursts of noise, each at a
        random moment of the next `noise_window_s`, when the board is likely timing."""
        if to_host or not self.enabled or frame[2] not in MEASURING_KINDS or self.plan.noise <= 0 \
                or self.rng.random() >= self.plan.noise:
            return
        now = time.monotonic()
        for _ in range(self.rng.randint(1, 3)):
            # no SYNC0 in it: noise that opened a false frame would only delay the next request
            burst = bytes(self.rng.choice(NOISE_BYTES) for _ in range(self.rng.randint(1, 16)))
            self._noise_due.append((now + self.rng.uniform(0.0, self.plan.noise_window_s), burst))
        self.count(NOISE_KIND)

    def _send_due_noise(self, board_fd: int) -> None:
        now = time.monotonic()
        for when, burst in [n for n in self._noise_due if n[0] <= now]:
            self._write(board_fd, burst)
            self._noise_due.remove((when, burst))

    def _next_wait_s(self) -> float:
        if not self._noise_due:
            return 0.05
        return max(0.0, min(0.05, min(when for when, _ in self._noise_due) - time.monotonic()))

    def _after_reply(self) -> None:
        """A fault between requests: the host has its answer and has not asked again."""
        kinds = sorted(k for k in self.board_actions if k in IDLE_KINDS)
        if not self.enabled or not kinds or self.rng.random() >= self.plan.idle_faults:
            return
        kind = self.rng.choice(kinds)
        self._wait_until_host_read()
        try:
            self.board_actions[kind]()
        except OSError:
            return  # the board was already gone: no fault made
        self.count(kind)

    def _wait_until_host_read(self, timeout: float = 5.0) -> None:
        """Until the host has read what was relayed to it (a hang-up would discard
        it). The pty hands written bytes over a moment later: first wait for
        them to arrive on the host's side (briefly: the host may be quicker)."""
        host_slave = self._fds[2] if len(self._fds) == 3 else None
        started = time.monotonic()
        seen = False
        while host_slave is not None and time.monotonic() - started < timeout:
            try:
                waiting = struct.unpack("i", fcntl.ioctl(host_slave, termios.FIONREAD, b"\0" * 4))[0]
            except OSError:
                return
            seen = seen or waiting > 0
            if not waiting and (seen or time.monotonic() - started > 0.5):
                return
            time.sleep(0.002)

    def _mangle(self, frame: bytes, to_host: bool) -> bytes:
        self.frames["to_host" if to_host else "to_board"] += 1
        chance = self.plan.to_host if to_host else self.plan.to_board
        if not self.enabled or self.rng.random() >= chance:
            return frame
        kind = self.rng.choice(self.plan.kinds)
        self.count(kind)
        if kind == "garble":
            data = bytearray(frame)
            for _ in range(self.rng.randint(1, 3)):
                data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
            return bytes(data)
        if kind == "drop":
            start = self.rng.randrange(len(frame))
            return frame[:start] + frame[start + self.rng.randint(1, 8):]
        if kind == "duplicate":
            return frame + frame
        # stall: the line goes quiet, then delivers; sometimes past the host's timeout
        time.sleep(self.rng.uniform(0.2, 2.0) * self.plan.stall_s)
        return frame

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                select.select([], [fd], [], 0.05)
                continue
            except OSError:
                return
            view = view[written:]
