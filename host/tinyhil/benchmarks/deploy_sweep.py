"""`tinyhil bench deploy-sweep`: every engine over a sweep of latency targets,
each found model deployed and measured, and the benchmark's verdict: under the
targets? latency estimate within 3 %? device classes = host int8 interpreter's?"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinyhil.board_catalog import BoardConfig
from tinyhil.deploy.deployment import Deployment, DeployOptions
from tinyhil.files import atomic_write, writable_dir
from tinyhil.measure.characterize import space_lut
from tinyhil.nas.engines import DataSpec, Targets
from tinyhil.pipeline import EngineSettings, PipelineConfig, pipeline
from tinyhil.report.deployment import write_report

ESTIMATE_WITHIN_PERCENT = 3.0


def spread_targets(engine: str, splits, lut, n: int, seed: int = 0) -> tuple[list[float], float]:
    """Latency targets across the space's range on this board (the 10th to 85th
    percentile of random architectures' LUT estimates), and one memory target
    (their median arena x 1.5): targets each engine can meet and must work for."""
    import numpy as np

    from tinyhil.nas.constraints import profile as estimate
    from tinyhil.spaces import make_space, sample_architecture

    space = make_space(engine, splits.window, splits.channels, splits.classes)
    rng = np.random.default_rng(seed)
    profiles = [estimate(sample_architecture(space, rng), lut) for _ in range(200)]
    latencies = np.array([p.latency_ms for p in profiles])
    targets = np.percentile(latencies, np.linspace(10, 85, n))
    return [float(f"{t:.3g}") for t in targets], float(np.median([p.ram for p in profiles]) * 1.5)


def sweep_engines(engines, data: DataSpec, board: BoardConfig, n_targets: int, settings: EngineSettings,
          options: DeployOptions, luts: Path, out: Path, progress=None, log=lambda _m: None):
    """Each engine over `n_targets` latency targets: search, deploy, measure.
    OUT/sweep.csv is rewritten (atomically) as each pipeline finishes; a
    finished pipeline is reused when the sweep runs again (see `pipeline`)."""
    import pandas as pd

    splits = data.load()
    deployments, rows = [], []
    writable_dir(out, "the sweep's table and report")  # before the first search
    for engine in engines:
        # the targets are spread over random architectures of the space: all of it measured
        lut = space_lut(board, engine, splits.window, splits.channels, splits.classes, luts, progress)
        latencies, memory = spread_targets(engine, splits, lut, n_targets, data.seed)
        for latency in latencies:
            config = PipelineConfig(engine, data, Targets(latency_ms=latency, ram_bytes=memory),
                                    out / f"{engine}-{latency:g}ms", settings, options)
            log(f"{engine}: latency target {latency:g} ms, memory target {memory:,.0f} B")
            result = pipeline(config, board, luts, progress=progress, log=log, splits=splits, lut=lut)
            deployments.append(result.deployment)
            d = result.deployment
            rows.append({"engine": engine, "lat_target_ms": latency, "mem_target_bytes": memory,
                   "est_ms": d.estimate.latency_ms, "measured_ms": d.measured_ms,
                   "latency_error_pct": d.latency_error_pct, "est_arena": d.estimate.ram,
                   "arena_used": d.arena_used, "model_bytes": d.model_bytes, "est_flash": d.estimate.flash,
                   "under_targets": d.under_targets,
                   "predictions_equal": d.predictions_equal, "outputs_equal": d.outputs_equal,
                   "test_windows": d.test_windows, "acc_float": d.scores["float"].accuracy,
                   "acc_qat": d.scores["qat"].accuracy, "acc_int8_host": d.scores["int8_host"].accuracy,
                   "acc_int8_device": d.scores["int8_device"].accuracy, "run": d.run_dir})
            atomic_write(out / "sweep.csv", pd.DataFrame(rows).to_csv(index=False))
    report = write_report(deployments, out / "report.html", f"tinyhil deploy sweep on {board.name}")
    return deployments, report


@dataclass(frozen=True)
class SweepVerdict:
    deployed: int
    under_targets: int
    estimate_within: int  # latency estimate within ESTIMATE_WITHIN_PERCENT of the measurement
    worst_estimate_error: float  # percent
    same_predictions: int  # device predictions = host int8 interpreter's on every test window


def verdict(deployments: list[Deployment]) -> SweepVerdict:
    return SweepVerdict(
        deployed=len(deployments),
        under_targets=sum(d.under_targets for d in deployments),
        estimate_within=sum(abs(d.latency_error_pct) <= ESTIMATE_WITHIN_PERCENT for d in deployments),
        worst_estimate_error=max((abs(d.latency_error_pct) for d in deployments), default=0.0),
        same_predictions=sum(d.predictions_equal == d.test_windows for d in deployments))
