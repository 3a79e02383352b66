"""Cross-validation: random folds and leave one input shape out; the fit
that cross-validates every candidate and keeps the best."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tinyhil.lut.calibration.bounds import BOUND, Bounds, fallback_rows, rows_above_bounds, unseen_type_excess
from tinyhil.lut.calibration.errors import CalibrationError
from tinyhil.lut.calibration.features import CALL_TERM, GEOMETRY
from tinyhil.lut.calibration.models import Geometry, LinearModel, candidate_models

MIN_ROWS = 4  # fewer leaves nothing to cross-validate a line with
FOLDS = 5


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
    raised the error on the other rows). Then each path's fixed cost is read
    per call instead of per output pixel (`calls`) if that lowers the error:
    a choice between two forms with as many coefficients, not a term more,
    so any gain takes it. Returns each step's (terms, MAPE)."""
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
    if CALL_TERM in frame:
        error = mape(chosen + (CALL_TERM,))
        if error < best:
            chosen, best = chosen + (CALL_TERM,), error
            steps.append((" + ".join(chosen), best))
    return chosen, steps



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
    # {"p95": share of rows above their bound, ...}, each bound from the other shapes (None: not grouped)
    coverage: dict | None = None

    @property
    def above_bound(self) -> float | None:
        """The share of rows above the printed bound (BOUND), bounds from the other shapes."""
        return None if self.coverage is None else self.coverage[BOUND]

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
    by_fallback = fallback_rows(frame["op"], grouped_splits if select_by == "grouped" else random_splits)
    bounds = Bounds.fit(frame["op"], predicted, truth, frame.get("group"), by_fallback, unseen_type_excess(frame))
    coverage = None
    if select_by == "grouped":
        coverage = {name: float(a.mean()) for name, a in rows_above_bounds(frame, predicted, by_fallback).items()}
    return Calibration(chosen, errors["random"], len(frame), overhead, errors["grouped"], select_by, shapes,
                       predicted, selection, bounds, coverage)
