"""TinyTNAS's own UCI-HAR row (its README), and beyond the papers: MicroNAS,
TinyTNAS and Tiny-TimeNAS on UCI-HAR under one board's targets, each found
network deployed (`tinyhil pipeline`: search, QAT, int8, firmware, every
test window on the device).

The board is qemu-m4, the emulated twin of the NUCLEO-F446RE: the one board
all three engines can price (TinyTNAS and Tiny-TimeNAS measure the ops they
meet on it; no F446RE LUT holds their ops, and a physical board's latency is
only given where a calibrated LUT prices every op: never invented).
Ops measured on demand go to the benchmark's own LUT directory (OUT/luts,
seeded from the committed tables), not to luts/.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyhil.benchmarks.micronas_paper.ledger import Ledger
from tinyhil.errors import TinyhilError
from tinyhil.nas.data import Splits
from tinyhil.nas.engines import DataSpec, Targets

ENGINE_BOARD = "qemu-m4"
PREDICT_BOARD = "nucleo_f446re"  # the physical board of ENGINE_BOARD's core with a calibrated LUT
BOUND = "p95"
KB = 1024
# TinyTNAS's README, UCI-HAR: its constraints and what it found (RAM, flash in KB; MACs)
TINYTNAS_CONSTRAINTS = Targets(ram_bytes=20 * KB, flash_bytes=64 * KB, macs=60_000)
TINYTNAS_README = {"accuracy": 0.934, "ram_kb": 10.8, "flash_kb": 19.3, "macs": 53_100, "search_minutes": 10,
                   "latency_ms": {"Nano 33 BLE": 31.0, "ESP32": 13.0}}
# The three engines' shared targets on qemu-m4: Table 2's first memory target
# (11,520 B of arena), TinyTNAS's flash limit, and 60 ms at qemu-m4's 25 MHz
# (about what the first Table 2 row's networks, 14 ms on the F446RE, take there).
ENGINE_TARGETS = Targets(latency_ms=60.0, ram_bytes=11_520, flash_bytes=64 * KB)


@dataclass(frozen=True)
class EngineOutcome:
    name: str  # "tinytnas-readme", or the engine's name in the side-by-side table
    engine: str
    board: str
    targets: dict
    architecture: str
    description: str  # e.g. "k=9 c=2"
    search_seconds: float
    val_accuracy: float | None
    est_latency_ms: float  # the board's LUT
    est_ram: int
    est_flash: int
    est_macs: int
    measured_ms: float
    arena_bytes: int
    model_bytes: int
    accuracy: float  # float model, test subjects
    f1: float
    accuracy_int8_host: float  # every test window
    f1_int8_host: float
    accuracy_int8_device: float  # the windows the device ran
    f1_int8_device: float
    device_windows: int
    test_windows: int
    predictions_equal: int  # of device_windows, the device's class = the host interpreter's
    under_targets: dict  # latency / ram / flash measured under the target (None: no target)
    deploy_seconds: float
    predicted_board: str = PREDICT_BOARD
    predicted_ms: float | None = None
    predicted_bound_ms: float | None = None
    predict_error: str = ""

    @property
    def within(self) -> bool:
        return all(ok for ok in self.under_targets.values() if ok is not None)

    @property
    def macs_within(self) -> bool | None:
        macs = self.targets.get("macs")
        return None if macs is None else self.est_macs <= macs


def work_luts(luts: Path, out: Path, board: str = ENGINE_BOARD) -> Path:
    """OUT/luts: the board's committed tables copied once; the engines add the ops
    they measure on demand there, leaving `luts` as it is."""
    work = out / "luts"
    if not (work / board).is_dir():
        shutil.copytree(Path(luts) / board, work / board)
    return work


def run_engine(name: str, engine: str, targets: Targets, settings, deploy, data: DataSpec, search_splits: Splits,
               luts: Path, out: Path, ledger: Ledger, log=lambda _m: None,
               run: bool = True) -> tuple[EngineOutcome | None, bool]:
    """The engine's search, its network deployed on ENGINE_BOARD (resumed where a
    run stopped: pipeline.py), and its F446RE latency predicted where a calibrated
    LUT prices it. (outcome, whether it came from the ledger); `run` False:
    (None, False) unless the ledger has it."""
    from tinyhil.board_catalog import get_board
    from tinyhil.pipeline import PipelineConfig, pipeline

    kept = ledger.get("engines", name)
    if kept is not None:
        return EngineOutcome(**kept), True
    if not run:
        return None, False
    config = PipelineConfig(engine, data, targets, out / name, settings, deploy)
    started = time.monotonic()
    result = pipeline(config, get_board(ENGINE_BOARD), work_luts(luts, out), log=log, splits=search_splits)
    run, d = result.run, result.deployment
    s = d.scores
    outcome = EngineOutcome(
        name, engine, ENGINE_BOARD, asdict(targets), run.architecture.id, describe(run),
        float(run.details.get("seconds", result.seconds["search"])), run.details.get("val_accuracy"),
        d.estimate.latency_ms, d.estimate.ram, d.estimate.flash, d.estimate.macs, d.measured_ms, d.arena_used,
        d.model_bytes, s["float"].accuracy, s["float"].f1, s["int8_host"].accuracy, s["int8_host"].f1,
        s["int8_device"].accuracy, s["int8_device"].f1, d.test_windows, d.host_windows or d.test_windows,
        d.predictions_equal, d.checks(), time.monotonic() - started - result.seconds["search"],
        **predicted(run.architecture, luts))
    ledger.put("engines", name, asdict(outcome))
    return outcome, False


def describe(run) -> str:
    details = run.details
    if run.engine == "tinytnas":
        best = details["best"]
        k, c = (best["k"], best["c"]) if isinstance(best, dict) else (best[0], best[1])
        return f"k={k} c={c}"
    if run.engine == "timenas":
        choices = run.architecture.choices
        return f"{choices.get('type', '?')}, {len(choices.get('layers', []))} layers"
    return f"{len(run.architecture.runtime().ops)} ops"


def predicted(arch, luts: Path) -> dict:
    from tinyhil.estimate.predict import predict

    try:
        p = predict(list(arch.runtime().ops), PREDICT_BOARD, luts, BOUND)
    except TinyhilError as error:
        return {"predict_error": f"{type(error).__name__}: {error}"}
    return {"predicted_ms": p.ms(p.total), "predicted_bound_ms": p.ms(p.total_bound)}
