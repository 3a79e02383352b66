"""Calibration: an emulated board's LUT -> a physical board's LUT, from a few
ops measured on both.

Emulated boards count instructions, not cycles. Given reference rows (ops
measured on the physical board) and the same ops measured on the emulated
board, a small regression maps emulated counts and op features to board
cycles. Candidate models go from the simplest (one straight line) to a slope
per kernel path with size terms (least squares, or non-negative least
squares); cross-validation on the reference rows picks one and tells its
expected error. The calibrated LUT has
the emulated LUT's rows with predicted cycles, and metadata that says it is
calibrated, from what, and how well.

Fits minimise *relative* error (each row weighted by 1/cycles): small ops
matter as much as large ones to an estimator that adds them up.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from tinyhil import __version__
from tinyhil.errors import TinyhilError
from tinyhil.lut.reference import ReferenceSet
from tinyhil.lut.table import Lut, LutMeta, row_op
from tinyhil.spaces.ops import CONV, OpConfig
from tinyhil.verdict import usable

MIN_ROWS = 4  # fewer leaves nothing to cross-validate a line with
FOLDS = 5


class CalibrationError(TinyhilError):
    """Calibration cannot be made from what was given."""


@dataclass(frozen=True)
class FitErrors:
    mape: float  # percent
    max_error: float  # percent
    r2: float

    @classmethod
    def of(cls, predicted: np.ndarray, measured: np.ndarray) -> FitErrors:
        predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
        relative = np.abs(predicted - measured) / measured * 100
        ss_tot = float(np.sum((measured - measured.mean()) ** 2)) or 1.0
        r2 = 1 - float(np.sum((predicted - measured) ** 2)) / ss_tot
        return cls(float(relative.mean()), float(relative.max()), r2)


# ---------------------------------------------------------------------------
# The data a model sees: one row per op, emulated counts and op features.

def kernel_path(op: OpConfig) -> str:
    """The op type, refined by which CMSIS-NN kernel runs it: a 1x1 stride-1
    convolution over a multiple of 4 channels takes the fast path with no
    im2col, whose loops cost the board other cycles per instruction."""
    if op.op == CONV and op.kernel == (1, 1) and op.strides == (1, 1) and op.in_channels % 4 == 0:
        return f"{CONV}-1x1"
    return op.op


def _valid_taps(length: int, out: int, kernel: int, stride: int, padding: str) -> int:
    """Kernel taps inside the input, summed over the output positions of one
    axis (TFLite's `same` pads the smaller half before the data)."""
    if padding != "same":
        return out * kernel
    before = max((out - 1) * stride + kernel - length, 0) // 2
    return sum(min(o * stride - before + kernel, length) - max(o * stride - before, 0) for o in range(out))


FLASH_LINE = 16  # bytes a flash cache line holds (the STM32 ART accelerator's 128 bits)


def weights_working_set(op: OpConfig) -> int:
    """Weight bytes a convolution's matrix loop streams again and again: the
    1x1 kernel (arm_nn_mat_mult_nt_t_s8) keeps two output channels' rows
    while it walks every pixel; the im2col kernel (arm_nn_mat_mult_kernel_s8_s16)
    walks every output channel's row for each pair of pixels."""
    if op.op != CONV:
        return 0
    row = op.kernel[0] * op.kernel[1] * op.in_channels
    return 2 * row if kernel_path(op) == f"{CONV}-1x1" else op.out_channels * row


def flash_refetch_lines(op: OpConfig, flash_cache_bytes: int) -> float:
    """Weight lines read from flash again because the board's flash data cache
    cannot hold the loop's working set (0 without a modelled cache). The
    weights sit in flash; a loop that cycles over as many lines as the cache
    has (or more) misses on every line under LRU, since the loop's other
    flash reads (bias, literals) or a line the rows straddle take one. Each
    weight byte then comes from flash once per pass, and a pass serves two
    pixels (or two output channels' rows): MACs / (2 x line) lines. The
    emulated board has no flash wait states, so only the board pays them."""
    working_set = weights_working_set(op)
    if not flash_cache_bytes or not working_set:
        return 0.0
    if math.ceil(working_set / FLASH_LINE) < flash_cache_bytes // FLASH_LINE:
        return 0.0
    return float(op.macs) / (2 * FLASH_LINE)


def geometry_features(op: OpConfig, flash_cache_bytes: int = 0) -> dict:
    """Counts of the loops whose board cycles per instruction differ most from
    the bulk MAC loop, for the geometries other sizes do not predict: im2col
    copies (one call per kernel tap inside the input: many for a 128x9x1
    first layer), padded taps (zero fill: a 1x15 kernel over 15 sensors is
    mostly padding), MACs left over by the kernels' blocked loops (4 for the
    im2col kernel, 16 for the 1x1 kernel), the 1-3 channels each im2col
    copy does one by one, and weight lines the board's flash cache misses."""
    none = dict(im2col_calls=0.0, pad_taps=0.0, tail_macs=0.0, in_tail=0.0, flash_refetch=0.0)
    if op.op != CONV:
        return none
    (ih, iw, cin), (oh, ow, cout) = op.input_shape, op.output_shape
    (kh, kw), (sh, sw) = op.kernel, op.strides
    path = kernel_path(op)
    block = 16 if path == f"{CONV}-1x1" else 4
    tail_macs = float(oh * ow * cout * ((kh * kw * cin) % block))
    refetch = flash_refetch_lines(op, flash_cache_bytes)
    if path != CONV:
        return none | dict(tail_macs=tail_macs, flash_refetch=refetch)
    valid = _valid_taps(ih, oh, kh, sh, op.padding) * _valid_taps(iw, ow, kw, sw, op.padding)
    return dict(im2col_calls=float(valid), pad_taps=float((oh * ow * kh * kw - valid) * cin),
                tail_macs=tail_macs, in_tail=float(valid * (cin % 4)), flash_refetch=refetch)


GEOMETRY = ("im2col_calls", "pad_taps", "tail_macs", "in_tail", "flash_refetch")
# terms of the board, not of one kernel path: one coefficient for every path
# (a flash line costs the same wait states whichever loop asks for it), so a
# path whose fitted rows never missed the cache still learns the cost from
# the paths whose rows did
BOARD_TERMS = ("flash_refetch",)


def op_features(op: OpConfig, flash_cache_bytes: int = 0) -> dict:
    """Sizes of an op known before anything runs; `group` is its input shape
    (the unit a user's next data set changes: grouped cross-validation holds
    out one at a time). `flash_cache_bytes`: the physical board's flash data
    cache (boards.BoardConfig), 0 when none is modelled."""
    out_pixels = op.output_bytes / op.out_channels
    path = kernel_path(op)
    return dict(op=path, group="x".join(map(str, op.input_shape)), macs=float(op.macs),
                out_elems=float(op.output_bytes), out_pixels=out_pixels,
                im2col=float(op.macs / op.out_channels) if path == CONV else 0.0,
                in_elems=float(op.n_inputs * op.input_bytes), **geometry_features(op, flash_cache_bytes))


def training_frame(reference: ReferenceSet, emulated: pd.DataFrame, flash_cache_bytes: int = 0) -> pd.DataFrame:
    """Reference rows joined with the emulated rows of the same ops (by key)."""
    rows = []
    for ref in reference.rows:
        if ref.op.key not in emulated.index:
            continue
        emu = emulated.loc[ref.op.key]
        if not usable(emu["status"]):
            continue
        rows.append(dict(key=ref.op.key, line=ref.line, **op_features(ref.op, flash_cache_bytes),
                         emu_cycles=float(emu["cycles"]), emu_kernel=float(emu["kernel_cycles"]),
                         emu_arena=float(emu["arena_bytes"]), ref_cycles=ref.cycles_total,
                         ref_kernel=ref.cycles_kernel, ref_arena=ref.arena_used))
    return pd.DataFrame(rows).set_index("key", drop=False) if rows else pd.DataFrame()


def prediction_frame(lut: Lut, flash_cache_bytes: int = 0) -> pd.DataFrame:
    """The emulated LUT's usable rows as a model's input."""
    rows = []
    for key, r in lut.rows.iterrows():
        if not usable(r["status"]):
            continue
        op = row_op(r)
        rows.append(dict(key=key, **op_features(op, flash_cache_bytes), emu_cycles=float(r["cycles"]),
                         emu_kernel=float(r["kernel_cycles"])))
    return pd.DataFrame(rows).set_index("key", drop=False)


# ---------------------------------------------------------------------------
# Models, simplest first. Each: fit(frame, source, target) then predict(frame).

def _relative_lstsq(design: np.ndarray, target: np.ndarray, nonnegative: bool) -> np.ndarray:
    """Least squares of relative residuals; columns scaled for conditioning."""
    weighted = design / target[:, None]
    scale = np.linalg.norm(weighted, axis=0)
    scale[scale == 0] = 1.0
    ones = np.ones_like(target)
    if nonnegative:
        coef, _ = nnls(weighted / scale, ones)
    else:
        coef = np.linalg.lstsq(weighted / scale, ones, rcond=None)[0]
    return coef / scale


def independent_columns(columns: dict[str, np.ndarray], target: np.ndarray) -> list[str]:
    """The columns, in order, that the fitted rows tell apart: one that is zero
    or a combination of earlier ones on these rows (an add's MACs are its
    outputs) is left out, so each coefficient that is printed means something."""
    kept: list[str] = []
    basis: list[np.ndarray] = []  # orthonormal, spanning the kept columns
    for name, values in columns.items():
        column = values / target
        norm = np.linalg.norm(column)
        if norm == 0:
            continue
        residual = column / norm
        for _ in range(2):  # twice: Gram-Schmidt loses orthogonality once
            for b in basis:
                residual = residual - (b @ residual) * b
        if np.linalg.norm(residual) > 1e-7:
            kept.append(name)
            basis.append(residual / np.linalg.norm(residual))
    return kept


@dataclass(frozen=True)
class RatioFallback:
    """For an op type no reference row has: the board's fixed invoke cost (total
    less kernel, as the reference measured it) plus the emulated rest times the
    median ratio of board cycles to emulated counts. No size terms: they were
    learnt on other loops."""

    base_board: float
    base_emulated: float
    ratio: float

    @classmethod
    def fit(cls, frame: pd.DataFrame, source: str, target: str) -> RatioFallback:
        base_board = base_emulated = 0.0
        if source == "emu_cycles" and "ref_kernel" in frame and frame["ref_kernel"].notna().all():
            base_board = float(np.median(frame[target] - frame["ref_kernel"]))
            base_emulated = float(np.median(frame["emu_cycles"] - frame["emu_kernel"]))
        ratio = float(np.median((frame[target] - base_board) / (frame[source] - base_emulated)))
        return cls(base_board, base_emulated, ratio)

    def predict(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        return self.base_board + self.ratio * (frame[source].to_numpy(float) - self.base_emulated)


@dataclass
class LinearModel:
    """target = sum of coefficient x column; columns named for the explanation."""

    name: str
    description: str
    nonnegative: bool = False
    coef: dict = field(default_factory=dict)
    source: str = "emu_cycles"
    min_type_rows: int = 3
    clip: bool = True  # keep each path's predictions within the ratios its rows showed
    emulated_terms: bool = True  # False: a proxy that never looks at the emulated board

    def columns(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def fresh(self) -> LinearModel:
        """An unfitted model of the same form (cross-validation fits one per fold)."""
        return type(self)()

    def fit(self, frame: pd.DataFrame, source: str, target: str) -> LinearModel:
        self.source = source
        counts = frame["op"].value_counts()
        self.seen_types = sorted(counts.index)
        self.type_rows = {t: int(n) for t, n in counts.items()}
        self.fitted_types = sorted(t for t, n in counts.items() if n >= self.min_type_rows)  # own terms
        columns = self.columns(frame)
        target_values = frame[target].to_numpy(float)
        kept = independent_columns(columns, target_values)
        coef = _relative_lstsq(np.column_stack([columns[name] for name in kept]), target_values,
                               self.nonnegative)
        self.coef = dict.fromkeys(columns, 0.0) | {name: float(c) for name, c in zip(kept, coef)}
        self.fallback = RatioFallback.fit(frame, source, target)
        # board/emulated ratios (beyond the fixed invoke cost) each path showed:
        # size terms never extrapolate beyond them
        fb = self.fallback
        ratio = (frame[target].to_numpy(float) - fb.base_board) / (frame[source].to_numpy(float) - fb.base_emulated)
        self.ratio_range = {t: (float(r.min()), float(r.max()))
                            for t, r in pd.Series(ratio, frame.index).groupby(frame["op"])}
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        columns = self.columns(frame)
        predicted = sum(self.coef.get(name, 0.0) * values for name, values in columns.items())
        if not self.emulated_terms:
            return predicted
        unseen = ~frame["op"].isin(self.seen_types).to_numpy()
        if unseen.any():
            predicted = np.where(unseen, self.fallback.predict(frame, self.source), predicted)
        if not self.clip:
            return predicted
        fb = self.fallback
        rest = frame[self.source].to_numpy(float) - fb.base_emulated
        for path, (low, high) in self.ratio_range.items():
            rows = (frame["op"] == path).to_numpy()
            clipped = fb.base_board + np.clip(predicted - fb.base_board, low * rest, high * rest)
            predicted = np.where(rows, clipped, predicted)
        return predicted

    def formula(self) -> str:
        return " + ".join(f"{c:.4g}*{name}" if name != "1" else f"{c:.4g}"
                          for name, c in self.coef.items() if c != 0) or "0"


class MacsLine(LinearModel):
    """The usual FLOPs proxy: cycles = a x MACs + b. A baseline, not a candidate."""

    def __init__(self):
        super().__init__("macs-line", "cycles = a x MACs + b (FLOPs baseline)", emulated_terms=False)

    def columns(self, frame):
        return {"macs": frame["macs"].to_numpy(float), "1": np.ones(len(frame))}


class Line(LinearModel):
    def __init__(self):
        super().__init__("line", "cycles = a x emulated + b")

    def columns(self, frame):
        return {"emulated": frame[self.source].to_numpy(float), "1": np.ones(len(frame))}


class PerTypeLine(LinearModel):
    """A line per op type (types with too few rows share the global line)."""

    def __init__(self):
        super().__init__("per-op-type", "cycles = a[type] x emulated + b[type]")

    def columns(self, frame):
        emu = frame[self.source].to_numpy(float)
        shared = ~frame["op"].isin(self.fitted_types).to_numpy()
        cols = {"emulated": emu * shared, "1": shared.astype(float)}
        for t in self.fitted_types:
            mask = (frame["op"] == t).to_numpy(float)
            cols[f"emulated[{t}]"] = emu * mask
            cols[f"1[{t}]"] = mask
        return cols


class _TypeLines(LinearModel):
    """Shared pieces: a slope per kernel path (`op` column), one intercept
    (the board's fixed cost of an invoke), then size terms."""

    FEATURES = ("macs", "out_elems", "out_pixels", "im2col", "in_elems")
    per_path_features = False

    def columns(self, frame):
        emu = frame[self.source].to_numpy(float)
        paths = frame["op"].to_numpy()
        masks = {t: (paths == t).astype(float) for t in self.seen_types}
        cols = {"1": np.ones(len(frame))}  # op types never fitted: see RatioFallback
        for t in self.seen_types:
            cols[f"emulated[{t}]"] = emu * masks[t]
        # a path with enough rows gets its own size terms; the others share
        # some, if they have rows enough between them (else they would fit noise)
        own = self.fitted_types if self.per_path_features else []
        rest = (~np.isin(paths, own)).astype(float)
        shared = sum(n for t, n in self.type_rows.items() if t not in own) >= len(self.FEATURES) + 3
        for name in self.FEATURES:
            values = frame[name].to_numpy(float)
            if shared:
                cols[name] = values * rest
            for t in own:
                cols[f"{name}[{t}]"] = values * masks[t]
        return cols


class SharedFeatures(_TypeLines):
    """Per-path slopes plus op sizes with one coefficient each: the board's
    cycles per instruction differ between the loops an op runs (MACs, im2col
    copies, per-output requantization), and their mix follows the op's shape."""

    def __init__(self):
        super().__init__("shared-features", "cycles = a[path] x emulated + b + c . (MACs, outputs, "
                         "output pixels, im2col bytes, inputs)", min_type_rows=1)


class Features(_TypeLines):
    """As shared-features, with size terms of its own for each kernel path
    that has enough rows to fit them (each path's loops have their own mix)."""

    per_path_features = True

    def __init__(self):
        super().__init__("features", "cycles = a[path] x emulated + b + c[path] . (MACs, outputs, "
                         "output pixels, im2col bytes, inputs)",
                         min_type_rows=len(self.FEATURES) + 3)


class FeaturesNnls(Features):
    """The features model with every coefficient >= 0 (each term then is
    cycles the board adds); simpler to read, usually less exact."""

    def __init__(self):
        super().__init__()
        self.name, self.description, self.nonnegative = "features-nnls", "as features, coefficients >= 0", True


class Geometry(Features):
    """As features, plus the geometry terms that grouped cross-validation
    chose (`select_geometry`), and no clipping to the ratios the fitted rows
    showed: an unseen geometry (a first layer of one channel) has a ratio of
    its own, which the terms predict and the clip would cut off."""

    def __init__(self, terms: tuple[str, ...] = ()):
        self.FEATURES = Features.FEATURES + tuple(t for t in terms if t not in BOARD_TERMS)
        self.board_terms = tuple(t for t in terms if t in BOARD_TERMS)  # one coefficient for all paths
        super().__init__()
        self.terms = tuple(terms)
        self.name = "features+geometry"
        self.description = "as features, plus " + (", ".join(terms) or "no geometry term") + ", unclipped"
        self.clip = False

    def fresh(self) -> Geometry:
        return Geometry(self.terms)

    def columns(self, frame):
        cols = super().columns(frame)
        for name in self.board_terms:
            cols[name] = frame[name].to_numpy(float)
        return cols


def legacy_models() -> list[LinearModel]:
    """The candidates before grouped cross-validation (the benchmark's 'before')."""
    return [Line(), PerTypeLine(), SharedFeatures(), Features(), FeaturesNnls()]


def candidate_models() -> list[LinearModel]:
    return legacy_models() + [Geometry()]


# ---------------------------------------------------------------------------
# Cross-validation

Splits = list[tuple[np.ndarray, np.ndarray]]


def kfold_splits(n: int, folds: int, seed: int = 0) -> Splits:
    """(fit, held-out) index pairs: every row held out exactly once, never
    fitted in the fold that predicts it."""
    if n < 2:
        raise CalibrationError(f"cannot cross-validate {n} row(s)")
    folds = max(2, min(folds, n))
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, folds)
    return [(np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i])), np.sort(part))
            for i, part in enumerate(parts)]


