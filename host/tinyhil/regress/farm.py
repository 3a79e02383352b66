"""A suite's work cut into jobs for a farm's lanes.

Work is cut into jobs of a few cases (one firmware image each). Boards of the
same PlatformIO environment are interchangeable, so they share one queue (a
lane): two emulated qemu-m4 boards take jobs from it in turn and finish about
twice as fast. A board tinyhil cannot flash (a pinned labgrid place) is a lane
of its own, with one job: its whole suite in the one image it runs. Where the
jobs run (this host's threads, or a cluster's workers) is tinyhil.execute's.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyhil.execute.inventory import FarmBoard
from tinyhil.measure.runner import ImageRunner
from tinyhil.regress.suite import Case


@dataclass(frozen=True)
class Job:
    lane: str
    cases: tuple[Case, ...]


def make_jobs(cases_by_lane: dict[str, list[Case]], per_image: int,
              pinned: dict[str, int] | None = None) -> dict[str, list[Job]]:
    """Jobs of at most `per_image` cases and about an eighth of the lane's
    work each (by the baselines' cycles), longest first, so that the boards
    finish together rather than one waiting out another's heavy last job.
    They do not depend on how many boards take them, so a job's image is the
    same, and cached, whichever board runs it. A pinned lane of one board
    has one job; the jobs of a pinned lane of several (places of one tag
    reservation) all run in the lane's one image (lane_items)."""
    jobs, pinned = {}, pinned or {}
    for lane, cases in cases_by_lane.items():
        cases = longest_first(cases)
        if pinned.get(lane, 0) == 1:
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


def lane_items(cases: list[Case]) -> list:
    """A pinned lane's image: every case of its suite, longest first."""
    return [case.item for case in longest_first(cases)]


def lane_image(board: FarmBoard, cases: list[Case]):
    """The one image a pinned board must run for its lane's suite (built, cached)."""
    from tinyhil.errors import TinyhilError
    from tinyhil.image.firmware import build_image
    from tinyhil.measure.runner import pack

    items = lane_items(cases)
    if len(pack(items, board.config, len(items))) > 1:
        raise TinyhilError(f"the suite of lane {board.lane} does not fit one image of "
                           f"{board.environment}: sample fewer LUT rows for a pinned board")
    runner = ImageRunner(board.config, max_per_image=len(items))
    return build_image(runner.image_spec(items), board.config)
