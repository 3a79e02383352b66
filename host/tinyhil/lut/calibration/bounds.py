"""Bounds: how far above its prediction a new op may run (upper quantiles
of the held-out excess of board cycles over the prediction), and how often
held-out rows ran above them.

Each bound is named for the share of new ops it should leave above it (p95:
5 %), and is checked for that: leaving one input shape out, the share of that
shape's rows above the bound taken from the other shapes alone (`coverage`).
An op type's rows give its own quantiles; rows of one shape err together,
so where the plain quantile leaves more rows above it than its name allows,
its level is raised until it does not (`calibrated_level`). An op type without
reference rows is priced by the fallback ratio (models.RatioFallback), whose
error the op types of the reference show when each is left out in turn
(`unseen_type_excess`): those rows get that wider bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from tinyhil.lut.calibration.errors import CalibrationError
from tinyhil.lut.calibration.features import op_type
from tinyhil.lut.calibration.models import RatioFallback

QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
BOUND = "p95"  # the bound printed and checked; the others are kept for --latency-at
COVERAGE = ("p90", "p95", "p99")  # the bounds whose coverage is printed beside the targets
MIN_T_ROWS = 5  # fewer rows give an op type no bound of its own: the pooled rows' bound
RANK_ROWS = 19  # the fewest rows that rank a p95: ceil((n + 1) 0.95) <= n
LEVEL_STEPS = 10  # levels tried for pXX: q, q + (1 - q)/10, ..., q + 9 (1 - q)/10


def excess(predicted, measured) -> np.ndarray:
    """How much more than predicted the board ran, as a fraction (>0: optimistic)."""
    return np.asarray(measured, float) / np.asarray(predicted, float) - 1


def upper_quantile(values, q: float, groups=None) -> float:
    """The split-conformal upper quantile: the ceil((n+1) q)-th smallest of n
    held-out values, which a new value exceeds with probability <= 1 - q
    (the largest when n is too small for that rank). With `groups` each
    group weighs as one, however many values it has, and the new value's
    group counts as one more: the smallest value whose group-weighted rank
    reaches q x (groups + 1) (the op types of `unseen_type_excess`: a new op
    type is one more type, and 501 convolutions must not outvote 8 adds)."""
    values = np.asarray(values, float)
    if groups is None:
        ordered = np.sort(values)
        return float(ordered[min(len(ordered) - 1, math.ceil((len(ordered) + 1) * q) - 1)])
    groups = pd.Series(np.asarray(groups))
    weights = 1.0 / groups.map(groups.value_counts()).to_numpy(float)
    order = np.argsort(values, kind="stable")
    reached = np.cumsum(weights[order]) >= q * (groups.nunique() + 1) - 1e-9
    return float(values[order][np.argmax(reached)] if reached.any() else values[order][-1])


def rows_bound(values, q: float) -> float | None:
    """pXX of one op type's held-out excesses (None for fewer than MIN_T_ROWS):
    the split-conformal rank where the rows reach it."""
    values = np.asarray(values, float)
    n = len(values)
    if n < MIN_T_ROWS:
        return None
    if n >= RANK_ROWS and math.ceil((n + 1) * q) <= n:
        return upper_quantile(values, q)
    # small samples (< 19 rows, or a level past the last rank): Student-t bound mean + t(q, n-1) s sqrt(1 + 1/n)
    return float(values.mean() + stats.t.ppf(q, n - 1) * values.std(ddof=1) * math.sqrt(1 + 1 / n))


def type_quantiles(types, values, q: float) -> tuple[dict, float]:
    """Each op type's bound at level q, and the pooled one. A type of fewer
    than MIN_T_ROWS rows takes the pooled one, or its own largest excess if
    larger (all rows fewer: their largest)."""
    types, values = np.asarray(types), np.asarray(values, float)
    pooled = rows_bound(values, q)
    pooled = (float(values.max()) if len(values) else 0.0) if pooled is None else pooled
    by_type = {}
    for kind in dict.fromkeys(types):
        mine = values[types == kind]
        own = rows_bound(mine, q)
        own = max(pooled, float(mine.max())) if own is None else own
        by_type[kind] = max(0.0, own)  # a bound is never below the prediction
    return by_type, max(0.0, pooled)


def _shapes_above(types, values, groups, q: float) -> np.ndarray:
    """Rows above their bound at level q, each bound from the other shapes' rows."""
    above = np.zeros(len(values), bool)
    for group in dict.fromkeys(groups):
        held = groups == group
        if held.all():
            continue
        by_type, pooled = type_quantiles(types[~held], values[~held], q)
        above[held] = values[held] > np.array([by_type.get(t, pooled) for t in types[held]])
    return above


def calibrated_level(types, values, groups, q: float) -> float:
    """The lowest level from q up (LEVEL_STEPS of them) whose bounds, each
    shape held out, leave at most 1 - q of the rows above them: rows of a
    shape err together, so a new shape can run above a plain quantile more
    often than its name says. Where no level does (too few shapes to tell),
    the one that leaves the fewest above (q among equals)."""
    types, values, groups = np.asarray(types), np.asarray(values, float), np.asarray(groups)
    best, fewest = q, math.inf
    for step in range(LEVEL_STEPS):
        level = q + step * (1 - q) / LEVEL_STEPS
        share = _shapes_above(types, values, groups, level).mean()
        if share <= 1 - q + 1e-12:
            return level
        if share < fewest:
            best, fewest = level, share
    return best