def group_splits(groups) -> Splits:
    """Leave one group out: each fold holds out every row of one group (one
    input shape), so the fit never saw the shape it predicts."""
    groups = np.asarray(groups)
    names = list(dict.fromkeys(groups))
    if len(names) < 2:
        raise CalibrationError(f"cannot leave one shape out of {len(names)} shape(s)")
    return [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in names]


def out_of_fold(model: LinearModel, frame: pd.DataFrame, splits: Splits, source: str = "emu_cycles",
                target: str = "ref_cycles") -> np.ndarray:
    """Each row predicted by the model fitted on the rows of the other folds."""
    predicted = np.empty(len(frame))
    for fit_rows, held_out in splits:
        fitted = model.fresh().fit(frame.iloc[fit_rows], source, target)
        predicted[held_out] = fitted.predict(frame.iloc[held_out])
    return predicted


def cross_validate(model: LinearModel, frame: pd.DataFrame, source: str, target: str,
                   folds: int = FOLDS, seed: int = 0, splits: Splits | None = None) -> FitErrors:
    splits = splits if splits is not None else kfold_splits(len(frame), folds, seed)
    return FitErrors.of(out_of_fold(model, frame, splits, source, target), frame[target].to_numpy(float))


def select_geometry(frame: pd.DataFrame, splits: Splits, pool=GEOMETRY,
                    min_gain: float = 0.10) -> tuple[tuple[str, ...], list[tuple[str, float]]]:
    """Forward selection of geometry terms on the held-out error: add the term
    that lowers the cross-validated MAPE most, while it lowers it by at least
    `min_gain` of itself (on a 5 % sample smaller gains were noise that
    raised the error on the other rows). Returns each step's (terms, MAPE)."""
    truth = frame["ref_cycles"].to_numpy(float)
    mape = lambda terms: FitErrors.of(out_of_fold(Geometry(terms), frame, splits), truth).mape  # noqa: E731
    chosen: tuple[str, ...] = ()
    best = mape(chosen)
    steps = [("", best)]
    present = [t for t in pool if t in frame and frame[t].abs().sum() > 0]
    while True:
        trials = {term: mape(chosen + (term,)) for term in present if term not in chosen}
        if not trials:
            break
        term, error = min(trials.items(), key=lambda t: t[1])
        if error > best * (1 - min_gain):
            break
        chosen, best = chosen + (term,), error
        steps.append((" + ".join(chosen), best))
    return chosen, steps


