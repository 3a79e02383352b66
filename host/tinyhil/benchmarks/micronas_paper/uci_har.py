"""`tinyhil bench micronas-paper --data uci_har --table2`: the MicroNAS paper's
Table 2 at its own targets and boards, Fig. 8 on both boards, TinyTNAS's own
UCI-HAR row and the three engines side by side (paper_rows.py,
engines_table.py), with the targets the benchmark is judged by (verdicts.py).

The full run is hours on two cores. Every finished piece is kept in
OUT/ledger as it finishes, and a rerun with the same settings resumes after
it: the run can be done in parts (Ctrl-C, or --experiments, at any time).
"""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from tinyhil.benchmarks.micronas_paper import OnDevice, PaperOptions
from tinyhil.benchmarks.micronas_paper.engines_table import (
    ENGINE_TARGETS,
    TINYTNAS_CONSTRAINTS,
    EngineOutcome,
    run_engine,
)
from tinyhil.benchmarks.micronas_paper.ledger import Ledger, file_digest
from tinyhil.benchmarks.micronas_paper.paper_rows import (
    FIG8_BOARDS,
    TABLE2,
    Bench,
    BoardOutcome,
    evaluate,
    fig8_targets,
    plan,
)
from tinyhil.errors import TinyhilError
from tinyhil.files import atomic_write, writable_dir
from tinyhil.nas.data import Splits

EXPERIMENTS = ("table2", "fig8", "tinytnas", "engines")
ENGINES = ("micronas", "tinytnas", "timenas")


@dataclass(frozen=True)
class UciHarOptions:
    seeds: int = 3
    epochs: int = 20  # search epochs (every method's budget)
    warmup_epochs: int = 7
    batch_size: int = 32
    retrain_epochs: int = 30
    qat_epochs: int = 5
    fig8_targets: int = 3  # latency targets per board
    search_stride: int = 1  # searches and retraining see every n-th training and validation window
    tinytnas_budget_s: float = 600.0  # its README's 10 minutes
    tinytnas_epochs: int = 5  # training epochs per TinyTNAS candidate
    timenas_candidates: int = 100
    device_windows: int | None = None  # test windows the deployed engines' networks run on the device
    experiments: tuple[str, ...] = EXPERIMENTS

    def paper(self) -> PaperOptions:
        return PaperOptions(self.seeds, self.epochs, self.warmup_epochs, self.batch_size, self.retrain_epochs,
                            self.qat_epochs)

    def key(self) -> dict:
        """What a kept piece's figures depend on (not how many seeds or which experiments)."""
        return {k: v for k, v in asdict(self).items() if k not in ("seeds", "experiments")}


FULL = UciHarOptions()
# under 30 min on two cores: one seed, a few epochs, searches and retraining on a
# quarter of the training windows (testing on all), 300 test windows on the device
QUICK = UciHarOptions(seeds=1, epochs=2, warmup_epochs=1, retrain_epochs=3, qat_epochs=1, fig8_targets=2,
                      search_stride=4, tinytnas_budget_s=90.0, tinytnas_epochs=1, timenas_candidates=20,
                      device_windows=300)


