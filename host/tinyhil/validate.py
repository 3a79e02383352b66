"""`tinyhil validate`: estimates of random architectures against the device.

space -> random architectures -> estimates (LUT latency, MACs proxy,
Appendix A memory, arena) -> whole int8 models -> board runs -> report.
Every estimate is made before the first architecture runs.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tinyhil.board_catalog import BoardConfig
from tinyhil.estimate import MacsProxy, appendix_a_peak, arena_estimate, lut_latency
from tinyhil.estimate.latency import check_covered
from tinyhil.files import atomic_write, writable_dir
from tinyhil.lut.table import Lut, LutError, space_lut_path
from tinyhil.measure.runner import ImageRunner, Item, Timing, pack
from tinyhil.models.single_op import BUILTIN
from tinyhil.models.tflite_model import TfliteModel, model_graph
from tinyhil.models.whole_model import generate_architecture_models
from tinyhil.spaces import make_space, sample_architecture
from tinyhil.spaces.arch import Architecture
from tinyhil.verdict import usable


@dataclass(frozen=True)
class Metrics:
    r2: float
    mae_ms: float
    mape: float
    max_error: float  # percent

    @classmethod
    def of(cls, estimate: np.ndarray, measured: np.ndarray, clock_hz: int) -> Metrics:
        residual = estimate - measured
        ss_res = float(np.sum(residual**2))
        ss_tot = float(np.sum((measured - measured.mean()) ** 2)) or 1.0
        relative = np.abs(residual) / measured * 100
        return cls(1 - ss_res / ss_tot, float(np.mean(np.abs(residual))) / clock_hz * 1e3,
                   float(relative.mean()), float(relative.max()))


@dataclass(frozen=True)
class ValidationResult:
    table: pd.DataFrame
    per_op_type: pd.DataFrame
    lut_metrics: Metrics
    proxy_metrics: Metrics
    memory_max_error: float  # percent, arena estimate vs arena used
    appendix_a_ratio: float  # median of Appendix A peak / arena used
    csv_path: Path
    report_path: Path
    timing: Timing


def sample_architectures(space, n: int, seed: int) -> list[Architecture]:
    rng = np.random.default_rng(seed)
    found: dict[str, Architecture] = {}
    for _ in range(50 * n):
        arch = sample_architecture(space, rng)
        found.setdefault(arch.id, arch)
        if len(found) == n:
            break
    return list(found.values())


def validate(space_name: str, window: int, channels: int, classes: int, board: BoardConfig,
             n: int, luts_dir: Path, report_dir: Path, seed: int = 0, port: str = "",
             progress=None, executor=None) -> ValidationResult:
    """`executor`: where the architectures run when not on this host's board (a
    cluster: tinyhil.execute.cluster.DaskExecutor); the table is the same."""
    started = time.monotonic()
    lut_path = space_lut_path(luts_dir, board.name, space_name, (window, channels), classes)
    if not lut_path.exists():
        raise LutError(f"no LUT at {lut_path}: make it with `tinyhil characterize --space "
                       f"{space_name} --input {window}x{channels} --classes {classes} "
                       f"--board {board.name}`")
    report_dir = writable_dir(report_dir, "the validation report")  # before anything is measured
    lut = Lut.load(lut_path, board=board.name)
    space = make_space(space_name, window, channels, classes)
    archs = sample_architectures(space, n, seed)
    for arch in archs:
        check_covered(arch, lut)  # all estimates are possible: say so before any work
    proxy = MacsProxy.fit(lut)
    runner = ImageRunner(board, repeats=3, max_per_image=40, port=port, progress=progress)
    t0 = time.monotonic()
    task = runner.task("convert models", len(archs))
    paths = generate_architecture_models(archs, on_done=lambda _a: runner.advance(task))
    items = [Item(f"arch-{a.id}", TfliteModel.from_bytes(paths[a.id].read_bytes(), f"arch-{a.id}"),
                  int(a.id[:8], 16), a) for a in archs]
    runner.timing.generate_s = time.monotonic() - t0
    # every estimate before the first run: from the architecture and its int8 model
    estimates = {i.subject.id: dict(
        est_lut_cycles=lut_latency(i.subject, lut), est_proxy_cycles=proxy(i.subject),
        appendix_a_bytes=appendix_a_peak(i.subject),
        est_arena_bytes=arena_estimate(i.subject, lut, model_graph(i.model)),
        est_arena_from_arch_bytes=arena_estimate(i.subject, lut)) for i in items}

    rows, per_type = [], defaultdict(lambda: [0.0, 0.0])
    if executor is None:
        measurements = runner.run(items)
    else:  # back in the order the jobs finish: put in the items' order below
        measurements = executor.measure_images(board, pack(items, board, runner.max_per_image),
                                               runner.repeats, runner.warmup)
        order = {item.name: n for n, item in enumerate(items)}
        measurements = sorted(measurements, key=lambda m: order[m.item.name])
    for m in measurements:
        arch: Architecture = m.item.subject
        est = estimates[arch.id]
        converted = sorted(m.item.model.ops)
        expected = sorted(BUILTIN[op.op] for op in arch.runtime().ops)
        row = dict(arch_id=arch.id, space=space_name, n_ops=len(arch.runtime().ops), macs=arch.macs,
                   **est, status=m.status if converted == expected else
                   f"graph: converter made {len(converted)} ops, architecture has {len(expected)}",
                   weights_bytes=arch.weights_bytes, model_bytes=len(m.item.model.flatbuffer),
                   image_flash_bytes=m.image.size.flash if m.image else 0,
                   choices=json.dumps(arch.choices, sort_keys=True))
        if m.cycles:
            row.update(measured_cycles=m.median, arena_used=m.arena_used)
            if converted == expected:
                _per_op_type(arch.runtime(), m.profile, lut, per_type)
        rows.append(row)
    table = pd.DataFrame(rows)
    good = table[table["status"].map(usable)].copy() if "measured_cycles" in table else table.iloc[0:0]
    clock = lut.meta.clock_hz
    for column in ("est_lut_cycles", "est_proxy_cycles", "measured_cycles"):
        table[column.replace("cycles", "ms")] = table.get(column, np.nan) / clock * 1e3
    table["err_lut_pct"] = (table["est_lut_cycles"] / table.get("measured_cycles") - 1) * 100
    table["err_proxy_pct"] = (table["est_proxy_cycles"] / table.get("measured_cycles") - 1) * 100
    table["err_arena_pct"] = (table["est_arena_bytes"] / table.get("arena_used") - 1) * 100
    lut_metrics = Metrics.of(good["est_lut_cycles"].to_numpy(), good["measured_cycles"].to_numpy(), clock)
    proxy_metrics = Metrics.of(good["est_proxy_cycles"].to_numpy(), good["measured_cycles"].to_numpy(), clock)
    memory_error = float((good["est_arena_bytes"] / good["arena_used"] - 1).abs().max() * 100)
    appendix_ratio = float((good["appendix_a_bytes"] / good["arena_used"]).median())
    per_op = pd.DataFrame([dict(op=k, lut_cycles=v[0], device_cycles=v[1],
                                error_pct=(v[0] / v[1] - 1) * 100 if v[1] else np.nan)
                           for k, v in sorted(per_type.items())])

    name = f"validation-{space_name}-{window}x{channels}-c{classes}-{board.name}"  # runs of other inputs kept
    csv_path = atomic_write(report_dir / f"{name}.csv", table.to_csv(index=False))
    runner.timing.wall_s = time.monotonic() - started
    result = ValidationResult(table, per_op, lut_metrics, proxy_metrics, memory_error,
                              appendix_ratio, csv_path, report_dir / f"{name}.html", runner.timing)
    from tinyhil.report.validation import write_report

    write_report(result, lut, board)
    return result


def _per_op_type(arch: Architecture, profile, lut: Lut, totals) -> None:
    """Per op type: LUT kernel cycles against the device's profile of the whole model."""
    device = defaultdict(float)
    for op_name, cycles in profile:
        device[op_name] += cycles
    for op in arch.ops:
        totals[op.op][0] += float(lut.row(op)["kernel_cycles"])
    for op_type, builtin in BUILTIN.items():
        if any(op.op == op_type for op in arch.ops):
            totals[op_type][1] += device[builtin]