# ---------------------------------------------------------------------------
# Bounds: how far above its prediction a new op may run

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


@dataclass
class Calibration:
    """The chosen model for whole-invoke cycles, with every candidate's
    cross-validated error (random folds and leave-one-shape-out), the board's
    fixed cost of a single-op invoke, and the chosen model's held-out
    predictions (for the bounds)."""

    model: LinearModel
    cv: dict[str, FitErrors]  # random folds
    rows: int
    overhead: float | None  # median reference total - kernel; None without a kernel column
    grouped: dict[str, FitErrors] = field(default_factory=dict)  # leave one input shape out
    chosen_by: str = "random"  # which of the two picked the model
    shapes: int = 0
    held_out: np.ndarray | None = None  # the chosen model's out-of-fold predictions
    selection: list = field(default_factory=list)  # geometry terms tried: (terms, grouped MAPE)
    bounds: Bounds | None = None  # from the held-out excess of the chosen model
    above_bound: float | None = None  # fraction of rows above their bound (bounds from other shapes)

    @property
    def expected(self) -> FitErrors:
        """The error to expect on new ops: the grouped one where there was one
        (a user's next data set is usually a new shape)."""
        return (self.grouped if self.chosen_by == "grouped" else self.cv)[self.model.name]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict(frame)

    def predict_kernel(self, frame: pd.DataFrame) -> np.ndarray:
        total = self.predict(frame)
        if self.overhead is not None:  # total - kernel is one constant on the board
            return np.maximum(total - self.overhead, 0.0)
        # no kernel column in the reference: the emulated kernel share of the total
        return total * frame["emu_kernel"].to_numpy(float) / frame["emu_cycles"].to_numpy(float)


