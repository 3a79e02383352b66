"""The unit of work: a job is one firmware image's items for a lane, and
running it on a board gives one measurement per item.

A lane is the set of interchangeable boards that may run a job: boards of one
PlatformIO environment (local threads or cluster workers alike), or a single
pinned board (env@name). Both backends (local.py, cluster.py) run a job with
`run_job`, so a job measures the same wherever it runs.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tinyhil.board_catalog import BoardConfig
from tinyhil.errors import BuildFailed, ImageTooLarge, InvalidModel, UnsupportedOp
from tinyhil.measure.runner import ImageRunner, Item, Measurement
from tinyhil.verdict import SKIPPED


@dataclass(frozen=True)
class Job:
    lane: str  # an environment, or env@board for a board that runs its one (pinned) image
    items: tuple[Item, ...]  # one image's benchmarks, in the order they run
    repeats: int = 3
    warmup: int = 1
    key: str = ""  # names the job: the same items, the same key (see job_key)
    image_items: tuple[Item, ...] = ()  # a pinned lane's whole image, of which `items` are measured

    @property
    def environment(self) -> str:
        return self.lane.split("@", 1)[0]


def job_key(lane: str, items: tuple[Item, ...], repeats: int, warmup: int, run: str = "",
            image_items: tuple[Item, ...] = ()) -> str:
    """A stable name for a job (Dask's task key; the same work, the same name)."""
    digest = hashlib.sha256(f"{lane}\0{repeats}\0{warmup}\0{run}\0{len(image_items)}".encode())
    for item in (*items, *image_items):
        digest.update(f"{item.name}\0{item.seed}\0".encode())
        digest.update(hashlib.sha256(item.model.flatbuffer).digest())
    return f"tinyhil-job-{lane}-{digest.hexdigest()[:20]}"


def make_job(lane: str, items, repeats: int, warmup: int, run: str = "", image_items=()) -> Job:
    items, image_items = tuple(items), tuple(image_items)
    return Job(lane, items, repeats, warmup, job_key(lane, items, repeats, warmup, run, image_items), image_items)


@dataclass
class JobReport:
    """What a board did with a job, besides its measurements."""

    board: str  # the board that ran it (worker/board on a cluster)
    job: str = ""
    build_s: float = 0.0
    boot_s: float = 0.0
    measure_s: float = 0.0
    recoveries: Counter = field(default_factory=Counter)  # recovery step -> count
    error: str = ""  # what broke the job, if anything (its items are then errors or skips)
    firmware: str = ""  # the firmware fingerprint its image was built with
    started: float = 0.0  # wall clock (time.time) when the board began the job, and ended it
    ended: float = 0.0


@dataclass
class ExecStats:
    """A run of jobs, summed over its boards."""

    wall_s: float = 0.0
    jobs_by_board: Counter = field(default_factory=Counter)
    cases_by_board: Counter = field(default_factory=Counter)  # items delivered, by board
    recoveries: Counter = field(default_factory=Counter)  # (board, step) -> count
    errors: list[str] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)  # build, boot, measure

    reports: list = field(default_factory=list)  # (JobReport, when its results reached the caller)
    submitted: dict = field(default_factory=dict)  # job key -> when it was handed to the executor

    def add(self, report: JobReport, received: float = 0.0) -> None:
        self.reports.append((report, received or time.time()))
        self.jobs_by_board[report.board] += 1
        self.seconds.update(build=report.build_s, boot=report.boot_s, measure=report.measure_s)
        for step, n in report.recoveries.items():
            self.recoveries[(report.board, step)] += n
        if report.error:
            self.errors.append(f"{report.board}: {report.error}")


@dataclass(frozen=True)
class Result:
    """One measurement, with the board that made it."""

    board: str
    lane: str
    measurement: Measurement


def of_the_case(error: Exception) -> bool:
    """Wrong for the items themselves (cannot be built, does not fit): an error.
    Anything else is the lab failing (a place, a tool, a bug): skipped, so a
    resumed run retries it."""
    return isinstance(error, (BuildFailed, ImageTooLarge, UnsupportedOp, InvalidModel))


def run_job(job: Job, config: BoardConfig, open_device: Callable[[], object],
            report: JobReport) -> Iterator[Measurement]:
    """Measures a job's items on one board, one measurement per item, whatever
    breaks; `report` is filled in as it goes (timing, recoveries, error)."""
    devices = []

    def opened():
        device = open_device()
        devices.append(device)
        return device

    runner = ImageRunner(config, job.repeats, max_per_image=len(job.items), open_device=opened,
                         warmup=job.warmup)
    done = set()
    report.started = time.time()
    try:
        measurements = (runner.run_in_image(list(job.image_items), list(job.items)) if job.image_items
                        else runner.run(list(job.items)))
        for measurement in measurements:
            done.add(measurement.item.name)
            if measurement.image is not None:
                report.firmware = measurement.image.firmware
            yield measurement
    except GeneratorExit:
        raise
    except Exception as error:  # noqa: BLE001 - whatever broke, the items are accounted for
        status = f"error: {error}" if of_the_case(error) else f"{SKIPPED}: {type(error).__name__}: {error}"
        report.error = f"{type(error).__name__}: {error}"
        for item in job.items:
            if item.name not in done:
                yield Measurement(item, status)
    finally:
        report.ended = time.time()
        report.job = job.key
        report.build_s += runner.timing.build_s
        report.boot_s += runner.timing.boot_s
        report.measure_s += runner.timing.measure_s
        for device in devices:
            report.recoveries.update(device.recoveries)