@dataclass
class Results:
    outcomes: list[BoardOutcome] = field(default_factory=list)
    engines: list[EngineOutcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # pieces that could not be run, why
    plots: list[Path] = field(default_factory=list)
    kept: int = 0  # pieces taken from the ledger (an earlier part of the run)
    missing: list[str] = field(default_factory=list)  # --kept-only: planned pieces the ledger lacks
    stale: list[str] = field(default_factory=list)  # rows searched on an earlier version of their board's LUT
    seconds: float = 0.0  # this invocation's wall time
    ledger_seconds: float = 0.0  # every kept piece's own time: the full run's wall time, however many parts


def strided(data: Splits, stride: int) -> Splits:
    """Every `stride`-th training and validation window (the test subjects untouched)."""
    if stride <= 1:
        return data
    return Splits(data.x_train[::stride], data.y_train[::stride], data.x_val[::stride], data.y_val[::stride],
                  data.x_test, data.y_test, data.classes, data.name, data.task)


def board_luts(luts: Path, boards, splits: Splits) -> dict:
    from tinyhil.lut.table import Lut, space_lut_path

    found = {}
    for board in boards:
        path = space_lut_path(luts, board, "micronas", (splits.window, splits.channels), splits.classes)
        if not path.is_file():
            raise TinyhilError(f"no MicroNAS LUT of {board} for {splits.window}x{splits.channels} with "
                               f"{splits.classes} classes: {path} (calibrate one: README, `tinyhil calibrate`)")
        found[board] = Lut.load(path, board=board)
    return found


def run_uci_har(data_spec: str, splits: Splits, options: UciHarOptions, luts: Path, out: Path,
                device: bool = True, log=lambda _m: None, progress=lambda _text, _o, _kept: None,
                kept_only: bool = False) -> Results:
    """`kept_only`: the rows the ledger holds, nothing searched or measured."""
    from tinyhil.benchmarks.calibrate import emulated_twin
    from tinyhil.board_catalog import get_board
    from tinyhil.spaces import make_space

    started = time.monotonic()
    if (splits.window, splits.channels, splits.classes) != (128, 9, 6):
        raise TinyhilError(f"--table2 is the paper's UCI-HAR table: 128x9 windows, 6 classes; {splits.name} "
                           f"has {splits.window}x{splits.channels}, {splits.classes} classes")
    writable_dir(out, "the benchmark's tables, plots and ledger")
    boards = sorted({row.board for row in TABLE2} | set(FIG8_BOARDS))
    luts_by_board = board_luts(luts, boards, splits)
    twins = {board: emulated_twin(board) for board in boards}
    devices = None
    if device and not kept_only:
        devices = {twin: OnDevice(get_board(twin), log=log) for twin in sorted(set(twins.values()))}
        for on_device in devices.values():
            on_device.check()
    ledger = Ledger(out / "ledger", {"data": [splits.name, len(splits.y_train), len(splits.y_val),
                                              len(splits.y_test)], **options.key()})
    space = make_space("micronas", splits.window, splits.channels, splits.classes)
    bench = Bench(strided(splits, options.search_stride), space, luts_by_board,
                  {b: file_digest(lut.path) for b, lut in luts_by_board.items()}, twins, options.paper(), ledger,
                  out / "models", Path(luts), devices)
    results = Results()
    fig8 = {board: fig8_targets(space, luts_by_board[board], options.fig8_targets) for board in FIG8_BOARDS}
    runs = plan(options.seeds, fig8, options.experiments)
    for index, planned in enumerate(runs, 1):
        outcome, kept = evaluate(planned, bench, run=not kept_only)
        if outcome is None:
            results.missing.append(planned.name)
            continue
        results.outcomes.append(outcome)
        results.kept += kept
        if outcome.lut_digest != bench.digests[outcome.board]:  # kept from before the LUT was measured again
            results.stale.append(planned.name)
        progress(f"{index}/{len(runs)}", outcome, kept)
        write_rows(results.outcomes, out / "table2.csv")
    if any(o.experiment == "fig8" for o in results.outcomes):
        from tinyhil.benchmarks.micronas_paper.fig8 import plot_fig8

        results.plots = plot_fig8(results.outcomes, out)
    run_engines(data_spec, bench.data, options, Path(luts), out, ledger, results, log, progress, kept_only)
    results.seconds = time.monotonic() - started
    results.ledger_seconds = ledger_seconds(ledger)
    return results


def run_engines(data_spec, search_splits, options, luts, out, ledger, results, log, progress,
                kept_only=False) -> None:
    from tinyhil.deploy.deployment import DeployOptions
    from tinyhil.nas.engines import DataSpec
    from tinyhil.pipeline import EngineSettings

    settings = EngineSettings(search_epochs=options.epochs, batch_size=options.batch_size,
                              budget_s=options.tinytnas_budget_s, candidate_epochs=options.tinytnas_epochs,
                              n_archs=options.timenas_candidates)
    deploy = DeployOptions(epochs=options.retrain_epochs, qat_epochs=options.qat_epochs,
                           batch_size=options.batch_size, repeats=3, device_windows=options.device_windows)
    todo = [("tinytnas-readme", "tinytnas", TINYTNAS_CONSTRAINTS)] if "tinytnas" in options.experiments else []
    todo += [(engine, engine, ENGINE_TARGETS) for engine in ENGINES if "engines" in options.experiments]
    for index, (name, engine, targets) in enumerate(todo, 1):
        try:
            outcome, kept = run_engine(name, engine, targets, settings, deploy, DataSpec(data_spec),
                                       search_splits, luts, out / "engines", ledger, log, run=not kept_only)
        except TinyhilError as error:  # the others still run; the benchmark exits 1
            results.failures.append(f"{name}: {type(error).__name__}: {error}")
            log(f"{name} failed: {error}")
            continue
        if outcome is None:
            results.missing.append(name)
            continue
        results.engines.append(outcome)
        results.kept += kept
        progress(f"engine {index}/{len(todo)}", outcome, kept)
        write_rows(results.engines, out / "engines.csv")


def ledger_seconds(ledger: Ledger) -> float:
    """Each piece's own time, counted once (a DARTS search serves three rows)."""
    total = sum(r["seconds"] for kind in ("search", "trained") for r in ledger.records(kind))
    total += sum(r.get("measure_seconds", 0.0) for r in ledger.records("measured"))
    total += sum(r["search_seconds"] + r["deploy_seconds"] for r in ledger.records("engines"))
    return total


def write_rows(rows: list, path: Path) -> None:
    """One CSV line per outcome, the verdict properties with the fields."""
    import csv

    if not rows:
        return
    names = [f.name for f in fields(rows[0])]
    extra = [name for name in ("within_latency", "within_memory", "within") if hasattr(rows[0], name)]
    text = io.StringIO()
    writer = csv.DictWriter(text, names + extra)
    writer.writeheader()
    for row in rows:
        writer.writerow({**asdict(row), **{name: getattr(row, name) for name in extra}})
    atomic_write(path, text.getvalue())


@dataclass(frozen=True)
class Group:
    """The seeds of one (experiment, row, method): mean and spread."""

    experiment: str
    row: str
    method: str
    board: str
    lat_target_ms: float | None
    mem_target_bytes: float | None
    outcomes: tuple[BoardOutcome, ...]

    def mean(self, name: str) -> float:
        values = [getattr(o, name) for o in self.outcomes if getattr(o, name) is not None]
        return float(np.mean(values)) if values else float("nan")

    def spread(self, name: str) -> float:
        values = [getattr(o, name) for o in self.outcomes if getattr(o, name) is not None]
        return float(np.std(values)) if values else float("nan")

    def count(self, name: str) -> tuple[int, int]:
        """(seeds where the verdict `name` holds, seeds with a verdict)."""
        judged = [getattr(o, name) for o in self.outcomes if getattr(o, name) is not None]
        return sum(judged), len(judged)


def groups(outcomes: list[BoardOutcome]) -> list[Group]:
    found: dict[tuple, list[BoardOutcome]] = {}
    for o in outcomes:
        found.setdefault((o.experiment, o.row, o.method), []).append(o)
    return [Group(*key, rows[0].board, rows[0].lat_target_ms, rows[0].mem_target_bytes, tuple(rows))
            for key, rows in found.items()]
