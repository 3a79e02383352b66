"""`tinyhil bench cluster`: one LUT on 1 local board, on 2 local boards, and on
2 cluster workers (a loopback cluster: scheduler and workers as processes of
their own), with the scaling efficiency and the overhead per job the cluster
adds.

Each way measures the same table into an empty LUT store (so the overhead
chains too), after a warm-up that builds its images (the workers have image
caches of their own), so the wall times compare booting and measuring; every
table must be byte-identical to the first. The cluster's overhead per job is
what happens outside a board's work: from the moment a board is free (or the
job submitted) to the job's start on it, plus from its end to its results in
the client's hands; it is put against a job's own time.
"""
from __future__ import annotations

import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

from tinyhil.board_catalog import get_board
from tinyhil.execute.cluster import DaskExecutor
from tinyhil.execute.inventory import emulated_farm
from tinyhil.execute.jobs import ExecStats
from tinyhil.execute.local import LocalExecutor
from tinyhil.execute.loopback import LoopbackCluster
from tinyhil.measure.characterize import Characterizer

OVERHEAD_TARGET = 0.05  # of a job's own time


@dataclass(frozen=True)
class ClusterBench:
    ops: int
    jobs: int
    seconds: dict[str, float]  # way -> wall seconds of the best round
    identical: bool  # every way's table byte-identical to one local board's
    job_seconds: float  # median of a job's own time on a worker
    dispatch_s: float  # median wait from a free board (or the submission) to the job's start
    return_s: float  # median from a job's end on the worker to its results in the client
    boards_used: dict[str, int]  # worker/board -> jobs, in the cluster's best round

    def efficiency(self, way: str) -> float:
        """Speed-up over one local board, per board (2 boards: ideal 1.0)."""
        return self.seconds["1 local board"] / self.seconds[way] / 2

    @property
    def overhead(self) -> float:
        return (self.dispatch_s + self.return_s) / self.job_seconds if self.job_seconds else float("nan")


def job_overheads(stats: ExecStats) -> tuple[list[float], list[float], list[float]]:
    """(job time, dispatch wait, return time) of every job of a run: a job waits
    for the cluster from its submission, or from its board's last job's end if later."""
    own, dispatch, back = [], [], []
    free_since: dict[str, float] = {}
    for report, received in sorted(stats.reports, key=lambda r: r[0].started):
        own.append(report.ended - report.started)
        ready = max(free_since.get(report.board, 0.0), stats.submitted[report.job])
        dispatch.append(max(0.0, report.started - ready))
        back.append(max(0.0, received - report.ended))
        free_since[report.board] = report.ended
    return own, dispatch, back


def bench_cluster(space: str, window: int, channels: int, classes: int, work_dir: Path, board: str = "qemu-m4",
                  per_image: int = 50, rounds: int = 2, log=print) -> ClusterBench:
    config = get_board(board)
    work_dir = Path(work_dir)

    def characterize(luts: Path, executor=None):
        shutil.rmtree(luts, ignore_errors=True)
        result = Characterizer(config, luts, max_per_image=per_image, executor=executor).run(
            space, window, channels, classes)
        if result.timing.skipped or result.timing.flagged:
            raise AssertionError(f"{luts}: skipped {result.timing.skipped[:3]}, flagged {result.timing.flagged[:3]}")
        return result

    seconds: dict[str, float] = {}
    tables: dict[str, bytes] = {}
    best_stats = None
    with LoopbackCluster(work_dir / "lab") as lab:
        lab.start_scheduler()
        for name in ("w1", "w2"):
            lab.add_worker(name, f"{board}=1")
        with DaskExecutor(lab.address) as cluster:
            ways = {"1 local board": lambda: None, "2 local boards": lambda: LocalExecutor(emulated_farm(board, 2)),
                    "2 workers": lambda: cluster}
            for way, executor in ways.items():
                log(f"{way}: warm-up (images built and cached)")
                characterize(work_dir / "warm-up", executor())
            for round_ in range(rounds):
                for way, executor in ways.items():
                    result = characterize(work_dir / f"{way}-{round_}".replace(" ", "-"), executor())
                    wall = result.timing.wall_s
                    log(f"round {round_ + 1}: {way}: {result.measured_now} ops in {wall:.1f} s")
                    tables.setdefault(way, result.lut_path.read_bytes())
                    if result.lut_path.read_bytes() != tables["1 local board"]:
                        tables[way] = b"differs"
                    if wall < seconds.get(way, float("inf")):
                        seconds[way] = wall
                        if way == "2 workers":
                            best_stats = cluster.stats
    own, dispatch, back = job_overheads(best_stats)
    stats = best_stats
    return ClusterBench(result.total_ops, len(stats.reports), seconds,
                        len(set(tables.values())) == 1, statistics.median(own), statistics.median(dispatch),
                        statistics.median(back), dict(stats.jobs_by_board))