def fit_calibration(frame: pd.DataFrame, folds: int = FOLDS, seed: int = 0,
                    models: list[LinearModel] | None = None, select_by: str = "grouped") -> Calibration:
    """Cross-validates each candidate on the rows, by random folds and by
    leaving one input shape out; keeps the best by `select_by` (lowest MAPE,
    ties to the simpler; grouped needs 3 shapes at least, else random), fits
    it on all rows. The geometry terms are chosen on the same grouped error."""
    if len(frame) < MIN_ROWS:
        raise CalibrationError(f"{len(frame)} reference row(s) with an emulated measurement; calibration "
                               f"needs at least {MIN_ROWS} (measure more ops on the board, e.g. "
                               "`tinyhil characterize --board BOARD --sample 5%`)")
    if select_by not in ("grouped", "random"):
        raise CalibrationError(f"select_by {select_by!r}: grouped or random")
    models = models or candidate_models()
    random_splits = kfold_splits(len(frame), folds, seed)
    shapes = frame["group"].nunique() if "group" in frame else 0
    grouped_splits = group_splits(frame["group"]) if shapes >= 2 else None
    if shapes < 3:
        select_by = "random"
    selection = []
    if any(isinstance(m, Geometry) for m in models):
        terms, selection = select_geometry(frame, grouped_splits if select_by == "grouped" else random_splits)
        models = [Geometry(terms) if isinstance(m, Geometry) else m for m in models]
    truth = frame["ref_cycles"].to_numpy(float)
    held = {"random": {}, "grouped": {}}
    for m in models:
        held["random"][m.name] = out_of_fold(m, frame, random_splits)
        if grouped_splits is not None:
            held["grouped"][m.name] = out_of_fold(m, frame, grouped_splits)
    errors = {kind: {name: FitErrors.of(p, truth) for name, p in by_model.items()} for kind, by_model in held.items()}
    best = min(models, key=lambda m: round(errors[select_by][m.name].mape, 2))  # min keeps the first of equals
    chosen = best.fresh().fit(frame, "emu_cycles", "ref_cycles")
    overhead = None
    if "ref_kernel" in frame and frame["ref_kernel"].notna().all():
        overhead = float(np.median(frame["ref_cycles"] - frame["ref_kernel"]))
    predicted = held[select_by][best.name]
    bounds = Bounds.fit(frame["op"], predicted, truth, frame.get("group"))
    above = float(rows_above_bound(frame, predicted).mean()) if select_by == "grouped" else None
    return Calibration(chosen, errors["random"], len(frame), overhead, errors["grouped"], select_by, shapes,
                       predicted, selection, bounds, above)


