"""How much faster a farm of N emulated boards measures a suite than one board."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tinyhil.execute.inventory import emulated_farm
from tinyhil.regress.nightly import regress
from tinyhil.regress.suite import Suite


@dataclass(frozen=True)
class Speedup:
    cases: int
    jobs: int
    seconds: dict[int, float]  # boards -> wall seconds
    measure_seconds: dict[int, float]  # boards -> seconds spent measuring, summed over boards

    def factor(self, boards: int) -> float:
        return self.seconds[1] / self.seconds[boards]


def measure_speedup(board: str, suite: Suite, baseline_dir: Path, work_dir: Path,
                    counts=(1, 2), rounds: int = 3) -> Speedup:
    """A warm-up run builds every image (cached by content), then the same
    suite is timed on 1, 2, ... boards, alternately, `rounds` times: only
    booting and measuring are left, and the best of each count is kept
    (other work on the machine only ever slows a round down)."""
    regress(emulated_farm(board, 1), suite, baseline_dir, work_dir / "warm-up", trend=False)
    seconds: dict[int, float] = {}
    measuring: dict[int, float] = {}
    cases = jobs = 0
    for round_ in range(rounds):
        for n in counts:
            out = work_dir / f"boards-{n}-{round_}"
            result = regress(emulated_farm(board, n), suite, baseline_dir, out, trend=False)
            shutil.rmtree(out, ignore_errors=True)
            if result.failed:
                raise AssertionError(f"the suite failed on {n} board(s): {result.verdicts}")
            if result.stats.wall_s < seconds.get(n, float("inf")):
                seconds[n] = result.stats.wall_s
                measuring[n] = result.stats.seconds["measure"]
            cases, jobs = result.measured_now, sum(result.stats.jobs_by_board.values())
    return Speedup(cases, jobs, seconds, measuring)
