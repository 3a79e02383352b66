"""`tinyhil bench characterize`: a space characterized from empty caches by
each flow in one run: the converter's models packed into images, the
directly written models packed, and MicroNAS' one op per image; then the
instruction counts of the two model makers side by side, op by op.

Each flow gets its own model and image caches, so nothing one flow made is
found by the next. TFLM stays compiled in the project's build directory and
PlatformIO's object cache is left as it is: changing it makes PlatformIO
clean the build directory (TFLM compiled again), and the only image object
it could hold, image.o, compiles in a tenth of a second.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tinyhil.board_catalog import BoardConfig
from tinyhil.lut.table import read_rows
from tinyhil.measure.characterize import Characterizer, CharacterizeResult
from tinyhil.models.single_op import CONVERTER, DIRECT
from tinyhil.spaces import make_space

PACKED_FLOWS = (CONVERTER, DIRECT)
PER_IMAGE = "per-image"  # one op per firmware image, as MicroNAS measures (converter models)
FLOWS = (*PACKED_FLOWS, PER_IMAGE)
SPEEDUP_TARGET = 3.0  # direct against converter, whole space
COUNT_TARGET_PERCENT = 0.5  # largest per-op instruction-count difference, direct against converter
MINUTES_TARGET = {("timenas", 100, 6): 3.0}  # wall time of the direct flow


@dataclass(frozen=True)
class FlowResult:
    flow: str
    result: CharacterizeResult
    ops_in_space: int

    @property
    def wall_s(self) -> float:
        return self.result.timing.wall_s

    @property
    def seconds_per_op(self) -> float:
        return self.wall_s / max(1, self.result.measured_now)

    @property
    def whole_space_s(self) -> float:
        """Measured, or (for a subset) projected at the subset's rate."""
        if self.result.measured_now >= self.ops_in_space:
            return self.wall_s
        return self.seconds_per_op * self.ops_in_space

    @property
    def rows(self) -> pd.DataFrame:
        return read_rows(self.result.lut_path.parent / "ops.csv")


@dataclass(frozen=True)
class CountComparison:
    """Per-op counts of the two makers' models (rows of both, by op key)."""

    table: pd.DataFrame  # key -> op, converter, direct, diff_percent, kernel diff, arena both

    @classmethod
    def of(cls, converter: pd.DataFrame, direct: pd.DataFrame) -> CountComparison:
        common = converter.index.intersection(direct.index)
        a, b = converter.loc[common], direct.loc[common]
        table = pd.DataFrame({
            "op": a["op"],
            "converter": a["cycles"].astype(float),
            "direct": b["cycles"].astype(float),
            "kernel_converter": a["kernel_cycles"].astype(float),
            "kernel_direct": b["kernel_cycles"].astype(float),
            "arena_converter": a["arena_bytes"],
            "arena_direct": b["arena_bytes"],
        })
        table["diff_percent"] = (table["direct"] - table["converter"]) / table["converter"] * 100
        table["kernel_diff_percent"] = ((table["kernel_direct"] - table["kernel_converter"])
                                        / table["kernel_converter"] * 100)
        return cls(table)

    @property
    def largest(self) -> tuple[str, float]:
        """(op key, signed %) of the largest absolute difference."""
        return self._largest(self.table)

    @staticmethod
    def _largest(table: pd.DataFrame) -> tuple[str, float]:
        if table.empty:
            return "", float("nan")
        key = table["diff_percent"].abs().idxmax()
        return key, float(table.loc[key, "diff_percent"])

    def by_type(self) -> pd.DataFrame:
        return self.table.groupby("op").agg(
            ops=("diff_percent", "size"),
            max_abs_percent=("diff_percent", lambda d: d.abs().max()),
            mean_percent=("diff_percent", "mean"),
            kernel_max_abs_percent=("kernel_diff_percent", lambda d: d.abs().max()))

    def furthest(self, n: int) -> pd.DataFrame:
        order = self.table["diff_percent"].abs().sort_values(ascending=False).index
        return self.table.loc[order[:n]]


def run_flow(flow: str, board: BoardConfig, scratch: Path, space: str, window: int, channels: int,
             classes: int, per_image_ops: int, progress=None) -> FlowResult:
    """One flow from empty caches (its own directory under `scratch`)."""
    root = scratch / flow
    os.environ["TINYHIL_CACHE_DIR"] = str(root / "cache")
    total = len(make_space(space, window, channels, classes).op_configs())
    if flow == PER_IMAGE:
        characterizer = Characterizer(board, root / "luts", max_per_image=1, progress=progress,
                                      model_maker=CONVERTER)
        result = characterizer.run(space, window, channels, classes, limit=per_image_ops)
    else:
        characterizer = Characterizer(board, root / "luts", progress=progress, model_maker=flow)
        result = characterizer.run(space, window, channels, classes)
    return FlowResult(flow, result, total)


def bench_characterize(board: BoardConfig, space: str, window: int, channels: int, classes: int,
                       flows: tuple[str, ...] = FLOWS, per_image_ops: int = 10, progress=None,
                       on_flow=None) -> tuple[dict[str, FlowResult], CountComparison | None]:
    """Runs the flows one after another; `on_flow(FlowResult)` as each ends."""
    saved = {name: os.environ.get(name) for name in ("TINYHIL_CACHE_DIR",)}
    results: dict[str, FlowResult] = {}
    comparison = None
    try:
        with tempfile.TemporaryDirectory(prefix="tinyhil-bench-") as scratch:
            for flow in flows:
                results[flow] = run_flow(flow, board, Path(scratch), space, window, channels, classes,
                                         per_image_ops, progress)
                if on_flow:
                    on_flow(results[flow])
            if all(f in results for f in PACKED_FLOWS):
                comparison = CountComparison.of(results[CONVERTER].rows, results[DIRECT].rows)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return results, comparison
