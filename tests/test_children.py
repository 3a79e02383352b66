"""What tinyhil starts dies with it, even when it is killed with SIGKILL: the
PlatformIO build (pio, scons, compilers), the model-generation workers; and
the QMP directories a killed tinyhil leaves in /tmp go at the next start."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import processes_matching

DEADLINE_S = 120  # generous: the machine may be loaded; nothing here measures time


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    # a zombie waiting for its (new) parent to reap it is dead all the same
    return not (status.exists() and status.read_text().split(") ")[-1].startswith("Z"))


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _start_host(code: str, tmp_path: Path) -> subprocess.Popen:
    """A tinyhil process of its own (killed with SIGKILL by the test)."""
    env = dict(os.environ, TINYHIL_CACHE_DIR=str(tmp_path / "cache"), TMPDIR=str(tmp_path))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_platformio_build_dies_with_a_killed_host(tmp_path):
    """`pio run` and what it starts (scons, gcc) must not outlive tinyhil."""
    pid_file = tmp_path / "grandchild.pid"
    fake_pio = tmp_path / "pio"  # stands for PlatformIO: starts a compiler-like grandchild
    fake_pio.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {pid_file}\nwait\n")
    fake_pio.chmod(0o755)
    host = _start_host(f"""
        import os
        from pathlib import Path
        from tinyhil.board_catalog import get_board
        from tinyhil.image import firmware
        firmware.pio_executable = lambda: {str(fake_pio)!r}
        firmware._run_pio(get_board("qemu-m4"), dict(os.environ), Path({str(tmp_path / "build.log")!r}), None)
    """, tmp_path)
    _wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), "the build never started")
    compiler = int(pid_file.read_text())
    assert _alive(compiler)
    host.kill()
    host.wait()
    try:
        _wait_for(lambda: not _alive(compiler), "the build outlived the killed tinyhil")
    finally:
        if _alive(compiler):
            os.kill(compiler, signal.SIGKILL)


def _spawned_workers(parent: int) -> list[int]:
    return processes_matching("spawn_main", parent)


def test_model_generation_workers_die_with_a_killed_host(tmp_path):
    host = _start_host("""
        import time
        from tinyhil.models.single_op import _run_jobs
        _run_jobs({"slow": (time.sleep, 600)}, 1, None)  # a conversion that takes long
    """, tmp_path)
    workers = []

    def started() -> bool:
        workers[:] = _spawned_workers(host.pid)
        return bool(workers)

    _wait_for(started, "no worker started")
    time.sleep(1)  # let the worker get into its job (past its initializer)
    _kill_host_then_see_workers_end(host, workers)


def _kill_host_then_see_workers_end(host: subprocess.Popen, workers: list[int]) -> None:
    """SIGKILL the tinyhil `host`; its model workers must end with it (killed here if not)."""
    host.kill()
    host.wait()
    try:
        _wait_for(lambda: not any(_alive(w) for w in workers), "a worker outlived the killed tinyhil")
    finally:
        for worker in workers:
            if _alive(worker):
                os.kill(worker, signal.SIGKILL)


def test_model_preparing_workers_outlive_the_thread_that_started_them_not_the_host(tmp_path):
    """prepare_direct_models' workers start from whichever thread takes the
    first models (the runner's packing thread); they serve on after that
    thread ends (a kernel parent-death signal would kill them then, possibly
    holding the pool's result lock: tinyhil hung at exit), and end with a
    killed tinyhil all the same."""
    done = tmp_path / "taken"
    host = _start_host(f"""
        import threading, time
        from tinyhil.models.single_op import prepare_direct_models
        from tinyhil.spaces import make_space
        ops = make_space("timenas", 100, 6, 4).op_configs()

        def started_elsewhere(op_list):
            stream = prepare_direct_models(op_list, workers=2)
            first = []
            starter = threading.Thread(target=lambda: first.append(next(stream)))
            starter.start()
            starter.join()  # the thread that started the workers has ended
            return first + list(stream)

        taken = len(started_elsewhere(ops[:200]))
        stream = prepare_direct_models(ops[200:400], workers=2)
        threading.Thread(target=lambda: next(stream)).start()  # workers waiting, the stream unfinished
        time.sleep(1)
        open({str(done)!r}, "w").write(str(taken))
        time.sleep(600)
    """, tmp_path)
    _wait_for(lambda: done.is_file() and done.read_text(), "the models were not all prepared")
    assert done.read_text() == "200"
    workers = _spawned_workers(host.pid)
    assert workers
    _kill_host_then_see_workers_end(host, workers)


def test_qmp_directories_of_a_killed_host_are_removed_at_the_next_start(tmp_path, monkeypatch):
    from tinyhil.device import qemu

    host = _start_host("""
        import os, signal
        from tinyhil.device.qemu import QemuProcess
        QemuProcess("mps2-an386", "firmware.elf", 7)  # makes its QMP directory
        os.kill(os.getpid(), signal.SIGKILL)  # killed: no clean-up runs
    """, tmp_path)
    host.wait()
    (left,) = tmp_path.glob("tinyhil-qmp-*")
    legacy_stale = tmp_path / "tinyhil-qmp-abc123xy"  # an older tinyhil's, its QEMU gone
    legacy_stale.mkdir()
    (legacy_stale / "qmp.sock").touch()  # a socket file nobody listens on: not even a socket
    monkeypatch.setattr(qemu, "_cleaned", False, raising=False)
    monkeypatch.setattr(qemu.tempfile, "tempdir", str(tmp_path))
    mine = qemu.QemuProcess("mps2-an386", "firmware.elf", 7)
    other = qemu.QemuProcess("mps2-an386", "firmware.elf", 7)
    assert not left.exists() and not legacy_stale.exists()
    # those of a living tinyhil stay
    assert Path(mine._qmp_dir).is_dir() and Path(other._qmp_dir).is_dir()
    mine.stop()  # QEMU never started: its directory goes all the same
    other.stop()
    assert not list(tmp_path.glob("tinyhil-qmp-*"))


def _detached(command: list[str], env: dict) -> int:
    """The pid of `command` started in a session of its own by a parent that exits
    at once: the process is no descendant of the test, like a user's `tinyhil
    deploy` run alongside, or a QEMU outliving the tinyhil a test killed."""
    pid_file = Path(env["TMPDIR"]) / f"detached-{len(os.listdir(env['TMPDIR']))}.pid"
    starter = ("import subprocess, sys; p = subprocess.Popen(sys.argv[2:], start_new_session=True, "
               "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); open(sys.argv[1], 'w').write(str(p.pid))")
    subprocess.run([sys.executable, "-c", starter, str(pid_file), *command], env=env, check=True)
    return int(pid_file.read_text())


def test_leak_checks_see_only_the_test_s_own_processes(tmp_path, own_processes):
    """A QEMU of the same checkout that the test did not start (the user's own) is
    no leak; one the test's process tree left behind is, even once reparented."""
    images = tmp_path / "cache" / "images"
    pattern = f"qemu-system-arm.*{images}"
    fake_qemu = [sys.executable, "-c", "import time; time.sleep(600)", "qemu-system-arm", "-kernel",
                 str(images / "a" / "firmware.elf")]
    env = dict(os.environ, TMPDIR=str(tmp_path))
    users = _detached(fake_qemu, env)
    leaked = _detached(fake_qemu, own_processes.env(env))
    child = subprocess.Popen(fake_qemu)  # the test's own child: a descendant
    try:
        # what the old check saw (a loaded machine may show a just-started process a moment late)
        _wait_for(lambda: set(processes_matching(pattern)) == {users, leaked, child.pid},
                  "the three stand-in QEMUs did not all show in /proc")
        assert sorted(own_processes.matching(pattern)) == sorted([leaked, child.pid])
        assert own_processes.matching(f"qemu-system-arm.*{tmp_path / 'elsewhere'}") == []
    finally:
        for pid in (users, leaked, child.pid):
            os.kill(pid, signal.SIGKILL)
        child.wait()
    _wait_for(lambda: not _alive(users) and not _alive(leaked), "the stand-in QEMUs did not end")
    assert own_processes.matching(pattern) == []