# ---------------------------------------------------------------------------
# Arena: the emulated bytes plus what the board's runtime adds

def op_type(path: str) -> str:
    """The op type of a kernel path (the arena does not depend on the kernel)."""
    return path.removesuffix("-1x1")


@dataclass(frozen=True)
class ArenaModel:
    """Board arena = emulated arena + offset[op type] (or x ratio[op type],
    kept only where it fits the reference rows better). The emulated board
    runs the same planner on the same tensors: what differs is what the
    board's runtime version allocates besides, a constant per model and op."""

    kind: str  # offset | ratio
    by_type: dict  # op type -> bytes (offset) or factor (ratio)
    default: float  # op types without reference rows: the median over the op types, each once
    grouped_max_error_pct: float  # leave one input shape out
    grouped_max_error_other_pct: float  # the kind not chosen, for the record

    @staticmethod
    def _fit_kind(kind: str, types, emulated, board) -> tuple[dict, float]:
        """Each op type's median, and for an op type no row has, the median
        of the types' values: a new op type is one more type, and the type
        measured most (hundreds of convolutions) must not stand for all."""
        value = board - emulated if kind == "offset" else board / emulated
        frame = pd.DataFrame({"type": types, "value": value})
        by_type = {t: float(g.median()) for t, g in frame.groupby("type")["value"]}
        return by_type, float(np.median(list(by_type.values())))

    @staticmethod
    def _apply(kind: str, by_type: dict, default: float, types, emulated) -> np.ndarray:
        values = np.array([by_type.get(t, default) for t in types], float)
        return emulated + values if kind == "offset" else emulated * values

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> ArenaModel | None:
        rows = frame[["op", "group", "emu_arena", "ref_arena"]].dropna()
        if rows.empty:
            return None
        types = rows["op"].map(op_type).to_numpy()
        emulated, board = rows["emu_arena"].to_numpy(float), rows["ref_arena"].to_numpy(float)
        groups = rows["group"].to_numpy()
        worst = {}
        for kind in ("offset", "ratio"):
            predicted = np.empty(len(rows))
            for group in dict.fromkeys(groups):
                held = groups == group
                if held.all():  # one shape: nothing to hold it out from
                    predicted[held] = cls._apply(kind, *cls._fit_kind(kind, types, emulated, board), types, emulated)
                    continue
                by_type, default = cls._fit_kind(kind, types[~held], emulated[~held], board[~held])
                predicted[held] = cls._apply(kind, by_type, default, types[held], emulated[held])
            worst[kind] = float(np.max(np.abs(predicted - board) / board) * 100)
        kind = "ratio" if worst["ratio"] < worst["offset"] else "offset"  # ties: the offset
        by_type, default = cls._fit_kind(kind, types, emulated, board)
        return cls(kind, by_type, default, worst[kind], worst["ratio" if kind == "offset" else "offset"])

    def predict(self, paths, emulated) -> np.ndarray:
        return self._apply(self.kind, self.by_type, self.default, [op_type(p) for p in paths],
                           np.asarray(emulated, float))

    @property
    def per_model_bytes(self) -> float:
        """The part of the offset every op type shares: counted once per model
        (a whole model's estimate adds the rest per op)."""
        return min([*self.by_type.values(), self.default]) if self.kind == "offset" else 0.0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "by_type": {t: round(v, 4) for t, v in self.by_type.items()},
                "default": round(self.default, 4), "per_model_bytes": round(self.per_model_bytes, 1),
                "grouped_max_error_pct": round(self.grouped_max_error_pct, 4),
                "grouped_max_error_other_kind_pct": round(self.grouped_max_error_other_pct, 4)}


