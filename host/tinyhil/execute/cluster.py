"""The Dask backend: jobs run on `tinyhil worker` processes, each owning its
host's boards (worker.py); this process (the client) submits them and is the
only one that writes down what they measure.

Each job is a Dask task that needs one board of its lane (a Dask resource),
submitted in the order the jobs come (earlier first: Dask priorities), so the
longest-first cut of the farm holds on a cluster too. Before a lane's first
job the workers are asked for their boards and firmware fingerprints: a lane
whose workers would build different firmware is refused. A worker that dies
mid-job has its job re-run by the scheduler on another worker of the lane; an
item delivered twice is yielded once; a scheduler that goes away ends the run
with a ClusterError, what was delivered before it already written down.
"""
from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator

from tinyhil.board_catalog import BoardConfig, get_board
from tinyhil.execute.inventory import FarmBoard
from tinyhil.execute.jobs import ExecStats, Job, Result, make_job
from tinyhil.execute.security import ClusterError, TlsFiles, check_address, security
from tinyhil.execute.worker import ShippedImage, describe_worker, run_on_worker

RESUME_HINT = ("everything measured before is kept: run the same command again, locally or with --cluster "
               "on a (new) scheduler, to measure the rest")


class DaskExecutor:
    def __init__(self, address: str, tls: TlsFiles | None = None, insecure: bool = False,
                 connect_s: float = 30.0, workers_wait_s: float = 60.0, build_here: bool = False):
        """`build_here`: images are built by this process and shipped to the
        workers (whose firmware fingerprint must be the same), instead of each
        worker building its own."""
        from distributed import Client

        self.address = check_address(address, tls, insecure)
        self.workers_wait_s = workers_wait_s
        self.build_here = build_here
        self.run_token = uuid.uuid4().hex[:12]  # this run's job keys are its own
        self.stats = ExecStats()
        try:
            self.client = Client(self.address, security=security(tls, "client"), timeout=connect_s,
                                 set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise ClusterError(f"cannot reach the Dask scheduler at {self.address}: {error}") from error
        self._firmware: dict[str, str] = {}  # lane -> the firmware its workers agree on

    # ---- what the cluster has ----------------------------------------------------
    def workers(self) -> dict[str, dict]:
        """Worker address -> its boards and firmware (workers without tinyhil boards left out)."""
        try:
            found = self.client.run(describe_worker)
        except (OSError, TimeoutError) as error:
            raise ClusterError(f"the scheduler at {self.address} went away: {error}") from error
        return {address: info for address, info in found.items() if info}

    def farm_boards(self) -> list[FarmBoard]:
        """Every board of every worker, named worker/board (what `regress` cuts lanes from)."""
        deadline = time.monotonic() + self.workers_wait_s
        while not (workers := self.workers()) and time.monotonic() < deadline:
            time.sleep(0.5)
        boards = []
        for info in sorted(workers.values(), key=lambda w: w["name"]):
            for b in info["boards"]:
                boards.append(FarmBoard(f"{info['name']}/{b['name']}", get_board(b["environment"]), b["kind"]))
        if not boards:
            raise ClusterError(f"no `tinyhil worker` has joined the scheduler at {self.address} "
                               f"within {self.workers_wait_s:g} s")
        return boards

    def check_lane(self, lane: str) -> str:
        """The firmware fingerprint of the lane's workers; refused where they differ
        (one lane must not mix two firmwares' figures) or where no worker has the lane."""
        deadline = time.monotonic() + self.workers_wait_s
        while True:
            workers = self.workers()
            having = {info["name"]: info["firmware"].get(lane.split("@", 1)[0]) for info in workers.values()
                      if any(b["lane"] == lane for b in info["boards"])}
            if having or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not having:
            found = sorted({b["lane"] for info in workers.values() for b in info["boards"]})
            raise ClusterError(f"no worker of the cluster at {self.address} has a board of {lane} "
                               f"(its workers' lanes: {', '.join(found) or 'none'})")
        if len(set(having.values())) > 1:
            raise ClusterError(f"the workers of {lane} would build different firmware: "
                               + ", ".join(f"{name} {fp}" for name, fp in sorted(having.items()))
                               + "; a lane must not mix them: give their hosts the same checkout and TFLM "
                                 "tree (`tinyhil doctor` names what each host has)")
        self._firmware[lane] = next(iter(having.values()))
        return self._firmware[lane]

    # ---- running jobs -------------------------------------------------------------
    def measure_images(self, board: BoardConfig, images: Iterable[list], repeats: int,
                       warmup: int) -> Iterator:
        """Measurements of items packed into images (characterize, validate): one job per image."""
        self.check_lane(board.name)
        jobs = (make_job(board.name, image, repeats, warmup, self.run_token) for image in images)
        for result in self.measure(jobs):
            yield result.measurement

    def measure(self, jobs: Iterable[Job]) -> Iterator[Result]:
        """Runs every job on a board of its lane (jobs may still be coming: they are
        submitted as they come); yields each measurement once, as jobs finish."""
        self.stats = ExecStats()
        started = time.monotonic()
        done: queue.Queue = queue.Queue()
        futures: dict[str, tuple[Job, object]] = {}
        stop = threading.Event()

        def feed() -> None:
            try:
                n = 0
                for job in jobs:
                    if stop.is_set():
                        return
                    if job.lane not in self._firmware:
                        self.check_lane(job.lane)
                    image = self._build_here(job) if self.build_here else None
                    self.stats.submitted[job.key] = time.time()
                    future = self.client.submit(run_on_worker, job, image, key=job.key,
                                                resources={job.lane: 1}, priority=-n, retries=0)
                    futures[job.key] = (job, future)
                    future.add_done_callback(done.put)
                    n += 1
                done.put(("fed", n))
            except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
                done.put(("error", error))

        feeder = threading.Thread(target=feed, name="tinyhil-submit", daemon=True)
        feeder.start()
        delivered: set[tuple[str, str]] = set()
        received, total = 0, None
        watch = _LaneWatch(self)
        try:
            while total is None or received < total:
                try:
                    entry = done.get(timeout=1.0)
                except queue.Empty:
                    watch.check({job.lane for job, f in list(futures.values()) if not f.done()})
                    continue
                if isinstance(entry, tuple):
                    if entry[0] == "error":
                        raise entry[1]
                    total = entry[1]
                    continue
                received += 1
                job, _ = futures[entry.key]
                yield from self._results(job, entry, delivered)
        finally:
            stop.set()
            pending = [f for _, f in futures.values() if not f.done()]
            if pending:
                try:
                    self.client.cancel(pending)
                except Exception:  # noqa: BLE001 - a scheduler already gone
                    pass
            feeder.join(timeout=5)
            self.stats.wall_s = time.monotonic() - started

    def _results(self, job: Job, future, delivered: set) -> Iterator[Result]:
        from distributed.client import FutureCancelledError

        try:
            report, measurements = future.result()
        except FutureCancelledError as error:
            raise ClusterError(f"the Dask scheduler at {self.address} went away (job {job.key} cancelled: "
                               f"{getattr(error, 'reason', None) or error}); {RESUME_HINT}") from error
        except ClusterError:
            raise
        except Exception as error:
            name = type(error).__name__
            if name == "KilledWorker":
                raise ClusterError(f"job {job.key} ({len(job.items)} items of {job.lane}) killed every worker "
                                   f"that took it: {error}; {RESUME_HINT}") from error
            raise ClusterError(f"job {job.key} of {job.lane} failed on its worker: {name}: {error}") from error
        if report.firmware and self._firmware.get(job.lane) and report.firmware != self._firmware[job.lane]:
            raise ClusterError(f"{report.board} measured {job.lane} with firmware {report.firmware}, the lane's "
                               f"is {self._firmware[job.lane]}: a lane must not mix two firmwares' figures "
                               "(a worker that joined later?); nothing of that job was recorded")
        self.stats.add(report)
        by_name = {item.name: item for item in job.items}
        for m in measurements:
            key = (job.key, m.item.name)
            if key in delivered or m.item.name not in by_name:
                continue  # delivered twice: recorded once
            delivered.add(key)
            self.stats.cases_by_board[report.board] += 1
            yield Result(report.board, job.lane, _with_item(m, by_name[m.item.name]))
        future.release()

    def _build_here(self, job: Job) -> ShippedImage:
        from tinyhil.image.firmware import build_image
        from tinyhil.measure.runner import ImageRunner

        config = get_board(job.environment)
        image = build_image(ImageRunner(config, max_per_image=len(job.items)).image_spec(list(job.items)), config)
        if image.firmware != self._firmware[job.lane]:
            raise ClusterError(f"this host builds {job.environment} with firmware {image.firmware}, its workers "
                               f"with {self._firmware[job.lane]}: build on the workers (no --build-here)")
        return ShippedImage(image.image_id, image.firmware, image.elf.read_bytes())

    def close(self) -> None:
        try:
            self.client.close(timeout=5)
        except Exception:  # noqa: BLE001 - the scheduler may be gone already
            pass

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _LaneWatch:
    """A job whose lane has no worker left waits for one to join, up to the
    executor's workers_wait_s; then the run ends saying so."""

    def __init__(self, executor: DaskExecutor, every_s: float = 2.0):
        self.executor = executor
        self.every_s = every_s
        self.last = time.monotonic()
        self.lost_since: dict[str, float] = {}

    def check(self, lanes: set[str]) -> None:
        now = time.monotonic()
        if not lanes or now - self.last < self.every_s:
            return
        self.last = now
        try:
            workers = self.executor.client.scheduler_info()["workers"].values()
        except Exception:  # noqa: BLE001 - the scheduler gone: its futures say so
            return
        having = {lane for w in workers for lane, n in (w.get("resources") or {}).items() if n > 0}
        for lane in lanes:
            if lane in having:
                self.lost_since.pop(lane, None)
                continue
            since = self.lost_since.setdefault(lane, now)
            if now - since > self.executor.workers_wait_s:
                raise ClusterError(f"no worker with a board of {lane} is left in the cluster at "
                                   f"{self.executor.address} (none joined within {self.executor.workers_wait_s:g} s); "
                                   f"{RESUME_HINT}")


def _with_item(measurement, item):
    """A measurement back from a worker (sent without its model) with the client's item."""
    from dataclasses import replace

    return replace(measurement, item=item)
