"""Emulated boards: qemu-system-arm with UART0 on a pseudo-terminal.

`QemuProcess` is the resource (one QEMU running one ELF); it never outlives
tinyhil: it is stopped by its context manager, at interpreter exit, and by the
kernel (PR_SET_PDEATHSIG) if tinyhil itself is killed.
"""
from __future__ import annotations

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

from tinyhil.errors import BoardNotResponding, ToolMissing

PTY_LINE = re.compile(r"char device redirected to (/dev/pts/\d+)")
QMP_PREFIX = "tinyhil-qmp-"
QMP_DIR = re.compile(rf"^{QMP_PREFIX}(?:(\d+)-)?[\w]+$")
QEMU = "qemu-system-arm"
_running: weakref.WeakSet[QemuProcess] = weakref.WeakSet()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class QemuProcess:
    def __init__(self, machine: str, elf: Path, icount_shift: int, boot_timeout: float = 10.0,
                 serial_index: int = 0):
        self.machine = machine
        # QEMU gives its -serial options to the board's UARTs in order: the
        # link's UART gets the pty, the ones before it are disconnected.
        self.serial_index = serial_index
        self.elf = Path(elf)
        self.icount_shift = icount_shift
        self.boot_timeout = boot_timeout
        self.process: subprocess.Popen | None = None
        self.pty: str = ""
        self.console_lines: list[str] = []
        # QEMU's machine protocol (QMP) on a private socket: a reset button.
        # The directory is named after this process, so that the next tinyhil
        # removes it if this one is killed before it can (see stale_qmp_dirs).
        _clean_stale_qmp_dirs()
        self._qmp_dir = tempfile.mkdtemp(prefix=f"{QMP_PREFIX}{os.getpid()}-")
        self.qmp_path = os.path.join(self._qmp_dir, "qmp.sock")

    @property
    def command(self) -> list[str]:
        return [
            QEMU, "-machine", self.machine, "-display", "none", "-monitor", "none",
            *["-serial", "null"] * self.serial_index, "-serial", "pty",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            # Deterministic instruction counting; sleep=on lets an idle guest
            # (WFI while waiting for the host) cost no host CPU.
            "-icount", f"shift={self.icount_shift},align=off,sleep=on",
            "-kernel", str(self.elf),
        ]

    def start(self) -> str:
        if not shutil.which(QEMU):
            raise ToolMissing(f"{QEMU} not found: run `make setup` (scripts/setup.sh)")
        # QEMU prints the pty's name on stdout, which stdio buffers fully
        # when it is a pipe: give it a terminal of its own so it arrives now.
        os.makedirs(self._qmp_dir, exist_ok=True)
        console, console_child = os.openpty()
        # QEMU dies with tinyhil (PR_SET_PDEATHSIG). util-linux's setpriv sets
        # it without Python code in the forked child: code there runs the
        # fork handlers of libraries such as gRPC (labgrid), which can crash it.
        setpriv = shutil.which("setpriv")
        command = [setpriv, "--pdeathsig", "KILL", "--", *self.command] if setpriv else self.command
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=console_child, stderr=subprocess.STDOUT,
            preexec_fn=None if setpriv else _die_with_parent,
        )
        os.close(console_child)
        _running.add(self)
        found = threading.Event()
        threading.Thread(target=self._read_console, args=(console, found), daemon=True).start()
        if not found.wait(self.boot_timeout) or not self.pty:
            code = self.process.poll()
            self.stop()
            message = (f"QEMU ({self.machine}) did not open a serial pty within "
                       f"{self.boot_timeout:g} s" + (f" (it exited with {code})" if code is not None
                                                      else "") + ": " + " ".join(self.console_lines[-5:]))
            if code is not None and code > 0:
                raise ToolMissing(message)  # QEMU refused its command line: a set-up problem
            # Killed by a signal, or hung: the board's recovery steps start it again.
            raise BoardNotResponding(message)
        return self.pty

    def _read_console(self, console: int, found: threading.Event) -> None:
        with os.fdopen(console, "rb", buffering=0) as stream:
            pending = b""
            while True:
                try:
                    chunk = stream.read(4096)
                except OSError as error:  # EIO: QEMU exited and closed its terminal
                    self.console_lines.append(f"[console: {error}]")
                    break
                if not chunk:
                    self.console_lines.append("[console: end]")
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace").strip()
                    self.console_lines.append(line)
                    match = PTY_LINE.search(line)
                    if match:
                        self.pty = match.group(1)
                        found.set()
        found.set()  # QEMU exited

    def system_reset(self, timeout: float = 5.0) -> None:
        """Presses the board's reset: the firmware restarts, QEMU and the pty stay."""
        self.qmp("system_reset", timeout)

    def qmp(self, command: str, timeout: float = 5.0) -> dict:
        if not self.alive():
            raise OSError(f"QEMU ({self.machine}) is not running")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.qmp_path)
            stream = sock.makefile("rwb")
            json.loads(stream.readline())  # greeting
            for execute in ("qmp_capabilities", command):
                stream.write(json.dumps({"execute": execute}).encode() + b"\n")
                stream.flush()
                while True:  # skip asynchronous events until the command's answer
                    answer = json.loads(stream.readline())
                    if "return" in answer or "error" in answer:
                        break
                if "error" in answer:
                    raise OSError(f"QMP {execute}: {answer['error']}")
            return answer["return"]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        shutil.rmtree(self._qmp_dir, ignore_errors=True)  # also when QEMU never started
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        _running.discard(self)

    def __enter__(self) -> QemuProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _socket_dead(path: str) -> bool:
    """A QMP socket no QEMU listens on (or none at all)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return True
        except OSError:
            return False
    return False


def stale_qmp_dirs(tmp: str | None = None) -> list[Path]:
    """QMP directories of tinyhil processes that are gone (killed before they
    could remove them). Older tinyhils named them without their pid: those
    whose socket no QEMU answers on are stale too."""
    stale = []
    root = Path(tmp or tempfile.gettempdir())
    for path in root.glob(f"{QMP_PREFIX}*"):
        match = QMP_DIR.match(path.name)
        try:
            if not match or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        pid = match.group(1)
        if (not _alive(int(pid))) if pid else _socket_dead(str(path / "qmp.sock")):
            stale.append(path)
    return stale


_cleaned = False


def _clean_stale_qmp_dirs() -> None:
    global _cleaned
    if not _cleaned:
        _cleaned = True
        for path in stale_qmp_dirs():
            shutil.rmtree(path, ignore_errors=True)


@atexit.register
def _stop_all() -> None:
    for qemu in list(_running):
        qemu.stop()


def wait_for_pty(path: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
