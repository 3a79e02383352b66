"""`tinyhil regress`: a suite re-measured on every board of an inventory,
each figure compared with its baseline, written down as it arrives.

inventory + suite + baselines -> cases per board environment -> farm (one
worker per board) -> verdict rows (history.csv, appended) -> JUnit XML and
the trend page; a run that was killed is resumed by the next one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from tinyhil.execute.inventory import FarmBoard
from tinyhil.execute.jobs import ExecStats, Result, make_job
from tinyhil.execute.local import LocalExecutor
from tinyhil.files import writable_file
from tinyhil.measure.runner import Measurement
from tinyhil.provenance import git_commit
from tinyhil.regress.farm import lane_image, lane_items, make_jobs
from tinyhil.regress.history import ERROR, FAILING, IMPROVED, NEW, PASS, REGRESSION, SKIPPED, History, Row
from tinyhil.regress.suite import Baseline, Case, Suite, baseline_problem, collect_cases
from tinyhil.verdict import skipped, usable


@dataclass
class RegressResult:
    run_id: str
    resumed: bool
    rows: pd.DataFrame  # every row of this run (resumed parts included)
    measured_now: int  # cases measured by this invocation
    already: int  # cases found in the history of this run (resumed)
    stats: ExecStats
    history_path: Path
    expected: frozenset[str] = frozenset()  # "case@environment" of every case of the suite
    junit_path: Path | None = None
    trend_path: Path | None = None

    @property
    def verdicts(self) -> Counter:
        return Counter(self.rows["verdict"])

    @property
    def missing(self) -> frozenset[str]:
        """Cases of the suite with no figure yet (skipped, or lost with a crash)."""
        good = self.rows[self.rows["verdict"] != SKIPPED]
        return self.expected - set(good["case"] + "@" + good["environment"])

    @property
    def failed(self) -> bool:
        return bool(self.rows["verdict"].isin(FAILING).any() or self.missing)


def failing_rows(result: RegressResult) -> list[str]:
    """One line per failing figure of a run (regressions first, then errors and
    skips), and per case of the suite that has no figure at all."""
    rows = result.rows[result.rows["verdict"].isin(FAILING)]
    order = {REGRESSION: 0, ERROR: 1, SKIPPED: 2}
    lines = []
    for r in sorted(rows.itertuples(), key=lambda r: (order[r.verdict], r.environment, r.case, r.metric)):
        figures = (f"{_figure(r.baseline)} -> {_figure(r.measured)}, " if r.verdict == REGRESSION else "")
        lines.append(f"{r.verdict}: {r.case} on {r.environment} ({r.farm_board}) {r.metric}: {figures}{r.detail}")
    lines += [f"missing: {key} has no figure" for key in sorted(result.missing - _skipped_keys(rows))]
    return lines


def _figure(value) -> str:
    return "-" if value is None or value != value else f"{value:,.0f}"


def _skipped_keys(rows: pd.DataFrame) -> set[str]:
    return set(rows["case"] + "@" + rows["environment"])


def judge(case: Case, m: Measurement, suite: Suite, emulated: bool, clock_hz: int | None = None
          ) -> list[tuple[str, float | None, float | None, float, str, str]]:
    """(metric, baseline, measured, tolerance, verdict, detail) for each figure of a
    case measured on a board clocked at `clock_hz`."""
    if skipped(m.status):
        return [("cycles", _b(case, "cycles"), None, 0.0, SKIPPED, m.status)]
    if not usable(m.status) or not m.cycles:
        return [("output", None, None, 0.0, ERROR, m.status)]
    tol = suite.tolerance.cycles(emulated, case.kind)
    out = []
    base = case.baseline
    if base is None:
        out.append(("cycles", None, m.median, tol, NEW, "no baseline yet"))
        out.append(("arena_bytes", None, float(m.arena_used), float(suite.tolerance.arena_bytes),
                    NEW, "no baseline yet"))
        return out
    if impossible_baseline(base, clock_hz):
        # Loading refuses these (naming file and line); never a pass, whatever the figure.
        return [("cycles", base.cycles, m.median, tol, ERROR,
                 f"impossible baseline in {base.source}: {impossible_baseline(base, clock_hz)}")]
    change = (m.median - base.cycles) / base.cycles
    verdict = REGRESSION if change > tol else IMPROVED if change < -tol else PASS
    out.append(("cycles", base.cycles, m.median, tol, verdict,
                f"{change * 100:+.3f} % vs {base.source} (tolerance {tol * 100:g} %)"))
    if base.arena_bytes is not None and base.arena_bytes == base.arena_bytes:
        delta = m.arena_used - base.arena_bytes
        atol = suite.tolerance.arena_bytes
        verdict = REGRESSION if delta > atol else IMPROVED if delta < -atol else PASS
        out.append(("arena_bytes", float(base.arena_bytes), float(m.arena_used), float(atol),
                    verdict, f"{delta:+d} bytes vs {base.source} (tolerance {atol} bytes)"))
    if m.status != "ok":  # one LSB off the host: timing still compared, the note kept
        out = [(a, b, c, d, e, f"{f}; {m.status}") for a, b, c, d, e, f in out]
    return out


def impossible_baseline(base: Baseline, clock_hz: int | None = None) -> str:
    """What makes a baseline impossible ('' if nothing): the rule of each
    figure's LUT column (lut/numbers.py); an arena may be unknown."""
    arena = base.arena_bytes
    return baseline_problem("cycles", base.cycles, clock_hz) or (
        "" if arena is None or arena != arena else baseline_problem("arena_bytes", arena, clock_hz))


