"""The local backend: a thread per board of this host, a work queue per lane.

Boards of one lane are interchangeable and share its queue: two emulated
qemu-m4 boards take jobs from it in turn and finish about twice as fast.
Measurements are handed to the caller's thread as they arrive (`measure` is
a generator), so the caller stays the only writer of what is measured.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from tinyhil.errors import TinyhilError
from tinyhil.execute.inventory import FarmBoard
from tinyhil.execute.jobs import ExecStats, Job, JobReport, Result, make_job, run_job

_END = object()


class LocalExecutor:
    def __init__(self, boards: list[FarmBoard], timeout: float = 30.0,
                 open_device: Callable[[FarmBoard], object] | None = None):
        self.boards = boards
        self.timeout = timeout
        self.open_device = open_device or (lambda board: board.open(self.timeout))
        self.stats = ExecStats()
        self._lock = threading.Lock()  # the stats, added to by every board's thread

    def lanes(self) -> set[str]:
        return {b.lane for b in self.boards}

    def measure_images(self, board, images, repeats: int, warmup: int) -> Iterator:
        """Measurements of items packed into images, one job per image, on this host's boards of the lane."""
        for result in self.measure(make_job(board.name, image, repeats, warmup) for image in images):
            yield result.measurement

    def measure(self, jobs: Iterable[Job]) -> Iterator[Result]:
        """Runs every job on a board of its lane (jobs may still be coming: each
        goes to its lane's queue as it comes); yields each measurement as it
        arrives. Closing the generator (the caller could not keep a result)
        stops the boards after the measurement they are making."""
        self.stats = ExecStats()
        if isinstance(jobs, (list, tuple)):  # known up front: a lane without boards is refused first
            self._check_lanes({j.lane for j in jobs})
        queues: dict[str, queue.Queue] = {lane: queue.Queue() for lane in self.lanes()}
        results: queue.Queue = queue.Queue()
        stop = threading.Event()
        workers = [threading.Thread(target=self._work, args=(board, queues[board.lane], results, stop),
                                    name=f"farm-{board.name}", daemon=True) for board in self.boards]

        def feed() -> None:
            try:
                for job in jobs:
                    if stop.is_set():
                        break
                    self._check_lanes({job.lane})
                    self.stats.submitted[job.key] = time.time()
                    queues[job.lane].put(job)
            except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
                results.put(error)
            finally:
                for board in self.boards:  # each board's thread ends when its lane's queue is done
                    queues[board.lane].put(_END)

        started = time.monotonic()
        feeder = threading.Thread(target=feed, name="farm-feed", daemon=True)
        feeder.start()
        for worker in workers:
            worker.start()
        running = len(workers)
        try:
            while running:
                entry = results.get()
                if entry is _END:
                    running -= 1
                elif isinstance(entry, BaseException):
                    raise entry
                else:
                    self.stats.cases_by_board[entry.board] += 1
                    yield entry
        finally:
            stop.set()
            feeder.join()
            for worker in workers:
                worker.join()
            self.stats.wall_s = time.monotonic() - started

    def _check_lanes(self, lanes: set[str]) -> None:
        missing = sorted(lanes - self.lanes())
        if missing:
            raise TinyhilError(f"no board in the inventory for {', '.join(missing)}")

    def _work(self, board: FarmBoard, jobs: queue.Queue, results: queue.Queue,
              stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                job = jobs.get()
                if job is _END:
                    return
                report = JobReport(board.name)
                measurements = run_job(job, board.config, lambda: self.open_device(board), report)
                try:
                    for measurement in measurements:
                        results.put(Result(board.name, job.lane, measurement))
                        if stop.is_set():
                            break
                finally:
                    measurements.close()
                    with self._lock:
                        self.stats.add(report)
        except BaseException as error:  # noqa: BLE001 - a bug in a worker: the caller hears of it
            results.put(error)
        finally:
            results.put(_END)
