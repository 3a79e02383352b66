"""How much faster a farm of N emulated boards measures a suite than one board."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..boards import get_board
from .inventory import FarmBoard
from .nightly import regress
from .suite import Suite


@dataclass(frozen=True)
class Speedup:
    cases: int
    jobs: int
    seconds: dict[int, float]  # boards -> wall seconds

    def factor(self, boards: int) -> float:
        return self.seconds[1] / self.seconds[boards]


def emulated_farm(board: str, n: int) -> list[FarmBoard]:
    config = get_board(board)
    return [FarmBoard(f"{board}-{i}", config, "qemu") for i in range(n)]


def measure_speedup(board: str, suite: Suite, baseline_dir: Path, work_dir: Path,
                    counts=(1, 2)) -> Speedup:
    """A warm-up run builds every image (cached by content), then the same
    suite is timed on 1, 2, ... boards: only booting and measuring are left."""
    regress(emulated_farm(board, 1), suite, baseline_dir, work_dir / "warm-up", trend=False)
    seconds, cases, jobs = {}, 0, 0
    for n in counts:
        out = work_dir / f"boards-{n}"
        shutil.rmtree(out, ignore_errors=True)
        result = regress(emulated_farm(board, n), suite, baseline_dir, out, trend=False)
        if result.failed:
            raise AssertionError(f"the suite failed on {n} board(s): {result.verdicts}")
        seconds[n] = result.stats.wall_s
        cases, jobs = result.measured_now, sum(result.stats.jobs_by_board.values())
    return Speedup(cases, jobs, seconds)
