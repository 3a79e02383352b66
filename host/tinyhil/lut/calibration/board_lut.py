"""The calibrated LUT: the emulated LUT's rows in the physical board's
cycles, with metadata saying calibrated, from what and how well; its bounds
read back, and a LUT priced at a bound."""
from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tinyhil import __version__
from tinyhil.lut.calibration.arena import ArenaModel
from tinyhil.lut.calibration.bounds import BOUND, Bounds, check_latency_at
from tinyhil.lut.calibration.cross_validation import FOLDS, Calibration
from tinyhil.lut.calibration.errors import CalibrationError
from tinyhil.lut.calibration.features import kernel_path, prediction_frame
from tinyhil.lut.calibration.models import Line
from tinyhil.lut.table import Lut, LutMeta, row_op
from tinyhil.spaces.ops import OpConfig
from tinyhil.verdict import usable


def calibrated_lut(lut: Lut, calibration: Calibration, frame: pd.DataFrame, board, reference: Path,
                   store_path: Path) -> Lut:
    """The emulated LUT's rows in the physical board's cycles."""
    inputs = prediction_frame(lut, board.flash_cache_bytes)
    rows = lut.rows.copy()
    rows[["cycles", "cycles_min", "cycles_max", "kernel_cycles", "ms"]] = np.nan
    if len(inputs):
        total = calibration.predict(inputs)
        kernel = np.minimum(calibration.predict_kernel(inputs), total)
        spread = total / inputs["emu_cycles"].to_numpy(float)  # repeats' spread, scaled alike
        keys = inputs.index
        rows.loc[keys, "cycles"] = np.round(total)
        rows.loc[keys, "cycles_min"] = np.round(lut.rows.loc[keys, "cycles_min"].to_numpy(float) * spread)
        rows.loc[keys, "cycles_max"] = np.round(lut.rows.loc[keys, "cycles_max"].to_numpy(float) * spread)
        rows.loc[keys, "kernel_cycles"] = np.round(kernel)
        rows.loc[keys, "ms"] = total / board.clock_hz * 1e3
    # ops the board itself measured keep their measurement, not a prediction
    measured = frame.index.intersection(rows.index).intersection(inputs.index) if len(inputs) else []
    if len(measured):
        ref = frame.loc[measured]
        rows.loc[measured, ["cycles", "cycles_min", "cycles_max"]] = ref[["ref_cycles"] * 3].to_numpy()
        if calibration.overhead is not None:
            rows.loc[measured, "kernel_cycles"] = ref["ref_kernel"].to_numpy()
        rows.loc[measured, "ms"] = ref["ref_cycles"].to_numpy() / board.clock_hz * 1e3
    meta = lut.meta
    # A single op's total - kernel is the board's invoke + one dispatch. The
    # per-op dispatch cannot be told apart from single ops: the emulated one,
    # scaled by the line between the boards, is the best guess. The emulated
    # dispatch is net of the profiler hook inside its profiled kernel cycles
    # (characterize._record_overheads); the board's kernel cycles here are
    # totals less the single-op overhead, with no hook in them, so only a
    # non-negative dispatch carries over (a negative per-op cost is no cost).
    slope = Line().fit(frame, "emu_cycles", "ref_cycles").coef["emulated"]
    dispatch = max(0.0, meta.dispatch_cycles) * slope
    if calibration.overhead is not None:
        single_overhead = calibration.overhead
    else:
        single_overhead = (meta.invoke_cycles + meta.dispatch_cycles) * slope
    arena = ArenaModel.fit(frame)
    if arena is not None and len(inputs):
        emulated_arena = lut.rows.loc[inputs.index, "arena_bytes"].to_numpy(float)
        rows.loc[inputs.index, "arena_bytes"] = np.round(arena.predict(inputs["op"], emulated_arena))
    if arena is not None and len(measured):
        known = frame.loc[measured, "ref_arena"].dropna()
        rows.loc[known.index, "arena_bytes"] = known.to_numpy()
    expected = calibration.expected
    # kernel paths no reference row has: the fallback ratio prices them, with the unseen-type bound
    unseen = inputs["op"][~inputs["op"].isin(frame["op"])].value_counts().sort_index() if len(inputs) else {}
    bounds = calibration.bounds.with_unseen(list(unseen.keys())) if calibration.bounds else None
    warnings = [unseen_warning(board.name, dict(unseen), bounds)] if len(unseen) else []
    extra = {**meta.extra, "calibration": {
        "from_lut": str(lut.path), "from_board": meta.board, "from_counter": meta.counter,
        "from_core": meta.core, "emulated_store": str(store_path), "reference": str(reference),
        "reference_rows": calibration.rows, "model": calibration.model.name,
        "measured_rows_kept": len(measured),
        "paths_without_reference": sorted(unseen.keys()) if len(unseen) else [],
        "warnings": warnings,
        "formula": calibration.model.formula(),
        "kernel_cycles": "cycles less the board's single-op overhead" if calibration.overhead is not None
        else "cycles times the emulated kernel share",
        "expected_mape_pct": round(expected.mape, 3), "expected_max_error_pct": round(expected.max_error, 3),
        "chosen_by": "leave one input shape out" if calibration.chosen_by == "grouped" else f"{FOLDS}-fold",
        "shapes": calibration.shapes,
        "geometry_terms": list(getattr(calibration.model, "terms", ())),
        "flash_cache_bytes": board.flash_cache_bytes,  # the flash_refetch term's cache (0: none modelled)
        "cross_validation": {name: {k: round(v, 5) for k, v in asdict(e).items()}
                             for name, e in calibration.cv.items()},
        "grouped_cross_validation": {name: {k: round(v, 5) for k, v in asdict(e).items()}
                                     for name, e in calibration.grouped.items()},
        # an op's cycles at pXX: cycles + fraction x cycles (the kernel carries all of it)
        "bounds": bounds.to_dict() if bounds else None,
        "bound": BOUND,
        "rows_above_bound_pct": None if calibration.above_bound is None
        else round(calibration.above_bound * 100, 3),
        # leaving one input shape out, the share of its rows above each bound taken from the other shapes
        "bound_coverage_pct": None if calibration.coverage is None
        else {name: round(share * 100, 3) for name, share in calibration.coverage.items()},
        # arena_bytes = emulated + offset[op type]; whole models add per_model_bytes once and the
        # rest of each op's offset per op (estimate.memory)
        "arena": arena.to_dict() if arena is not None else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "tinyhil": __version__}}
    new_meta = replace(meta, board=board.name, core=board.core, clock_hz=board.clock_hz,
                       counter=board.counter, invoke_cycles=round(single_overhead - dispatch, 1),
                       dispatch_cycles=round(dispatch, 1), extra=extra,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return Lut(new_meta, rows)


def unseen_warning(board: str, rows_by_path: dict, bounds: Bounds | None, at: str = BOUND,
                   unit: str = "row", where: str = "") -> str:
    """What a calibrated table says of the op types its fit never saw (`unit`:
    what rows_by_path counts, the table's rows or a model's ops, `where`)."""
    listed = ", ".join(f"{path} ({n} {unit}{'' if n == 1 else 's'})" for path, n in rows_by_path.items())
    bound = ""
    if bounds is not None:
        fitted = [b[at] for kind, b in bounds.by_type.items() if kind not in rows_by_path]
        bound = (f"; their {at} bound is the wider one of op types the fit never saw, +{bounds.fallback[at]:.1%}"
                 + (f" (the fitted types' at most +{max(fitted):.1%})" if fitted else ""))
    return (f"no reference row on {board} for {listed}{where}: priced by a rough ratio (the board's invoke cost plus "
            f"the reference's median board/emulated ratio), not by the fitted model{bound}")


def is_calibrated(meta: LutMeta) -> bool:
    return "calibration" in meta.extra


def calibration_warnings(meta: LutMeta, paths=None) -> list[str]:
    """A calibrated LUT's warnings (op types its fit never saw), or those of
    `paths` alone: the kernel paths a model runs."""
    calibration = meta.extra.get("calibration", {})
    unseen = calibration.get("paths_without_reference", [])
    if paths is not None:
        unseen = [p for p in unseen if p in set(paths)]
        if not unseen:
            return []
        return [unseen_warning(meta.board, {p: list(paths).count(p) for p in unseen}, lut_bounds(meta),
                               unit="op", where=" in this model")]
    if "warnings" in calibration:
        return list(calibration["warnings"])
    return [f"no reference row on {meta.board} for {', '.join(unseen)}: priced by a rough ratio, not by the "
            "fitted model"] if unseen else []


def lut_bounds(meta: LutMeta) -> Bounds | None:
    """The bounds a calibrated LUT records (None: measured on its board, or
    calibrated before bounds were kept)."""
    data = meta.extra.get("calibration", {}).get("bounds")
    return Bounds.from_dict(data) if data else None

def cycles_at(meta: LutMeta, op: OpConfig, cycles: float, at: str = "point") -> float:
    """One op's cycles at the point estimate or at a bound (`p95`, ...). A LUT
    measured on its own board has no model error: its bound is the measurement."""
    if check_latency_at(at) == "point":
        return cycles
    bounds = lut_bounds(meta)
    if bounds is None:
        if is_calibrated(meta):
            raise CalibrationError(f"this calibrated LUT for {meta.board} records no bounds; calibrate it again")
        return cycles
    return cycles * (1 + bounds.fraction(kernel_path(op), at))


def priced_at(lut: Lut, at: str) -> Lut:
    """The LUT with every row's cycles (and kernel cycles: the whole margin is
    the kernel's) at the bound: any estimator or search engine given it
    prices latency at the bound."""
    if check_latency_at(at) == "point":
        return lut
    rows = lut.rows.copy()
    for key, r in rows.iterrows():
        if not usable(r["status"]):
            continue
        margin = cycles_at(lut.meta, row_op(r), float(r["cycles"]), at) - float(r["cycles"])
        for column in ("cycles", "cycles_min", "cycles_max", "kernel_cycles"):
            rows.at[key, column] = float(r[column]) + margin
        rows.at[key, "ms"] = float(rows.at[key, "cycles"]) / lut.meta.clock_hz * 1e3
    meta = replace(lut.meta, extra={**lut.meta.extra, "priced_at": at})
    return Lut(meta, rows, lut.path)
