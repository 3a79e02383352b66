"""`tinyhil worker`: a Dask worker that owns its host's boards.

The boards (an inventory, or N emulated boards of an environment) are the
worker's Dask resources, one per board and lane (`qemu-m4=2`), so the
scheduler hands a job only to a worker with a free board of its lane, and
the worker has a thread per board. A job runs here as it runs on a local
farm (jobs.run_job): the image is built (or taken from the client, checked
against this host's firmware fingerprint), booted or flashed, and measured;
the measurements go back to the client, which alone writes them down.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import signal
import socket
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from tinyhil.execute.inventory import FarmBoard
from tinyhil.execute.jobs import Job, JobReport, run_job
from tinyhil.execute.security import ClusterError

_POOL: BoardPool | None = None  # the boards of this worker process (set by serve)


@dataclass(frozen=True)
class ShippedImage:
    """An image built by the client, for a worker whose firmware is the same."""

    image_id: str
    firmware: str
    elf: bytes


class BoardPool:
    """The worker's boards by lane; a job takes a free one for its duration."""

    def __init__(self, boards: list[FarmBoard], name: str, timeout: float = 30.0):
        from tinyhil.image.fingerprint import firmware_fingerprint
        from tinyhil.image.firmware import tflm_dir

        self.name = name
        self.timeout = timeout
        self.boards = boards
        self.free: dict[str, queue.Queue] = {}
        for board in boards:
            self.free.setdefault(board.lane, queue.Queue()).put(board)
        tree = tflm_dir()
        # what this host's images of each environment are built from (image/fingerprint.py)
        self.firmware = {b.environment: firmware_fingerprint(b.config, tree) for b in boards}

    def resources(self) -> dict[str, float]:
        return {lane: float(q.qsize()) for lane, q in self.free.items()}

    def describe(self) -> dict:
        return {"name": self.name, "host": socket.gethostname(), "firmware": dict(self.firmware),
                "boards": [{"name": b.name, "lane": b.lane, "environment": b.environment, "kind": b.kind}
                           for b in self.boards]}

    @contextmanager
    def take(self, lane: str):
        if lane not in self.free:
            raise ClusterError(f"worker {self.name} has no board of lane {lane}")
        board = self.free[lane].get(timeout=600)  # the scheduler's resources make this immediate
        try:
            yield board
        finally:
            self.free[lane].put(board)


def describe_worker() -> dict | None:
    """This worker's boards and firmware fingerprints (the client asks every worker)."""
    return None if _POOL is None else _POOL.describe()


def run_on_worker(job: Job, image: ShippedImage | None = None) -> tuple[JobReport, list]:
    """The task the client submits: a job measured on one of this worker's boards.
    Measurements go back without their models and image spec (the client has them)."""
    from tinyhil.image.elf import compiler_of

    if _POOL is None:
        raise ClusterError("this Dask worker has no tinyhil boards: start workers with `tinyhil worker`")
    with _POOL.take(job.lane) as board:
        report = JobReport(f"{_POOL.name}/{board.name}")
        if image is not None:  # built by the client: taken only if this host builds the same
            from tinyhil.image.shipped import install

            install(board.config, image.image_id, image.firmware, image.elf)
        measurements = list(run_job(job, board.config, lambda: board.open(_POOL.timeout), report))
    compilers: dict[Path, str] = {}
    out = []
    for m in measurements:
        built = m.image
        if built is not None:
            if built.elf not in compilers:
                compilers[built.elf] = compiler_of(built.elf)
            built = replace(built, spec=None, compiler=compilers[built.elf])
        out.append(replace(m, item=replace(m.item, model=None), image=built))
    return report, out


def serve(scheduler: str, boards: list[FarmBoard], name: str, security=None,
          local_directory: Path | None = None, timeout: float = 30.0, on_ready=None) -> None:
    """Runs a Dask worker with these boards until it is stopped (SIGTERM, Ctrl-C)
    or its scheduler goes away."""
    global _POOL
    from distributed import Worker

    _POOL = BoardPool(boards, name, timeout)
    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines would bury tinyhil's

    async def main() -> None:
        worker = Worker(scheduler, nthreads=len(boards), resources=_POOL.resources(), name=name,
                        security=security, dashboard=False,
                        local_directory=str(local_directory) if local_directory else None)
        try:
            await worker
        except (OSError, RuntimeError) as error:  # Dask: "Worker failed to start", its cause named
            cause = error.__cause__ or error
            raise ClusterError(f"worker {name} could not join the scheduler at {scheduler}: {cause}") from error
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM,):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.close()))
        if on_ready is not None:
            on_ready(worker.address, _POOL.describe())
        await worker.finished()

    asyncio.run(main())