def unseen_type_excess(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(op types, excess) of each op type's rows as the fallback ratio prices
    them when that type is left out of the fit: how far an op type the fit
    never saw may run above its prediction."""
    types = frame["op"].map(op_type).to_numpy()
    found_types, found = [], []
    for kind in dict.fromkeys(types):
        held = types == kind
        if held.all():
            break
        fallback = RatioFallback.fit(frame[~held], "emu_cycles", "ref_cycles")
        found.append(excess(fallback.predict(frame[held], "emu_cycles"), frame["ref_cycles"][held]))
        found_types += [kind] * int(held.sum())
    return np.asarray(found_types), np.concatenate(found) if found else np.array([])


@dataclass(frozen=True)
class Bounds:
    """Upper quantiles of held-out excess per op type: an op's bound at pXX
    is its prediction times (1 + quantile), taken at `levels[pXX]`
    (calibrated_level), each at least the bound below it. `fallback`: op
    types without reference rows, at least every type's bound and the
    fallback ratio's largest error on a type left out (with 2-4 types no rank
    finer than the largest exists)."""

    by_type: dict  # op type -> {"p95": fraction, ...}
    fallback: dict  # {"p95": fraction, ...}
    levels: dict = field(default_factory=dict)  # {"p95": the quantile level the types' bounds are at, ...}

    @classmethod
    def fit(cls, paths, predicted, measured, groups=None, fallback_rows=None, unseen=None) -> Bounds:
        """`paths`: the rows' kernel paths; `groups`: their input shapes
        (levels are calibrated on them when there are 3 or more);
        `fallback_rows`: rows the fallback ratio predicted (their path unseen
        in their fold), left to `unseen`, the (types, excess) of `unseen_type_excess`."""
        types, values = np.array([op_type(p) for p in np.asarray(paths)]), excess(predicted, measured)
        seen = np.ones(len(types), bool) if fallback_rows is None else ~np.asarray(fallback_rows, bool)
        groups = None if groups is None else np.asarray(groups)[seen]
        calibrate = groups is not None and len(set(groups)) >= 3
        by_type: dict = {}
        fallback: dict = {}
        levels: dict = {}
        for name, q in sorted(QUANTILES.items(), key=lambda item: item[1]):
            levels[name] = calibrated_level(types[seen], values[seen], groups, q) if calibrate else q
            own, pooled = type_quantiles(types[seen], values[seen], levels[name]) if seen.any() else ({}, 0.0)
            for kind, value in own.items():
                below = list(by_type.get(kind, {}).values())
                by_type.setdefault(kind, {})[name] = max([value, *below])
            widest = [pooled, *(b[name] for b in by_type.values()), *fallback.values()]
            if unseen is not None and len(unseen[1]):
                widest.append(upper_quantile(unseen[1], q, unseen[0]))
            fallback[name] = max(0.0, *widest)
        return cls(by_type, fallback, levels)

    def with_unseen(self, paths) -> Bounds:
        """These kernel paths, which the fallback ratio prices, named with the unseen-type bound."""
        return Bounds({**self.by_type, **{path: dict(self.fallback) for path in paths}}, self.fallback, self.levels)

    def fraction(self, path: str, at: str = BOUND) -> float:
        """The bound of a kernel path's op type (a LUT calibrated before bounds
        were per op type keeps them per kernel path)."""
        if at not in QUANTILES:
            raise CalibrationError(f"latency at {at!r}: one of point, {', '.join(QUANTILES)}")
        return self.by_type.get(path, self.by_type.get(op_type(path), self.fallback))[at]

    def to_dict(self) -> dict:
        return {"by_type": {t: {k: round(v, 5) for k, v in b.items()} for t, b in self.by_type.items()},
                "fallback": {k: round(v, 5) for k, v in self.fallback.items()},
                "levels": {k: round(v, 5) for k, v in self.levels.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Bounds:
        return cls(dict(data.get("by_type", data.get("by_path", {}))), dict(data["fallback"]),
                   dict(data.get("levels", {})))


def fallback_rows(paths, splits) -> np.ndarray:
    """Rows whose kernel path no fitted row of their fold had: the fallback ratio predicted them."""
    paths = np.asarray(paths)
    found = np.zeros(len(paths), bool)
    for fit, held in splits:
        found[held] = ~np.isin(paths[held], paths[fit])
    return found


def rows_above_bounds(frame: pd.DataFrame, predicted: np.ndarray, unseen_rows=None) -> dict[str, np.ndarray]:
    """Which rows ran above their bound, at each pXX, every bound (its
    quantiles, its level, the unseen-type bound) taken from the other shapes
    only: the row's own shape neither fitted the model nor set the bound, so
    the share above is what a new shape will see. `unseen_rows`: rows the
    fallback ratio predicted (fallback_rows), judged against the unseen-type bound."""
    measured = frame["ref_cycles"].to_numpy(float)
    groups, paths = frame["group"].to_numpy(), frame["op"].to_numpy()
    unseen_rows = np.zeros(len(frame), bool) if unseen_rows is None else np.asarray(unseen_rows, bool)
    above = {name: np.zeros(len(frame), bool) for name in QUANTILES}
    for group in dict.fromkeys(groups):
        held = groups == group
        if held.all():
            continue
        bounds = Bounds.fit(paths[~held], predicted[~held], measured[~held], groups[~held], unseen_rows[~held],
                            unseen_type_excess(frame[~held]))
        values = excess(predicted[held], measured[held])
        for name in QUANTILES:
            bound = np.array([bounds.fallback[name] if alone else bounds.fraction(p, name)
                              for p, alone in zip(paths[held], unseen_rows[held])])
            above[name][held] = values > bound
    return above


def check_latency_at(at: str) -> str:
    if at != "point" and at not in QUANTILES:
        raise CalibrationError(f"latency at {at!r}: one of point, {', '.join(QUANTILES)}")
    return at
