"""Candidate models, simplest first. Each: fit(frame, source, target) then
predict(frame). Fits minimise relative error (each row weighted by 1/cycles)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from tinyhil.lut.calibration.features import BOARD_TERMS, CALL_TERM


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
    its own, which the terms predict and the clip would cut off. With the
    `calls` term, each path's fixed cost is one per call instead of one per
    output pixel (features.CALL_TERM)."""

    def __init__(self, terms: tuple[str, ...] = ()):
        sizes = Features.FEATURES
        if CALL_TERM in terms:
            sizes = (CALL_TERM,) + tuple(f for f in sizes if f != "out_pixels")
        self.FEATURES = sizes + tuple(t for t in terms if t not in BOARD_TERMS and t != CALL_TERM)
        self.board_terms = tuple(t for t in terms if t in BOARD_TERMS)  # one coefficient for all paths
        super().__init__()
        self.terms = tuple(terms)
        self.name = "features+geometry"
        self.description = ("as features, plus " + (", ".join(t for t in terms if t != CALL_TERM)
                                                    or "no geometry term")
                            + (", a cost per call instead of per output pixel" if CALL_TERM in terms else "")
                            + ", unclipped")
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