# ---------------------------------------------------------------------------
# The calibrated LUT

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
    extra = {**meta.extra, "calibration": {
        "from_lut": str(lut.path), "from_board": meta.board, "from_counter": meta.counter,
        "from_core": meta.core, "emulated_store": str(store_path), "reference": str(reference),
        "reference_rows": calibration.rows, "model": calibration.model.name,
        "measured_rows_kept": len(measured),
        "paths_without_reference": sorted(set(inputs["op"]) - set(frame["op"])) if len(inputs) else [],
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
        "bounds": calibration.bounds.to_dict() if calibration.bounds else None,
        "bound": BOUND,
        "rows_above_bound_pct": None if calibration.above_bound is None
        else round(calibration.above_bound * 100, 3),
        # arena_bytes = emulated + offset[op type]; whole models add per_model_bytes once and the
        # rest of each op's offset per op (estimate.memory)
        "arena": arena.to_dict() if arena is not None else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "tinyhil": __version__}}
    new_meta = replace(meta, board=board.name, core=board.core, clock_hz=board.clock_hz,
                       counter=board.counter, invoke_cycles=round(single_overhead - dispatch, 1),
                       dispatch_cycles=round(dispatch, 1), extra=extra,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return Lut(new_meta, rows)


def is_calibrated(meta: LutMeta) -> bool:
    return "calibration" in meta.extra


def lut_bounds(meta: LutMeta) -> Bounds | None:
    """The bounds a calibrated LUT records (None: measured on its board, or
    calibrated before bounds were kept)."""
    data = meta.extra.get("calibration", {}).get("bounds")
    return Bounds.from_dict(data) if data else None


def check_latency_at(at: str) -> str:
    if at != "point" and at not in QUANTILES:
        raise CalibrationError(f"latency at {at!r}: one of point, {', '.join(QUANTILES)}")
    return at


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
