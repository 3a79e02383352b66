"""A cluster on this host's loopback: a Dask scheduler and `tinyhil worker`s as
separate processes, each worker with its own working directory and image cache
(as on hosts of their own). Tests and `tinyhil bench cluster` use it; every
process it starts is stopped when it closes (SIGKILL if it must).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tinyhil.execute.security import ClusterError, TlsFiles


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class LoopbackCluster:
    def __init__(self, work_dir: Path, env: dict | None = None, startup_s: float = 180.0):
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        host_dir = str(Path(__file__).resolve().parents[2])  # tinyhil's own, for the scheduler too
        base = dict(os.environ if env is None else env)
        base["PYTHONPATH"] = os.pathsep.join(filter(None, [host_dir, base.get("PYTHONPATH", "")]))
        self.env = base
        self.startup_s = startup_s
        self.address = ""
        self.scheduler: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}

    def start_scheduler(self, tls: TlsFiles | None = None) -> str:
        port = free_port()
        command = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                   "--port", str(port), "--no-dashboard"]
        if tls is not None:
            command += ["--protocol", "tls", "--tls-ca-file", str(tls.ca), "--tls-cert", str(tls.cert),
                        "--tls-key", str(tls.key)]
        log = open(self.work_dir / "scheduler.log", "w")
        self.scheduler = subprocess.Popen(command, cwd=self.work_dir, env=self.env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_s
        while not _listening(port):
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"the scheduler did not start: {self._tail(self.work_dir / 'scheduler.log')}")
            time.sleep(0.1)
        self.address = f"{'tls' if tls else 'tcp'}://127.0.0.1:{port}"
        return self.address

    def add_worker(self, name: str, boards: str = "qemu-m4=1", tls: TlsFiles | None = None,
                   env: dict | None = None, wait: bool = True) -> subprocess.Popen:
        """A `tinyhil worker` in work_dir/NAME, its images in work_dir/NAME/cache."""
        home = self.work_dir / name
        home.mkdir(exist_ok=True)
        command = [sys.executable, "-m", "tinyhil", "worker", "--scheduler", self.address, "--boards", boards,
                   "--name", name, "--local-directory", str(home / "dask")]
        if tls is not None:
            command += ["--tls-ca-file", str(tls.ca), "--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
        log_path = home / "worker.log"
        process = subprocess.Popen(command, cwd=home, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                                   env={**self.env, "TINYHIL_CACHE_DIR": str(home / "cache"), "COLUMNS": "200",
                                        **(env or {})}, start_new_session=True)
        self.workers[name] = process
        if wait:
            self.wait_joined(name)
        return process

    def wait_joined(self, name: str) -> None:
        log_path = self.work_dir / name / "worker.log"
        deadline = time.monotonic() + self.startup_s
        while "joined" not in log_path.read_text(errors="replace"):
            if self.workers[name].poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"worker {name} did not join: {self._tail(log_path)}")
            time.sleep(0.2)

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.workers[name]
        os.kill(process.pid, sig)
        process.wait(timeout=30)

    def stop_scheduler(self, sig: int = signal.SIGKILL) -> None:
        if self.scheduler is not None and self.scheduler.poll() is None:
            os.kill(self.scheduler.pid, sig)
            self.scheduler.wait(timeout=30)

    @staticmethod
    def _tail(path: Path, lines: int = 12) -> str:
        try:
            return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return f"(no log at {path})"

    def close(self) -> None:
        """Workers first (SIGTERM: they stop their boards), then the scheduler;
        whatever does not end in 20 s is killed, with its process group."""
        for process in [*self.workers.values(), self.scheduler]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [*self.workers.values(), self.scheduler]:
            if process is None:
                continue
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            try:
                os.killpg(process.pid, signal.SIGKILL)  # what it started (QEMU, builds) goes with it
            except (ProcessLookupError, PermissionError):
                pass

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