def _b(case: Case, metric: str) -> float | None:
    return None if case.baseline is None else getattr(case.baseline, metric)


def lane_cases(boards: list[FarmBoard], suite: Suite, baseline_dir: Path,
               history: History | None = None, run_id: str = "") -> dict[str, list[Case]]:
    """The suite's cases for each lane of the farm (a model's baseline: the lane's history)."""
    by_env = collect_cases(suite, sorted({b.environment for b in boards}), baseline_dir)
    lanes = {b.lane: b.environment for b in boards}
    clocks = {b.lane: b.config.clock_hz for b in boards}
    out = {}
    for lane, env in sorted(lanes.items()):
        out[lane] = []
        for case in by_env[env]:
            case = replace(case, lane=lane)
            if case.kind == "model" and history is not None:
                figures = history.last_good(lane, case.case_id, before_run=run_id, clock_hz=clocks[lane])
                if figures is not None:
                    cycles, arena = figures
                    case = replace(case, baseline=Baseline(
                        cycles, None if arena != arena else int(arena), "history"))
            out[lane].append(case)
    return out


def pinned_images(boards: list[FarmBoard], suite: Suite, baseline_dir: Path) -> dict[str, object]:
    """Board name -> the image each pinned (labgrid) board must run for this suite."""
    cases = lane_cases(boards, suite, Path(baseline_dir))
    return {b.name: lane_image(b, cases[b.lane]) for b in boards if b.pinned and cases[b.lane]}


