"""Scheduling over a farm: one worker per board, a work queue per lane.

Work is cut into jobs of a few cases (one firmware image each). Boards of the
same PlatformIO environment are interchangeable, so they share one queue (a
lane): two emulated qemu-m4 boards take jobs from it in turn and finish about
twice as fast. A board tinyhil cannot flash (labgrid) is a lane of its own,
with one job: its whole suite in the one image it runs. Every measurement is
handed to `on_result` (under a lock) the moment it arrives, so the caller can
write it down at once.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tinyhil.errors import BuildFailed, ImageTooLarge, InvalidModel, TinyhilError, UnsupportedOp
from tinyhil.measure.runner import ImageRunner, Measurement
from tinyhil.regress.inventory import FarmBoard
from tinyhil.regress.suite import Case
from tinyhil.verdict import SKIPPED


@dataclass(frozen=True)
class Job:
    lane: str
    cases: tuple[Case, ...]


@dataclass
class FarmStats:
    wall_s: float = 0.0
    jobs_by_board: Counter = field(default_factory=Counter)
    cases_by_board: Counter = field(default_factory=Counter)
    recoveries: Counter = field(default_factory=Counter)  # (board, step) -> count
    errors: list[str] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)  # build, boot, measure: summed over boards


def make_jobs(cases_by_lane: dict[str, list[Case]], per_image: int,
              pinned: frozenset[str] = frozenset()) -> dict[str, list[Job]]:
    """Jobs of at most `per_image` cases and about an eighth of the lane's
    work each (by the baselines' cycles), longest first, so that the boards
    finish together rather than one waiting out another's heavy last job.
    They do not depend on how many boards take them, so a job's image is the
    same, and cached, whichever board runs it. A pinned lane has one job."""
    jobs = {}
    for lane, cases in cases_by_lane.items():
        cases = longest_first(cases)
        if lane in pinned:
            jobs[lane] = [Job(lane, tuple(cases))] if cases else []
            continue
        cost = {c.case_id: _cost(c, cases) for c in cases}
        cap = sum(cost.values()) / JOBS_PER_LANE
        lane_jobs, current, spent = [], [], 0.0
        for case in cases:
            if current and (len(current) >= per_image or spent + cost[case.case_id] > cap):
                lane_jobs.append(Job(lane, tuple(current)))
                current, spent = [], 0.0
            current.append(case)
            spent += cost[case.case_id]
        if current:
            lane_jobs.append(Job(lane, tuple(current)))
        jobs[lane] = lane_jobs
    return jobs


JOBS_PER_LANE = 8  # work is cut at least this fine (fewer if per_image allows)


def _cost(case: Case, cases: list[Case]) -> float:
    """A case's expected work: its baseline cycles, else the median of the lane's."""
    if case.baseline is not None:
        return case.baseline.cycles
    known = sorted(c.baseline.cycles for c in cases if c.baseline is not None)
    return known[len(known) // 2] if known else 1.0


def longest_first(cases: list[Case]) -> list[Case]:
    return sorted(cases, key=lambda c: -_cost(c, cases))


def lane_image(board: FarmBoard, cases: list[Case]):
    """The one image a pinned board must run for its lane's suite (built, cached)."""
    from tinyhil.errors import TinyhilError
    from tinyhil.image.firmware import build_image
    from tinyhil.measure.runner import pack

    items = [case.item for case in longest_first(cases)]  # the order make_jobs gives
    if len(pack(items, board.config, len(items))) > 1:
        raise TinyhilError(f"the suite of lane {board.lane} does not fit one image of "
                           f"{board.environment}: sample fewer LUT rows for a pinned board")
    runner = ImageRunner(board.config, max_per_image=len(items))
    return build_image(runner.image_spec(items), board.config)


class Farm:
    def __init__(self, boards: list[FarmBoard], repeats: int = 3, timeout: float = 30.0,
                 on_result: Callable[[FarmBoard, Case, Measurement], None] | None = None,
                 open_device: Callable[[FarmBoard], object] | None = None):
        self.boards = boards
        self.repeats = repeats
        self.timeout = timeout
        self.on_result = on_result or (lambda board, case, m: None)
        self.open_device = open_device or (lambda board: board.open(self.timeout))
        self._lock = threading.Lock()
        self._fatal: list[BaseException] = []
        self._stopping = False

    def run(self, jobs_by_lane: dict[str, list[Job]]) -> FarmStats:
        stats = FarmStats()
        queues: dict[str, queue.Queue] = {}
        for lane, jobs in jobs_by_lane.items():
            queues[lane] = queue.Queue()
            for job in jobs:
                queues[lane].put(job)
        missing = [lane for lane, jobs in jobs_by_lane.items() if jobs
                   and not any(b.lane == lane for b in self.boards)]
        if missing:
            raise TinyhilError(f"no board in the inventory for {', '.join(missing)}")
        started = time.monotonic()
        workers = [threading.Thread(target=self._work, args=(board, queues[board.lane], stats),
                                    name=f"farm-{board.name}")
                   for board in self.boards if board.lane in queues]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        stats.wall_s = time.monotonic() - started
        if self._fatal:
            raise self._fatal[0]
        return stats

    def _work(self, board: FarmBoard, jobs: queue.Queue, stats: FarmStats) -> None:
        try:
            self._take_jobs(board, jobs, stats)
        except _Fatal as fatal:  # results can no longer be written: stop the farm
            self._fatal.append(fatal.__cause__)
            self._stopping = True

    def _deliver(self, board: FarmBoard, case: Case, measurement: Measurement, stats) -> None:
        with self._lock:
            try:
                self.on_result(board, case, measurement)
            except Exception as error:
                raise _Fatal() from error
            stats.cases_by_board[board.name] += 1

    def _take_jobs(self, board: FarmBoard, jobs: queue.Queue, stats: FarmStats) -> None:
        while not self._stopping:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            devices = []

            def open_device():
                device = self.open_device(board)
                devices.append(device)
                return device

            runner = ImageRunner(board.config, self.repeats, max_per_image=len(job.cases),
                                 open_device=open_device)
            by_item = {case.item.name: case for case in job.cases}
            done = set()
            try:
                for measurement in runner.run([case.item for case in job.cases]):
                    case = by_item[measurement.item.name]
                    self._deliver(board, case, measurement, stats)
                    done.add(case.case_id)
            except _Fatal:
                raise
            except Exception as error:  # noqa: BLE001 - whatever broke, the cases are accounted for
                # Wrong for the case itself (it cannot be built, does not fit): an error.
                # The lab failed (a place, a tool, a bug): skipped, so a resumed run retries.
                of_the_case = isinstance(error, (BuildFailed, ImageTooLarge, UnsupportedOp,
                                                 InvalidModel))
                status = f"error: {error}" if of_the_case else \
                    f"{SKIPPED}: {type(error).__name__}: {error}"
                with self._lock:
                    stats.errors.append(f"{board.name}: {type(error).__name__}: {error}")
                for case in job.cases:
                    if case.case_id not in done:
                        self._deliver(board, case, Measurement(case.item, status), stats)
            finally:
                with self._lock:
                    stats.jobs_by_board[board.name] += 1
                    stats.seconds.update(build=runner.timing.build_s, boot=runner.timing.boot_s,
                                         measure=runner.timing.measure_s)
                    for device in devices:
                        for step, n in device.recoveries.items():
                            stats.recoveries[(board.name, step)] += n


class _Fatal(Exception):
    """Writing a result failed: no worker may go on measuring what cannot be kept."""
