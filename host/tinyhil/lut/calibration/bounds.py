"""Bounds: how far above its prediction a new op may run (upper quantiles
of the held-out excess of board cycles over the prediction)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tinyhil.lut.calibration.errors import CalibrationError

QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
BOUND = "p95"  # the bound printed and checked; the others are kept for --latency-at
MIN_PATH_ROWS = 8  # fewer rows give no quantile of their own: the largest of the paths'


def excess(predicted, measured) -> np.ndarray:
    """How much more than predicted the board ran, as a fraction (>0: optimistic)."""
    return np.asarray(measured, float) / np.asarray(predicted, float) - 1


def upper_quantile(values, q: float, groups=None) -> float:
    """The split-conformal upper quantile: the ceil((n+1) q)-th smallest of n
    held-out values, which a new value exceeds with probability <= 1 - q.
    With `groups` (input shapes) each shape weighs as one, however many rows
    it has, and the new value's shape counts as one more: the smallest value
    whose shape-weighted rank reaches q x (shapes + 1). Rows of one shape err
    together, and the next data set is a new shape: a shape measured 49 times
    must not outvote one measured 7 times (one row per shape: the plain rule)."""
    values = np.asarray(values, float)
    if groups is None:
        ordered = np.sort(values)
        return float(ordered[min(len(ordered) - 1, math.ceil((len(ordered) + 1) * q) - 1)])
    groups = pd.Series(np.asarray(groups))
    weights = 1.0 / groups.map(groups.value_counts()).to_numpy(float)
    order = np.argsort(values, kind="stable")
    reached = np.cumsum(weights[order]) >= q * (groups.nunique() + 1) - 1e-9
    return float(values[order][np.argmax(reached)] if reached.any() else values[order][-1])


@dataclass(frozen=True)
class Bounds:
    """Upper quantiles of held-out excess per kernel path: an op's bound at
    pXX is its prediction times (1 + quantile). Each path's quantile is at
    least the pooled one (a path's rows come from fewer shapes than all rows
    do); a path with few rows, and op types without reference rows, take the
    largest quantile any path has. Given the rows' input shapes, each shape
    weighs as one in the quantiles (`upper_quantile`)."""

    by_path: dict  # path -> {"p95": fraction, ...}
    fallback: dict  # {"p95": fraction, ...}

    @classmethod
    def fit(cls, paths, predicted, measured, groups=None) -> Bounds:
        frame = pd.DataFrame({"path": np.asarray(paths), "excess": excess(predicted, measured)})
        if groups is not None:
            frame["group"] = np.asarray(groups)
        pooled = {name: max(0.0, upper_quantile(frame["excess"], q, frame.get("group")))
                  for name, q in QUANTILES.items()}
        by_path = {path: {name: max(pooled[name], upper_quantile(g["excess"], q, g.get("group")))
                          for name, q in QUANTILES.items()}
                   for path, g in frame.groupby("path") if len(g) >= MIN_PATH_ROWS}
        fallback = {name: max([pooled[name]] + [b[name] for b in by_path.values()]) for name in QUANTILES}
        return cls(by_path, fallback)

    def fraction(self, path: str, at: str = BOUND) -> float:
        if at not in QUANTILES:
            raise CalibrationError(f"latency at {at!r}: one of point, {', '.join(QUANTILES)}")
        return self.by_path.get(path, self.fallback)[at]

    def to_dict(self) -> dict:
        return {"by_path": {p: {k: round(v, 5) for k, v in b.items()} for p, b in self.by_path.items()},
                "fallback": {k: round(v, 5) for k, v in self.fallback.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Bounds:
        return cls(dict(data["by_path"]), dict(data["fallback"]))


def rows_above_bound(frame: pd.DataFrame, predicted: np.ndarray, at: str = BOUND) -> np.ndarray:
    """Which rows ran above their bound, each bound taken from the held-out
    predictions of the *other* shapes only (the row's own shape neither
    fitted the model nor set the quantile): the rate a new shape will see."""
    measured = frame["ref_cycles"].to_numpy(float)
    groups = frame["group"].to_numpy()
    paths = frame["op"].to_numpy()
    above = np.zeros(len(frame), bool)
    for group in dict.fromkeys(groups):
        held = groups == group
        bounds = Bounds.fit(paths[~held], predicted[~held], measured[~held], groups[~held])
        factor = np.array([1 + bounds.fraction(p, at) for p in paths[held]])
        above[held] = measured[held] > predicted[held] * factor
    return above


def check_latency_at(at: str) -> str:
    if at != "point" and at not in QUANTILES:
        raise CalibrationError(f"latency at {at!r}: one of point, {', '.join(QUANTILES)}")
    return at
