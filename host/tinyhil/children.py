"""Child processes that never outlive tinyhil, even when it is killed with SIGKILL
(no atexit, no finally runs then): the kernel ends them (PR_SET_PDEATHSIG)."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import threading

PR_SET_PDEATHSIG = 1
# The shell that stands between tinyhil and a tool: when tinyhil dies the
# kernel sends it SIGTERM, and it kills its whole process group, i.e. the
# tool and everything the tool started (pio's scons, the compilers).
_GROUP_KEEPER = 'trap "kill -KILL 0" TERM; "$@" & wait $!'


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> None:
    """Asks the kernel to send `sig` to this process when its parent dies; in a
    worker process, at its start. If the parent died before (`parent_pid` is
    no longer our parent), exits at once."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, sig)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def _preexec_die_with_parent() -> None:  # runs in the child between fork and exec
    die_with_parent(sig=signal.SIGTERM)


def dies_with_us(command: list[str]) -> list[str]:
    """`command` (a tool that starts nothing of its own, e.g. a compiler) set to
    get SIGKILL when tinyhil dies, through util-linux's setpriv where there is one."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


def group_command(command: list[str]) -> tuple[list[str], dict]:
    """`command` as a process group of its own that dies, whole, with tinyhil:
    the argv and the Popen keyword arguments to start it with."""
    keeper = ["sh", "-c", _GROUP_KEEPER, "sh", *command]
    # util-linux's setpriv sets PR_SET_PDEATHSIG without Python code in the
    # forked child (see device/qemu.py for why that matters).
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", "TERM", "--", *keeper], {"start_new_session": True}
    return keeper, {"start_new_session": True, "preexec_fn": _preexec_die_with_parent}


_groups: set[int] = set()  # process groups of run_group still running
_groups_lock = threading.Lock()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_group(command: list[str], **popen_kwargs) -> subprocess.CompletedProcess:
    """subprocess.run for a tool that starts processes of its own: all of them
    end with tinyhil, killed or interrupted (Ctrl-C kills the whole group)."""
    argv, extra = group_command(command)
    with subprocess.Popen(argv, **extra, **popen_kwargs) as process:
        with _groups_lock:
            _groups.add(process.pid)
        try:
            stdout, stderr = process.communicate()
        except BaseException:
            _kill_group(process.pid)
            raise
        finally:
            with _groups_lock:
                _groups.discard(process.pid)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def kill_groups() -> None:
    """Ends every run_group of this process now, whichever thread waits on it
    (a builder thread's `pio run` when the main thread is interrupted): in its
    own session, Ctrl-C in the terminal does not reach it."""
    with _groups_lock:
        for pid in list(_groups):
            _kill_group(pid)


__all__ = ["die_with_parent", "dies_with_us", "group_command", "kill_groups", "run_group"]
