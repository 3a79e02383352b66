"""`tinyhil pipeline`: characterize (cached) -> search -> deploy -> report, in one go.

Each stage's output is a file in the run directory, and each stage is skipped
when its output is already there for the same inputs (the LUT rows, run.json
for the same engine/data/targets/settings, the QAT model), so an interrupted
pipeline resumes where it stopped.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tinyhil.board_catalog import BoardConfig
from tinyhil.deploy.deployment import Deployment, DeployOptions, deploy
from tinyhil.errors import TinyhilError
from tinyhil.files import output_dir, writable_file
from tinyhil.lut.table import Lut
from tinyhil.measure.characterize import space_lut
from tinyhil.nas import engines as search
from tinyhil.nas.data import Splits
from tinyhil.nas.engines import DataSpec, RunDirError, SearchRun, Targets
from tinyhil.nas.hardware import covering_lut, engine_lut
from tinyhil.report.deployment import write_report

SETTINGS_FILE = "pipeline.json"


@dataclass(frozen=True)
class EngineSettings:
    search_epochs: int = 30  # MicroNAS
    batch_size: int = 32
    budget_s: float = 120.0  # TinyTNAS wall-clock budget
    candidate_epochs: int = 3  # TinyTNAS training per candidate
    n_archs: int = 100  # Tiny-TimeNAS candidates sampled
    proxy: str = "zico"


@dataclass(frozen=True)
class PipelineConfig:
    engine: str
    data: DataSpec
    targets: Targets
    out: Path
    engine_settings: EngineSettings = field(default_factory=EngineSettings)
    deploy: DeployOptions = field(default_factory=DeployOptions)

    def search_key(self, board: str) -> dict:
        """What the search result depends on: a run directory with another key is searched again."""
        return {"engine": self.engine, "board": board, "data": asdict(self.data),
                "targets": asdict(self.targets), "settings": asdict(self.engine_settings)}


@dataclass(frozen=True)
class PipelineResult:
    run: SearchRun
    deployment: Deployment
    report: Path
    seconds: dict[str, float]


def run_search(config: PipelineConfig, board: BoardConfig, splits: Splits, lut: Lut | None, log,
               luts: Path | None = None) -> SearchRun:
    out, key = config.out, config.search_key(board.name)
    settings_path = out / SETTINGS_FILE
    if settings_path.is_file() and (out / "run.json").is_file():
        try:
            if json.loads(settings_path.read_text()) == key:
                log(f"reusing the search in {out}")
                return SearchRun.load(out)
        except (json.JSONDecodeError, RunDirError):
            pass  # damaged or older: search again
    s = config.engine_settings
    if config.engine == "micronas":
        run = search.micronas(config.data, splits, lut, board.name, config.targets, s.search_epochs,
                              s.batch_size, out)
    elif config.engine == "tinytnas":
        run = search.tinytnas(config.data, splits, lut, board.name, config.targets, s.budget_s,
                              s.candidate_epochs, 1e-3, out, luts)
    elif config.engine == "timenas":
        run, _ = search.timenas(config.data, splits, lut, board.name, config.targets, config.data.task,
                                s.n_archs, s.proxy, 1, out, luts)
    else:
        raise TinyhilError(f"unknown engine {config.engine!r} (known: {', '.join(search.ENGINES)})")
    settings_path.write_text(json.dumps(key, indent=2))
    return run


def pipeline(config: PipelineConfig, board: BoardConfig, luts: Path, report: Path | None = None,
             progress=None, log=lambda _m: None, splits: Splits | None = None,
             lut: Lut | None = None, on_stage=None, executor=None) -> PipelineResult:
    """`splits` and `lut` (the data and the board's LUT of the engine's space)
    are loaded here unless a caller running many pipelines already has them.
    `executor`: where the characterize step's images run (a cluster), if not here."""
    seconds = {}
    t0 = time.monotonic()
    with output_dir(config.out, "the pipeline's run"):  # before anything is searched; a refused one leaves none
        writable_file(report or config.out / "report.html", "the HTML report")
        log(f"characterize + search ({config.engine}) ...")
        if splits is None:
            splits = config.data.load()
            if splits.report:
                log(splits.report)
        if lut is None:
            lut = search_lut(board, config.engine, splits, luts, progress, executor)
        run = run_search(config, board, splits, lut, log, luts)
        if config.engine != "micronas":  # ops the search measured on demand, for the deployment's estimate
            lut = covering_lut(board.name, lut, luts, [run.architecture], log)
        seconds["search"] = time.monotonic() - t0
        log(f"found {run.architecture.id}: estimated {run.estimate.latency_ms:.2f} ms, arena {run.estimate.ram:,} B")
        t0 = time.monotonic()
        deployment = deploy(config.out, board, lut, config.deploy, log, on_stage)
        seconds["deploy"] = time.monotonic() - t0
        report_path = write_report([deployment], report or config.out / "report.html",
                                   f"tinyhil pipeline: {config.engine} on {board.name}")
        return PipelineResult(run, deployment, report_path, seconds)


def search_lut(board: BoardConfig, engine: str, splits: Splits, luts: Path, progress=None,
               executor=None) -> Lut | None:
    """MicroNAS needs its whole space measured (it weighs every op at once); TinyTNAS
    and Tiny-TimeNAS start from what the board has and measure the rest on demand."""
    if engine == "micronas":
        return space_lut(board, engine, splits.window, splits.channels, splits.classes, luts, progress,
                         executor)
    return engine_lut(board.name, engine, splits.window, splits.channels, splits.classes, luts)