def fingerprint(suite: Suite, boards: list[FarmBoard], baseline_dir: Path) -> str:
    """The run's identity: suite, lanes and baselines, not which boards (or which
    cluster's workers) measure it, so a killed run is resumed on any of them."""
    text = json.dumps([Path(suite.source).read_text() if Path(suite.source).is_file() else suite.name,
                       sorted({(b.lane, b.environment) for b in boards}), str(baseline_dir)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def regress(boards: list[FarmBoard], suite: Suite, baseline_dir: Path, out_dir: Path,
            junit_path: Path | None = None, timeout: float = 30.0, on_row=None,
            open_device=None, trend: bool = True, executor=None) -> RegressResult:
    """`executor`: where the jobs run (tinyhil.execute: a cluster's workers);
    by default a thread per board of `boards` (for a cluster: its lanes' boards)."""
    # outputs checked before any case is measured
    writable_file(Path(out_dir) / "history.csv", "the regression history")
    if junit_path is not None:
        writable_file(Path(junit_path), "the JUnit XML")
    history = History(out_dir)
    with history.exclusive():
        print_ = on_row or (lambda row: None)
        key = fingerprint(suite, boards, baseline_dir)
        run_id = history.unfinished_run(key)
        resumed = run_id is not None
        if run_id is None:
            run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            history.mark(run_id, key, finished=False)
        frame = history.frame()
        mine = frame[(frame["run_id"] == run_id) & (frame["verdict"] != SKIPPED)]
        # a skipped case is measured again on resume; its old row stays as the record of the skip
        done = set(mine["case"] + "@" + mine["environment"])
        cases = lane_cases(boards, suite, Path(baseline_dir), history, run_id)
        todo = {lane: [c for c in cs if c.key not in done] for lane, cs in cases.items()}
        already = sum(len(cs) for cs in cases.values()) - sum(len(cs) for cs in todo.values())

        recorded = set(done)
        commit = git_commit()

        configs = {b.lane: b.config for b in boards}
        by_item = {(c.lane, c.item.name): c for cs in todo.values() for c in cs}

        def record(result: Result) -> None:
            case, m = by_item[(result.lane, result.measurement.item.name)], result.measurement
            if case.key in recorded:  # delivered again by a retried job: its rows are in
                return
            config = configs[case.lane]
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            firmware = m.image.firmware if m.image is not None else ""
            rows = [Row(run_id, now, suite.name, case.lane, result.board, case.case_id,
                        case.kind, metric, base, measured, tol, verdict, detail, round(m.seconds, 4),
                        firmware, commit)
                    for metric, base, measured, tol, verdict, detail
                    in judge(case, m, suite, config.emulated, config.clock_hz)]
            history.append(rows)
            if not skipped(m.status):
                recorded.add(case.key)
            for row in rows:
                print_(row)

        executor = executor or LocalExecutor(boards, timeout, open_device)
        pinned = Counter(b.lane for b in boards if b.pinned)  # lane -> its boards
        case_jobs = make_jobs(todo, suite.per_image, dict(pinned))
        # a pinned lane's jobs run in the image its places run: the whole suite's, even when resumed
        jobs = [make_job(lane, [c.item for c in job.cases], suite.repeats, 1,
                         image_items=lane_items(cases[lane]) if lane in pinned else ())
                for lane, lane_jobs in case_jobs.items() for job in lane_jobs]
        with contextlib.closing(executor.measure(jobs)) as results:
            for result in results:
                record(result)
        stats = executor.stats
        rows = history.frame()
        rows = rows[rows["run_id"] == run_id]
        # the latest row per (case, environment, metric): a resumed skip is superseded
        rows = rows.drop_duplicates(["environment", "case", "metric"], keep="last")
        # Skips (or anything missing) left: the run stays open, and the next
        # `tinyhil regress` measures just those.
        measured = set((rows.loc[rows["verdict"] != SKIPPED, "case"] + "@"
                        + rows.loc[rows["verdict"] != SKIPPED, "environment"]))
        expected = {c.key for cs in cases.values() for c in cs}
        history.mark(run_id, key, finished=expected <= measured)
        result = RegressResult(run_id, resumed, rows.reset_index(drop=True),
                               sum(stats.cases_by_board.values()), already, stats, history.path,
                               frozenset(expected))
        if junit_path is not None:
            from tinyhil.report.junit import write_junit

            result.junit_path = write_junit(result, suite, Path(junit_path))
        if trend:
            from tinyhil.report.trend import write_trend

            result.trend_path = write_trend(history.frame(), Path(out_dir) / "trend.html", suite.name)
        return result
