"""Time-series data sets for the search engines: .npz (TinyTNAS's format),
CSV, and the real sets the `aeon` package ships (BasicMotions, ...).

Windows come out as float32 (N, T, S); labels as int64 class indices.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TinyhilError


class DataError(TinyhilError):
    """A data set that cannot be used as it is (the message says why)."""


@dataclass(frozen=True)
class Splits:
    """MicroNAS Fig. 1: training (weights), validation (architecture), test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    name: str

    @property
    def window(self) -> int:
        return self.x_train.shape[1]

    @property
    def channels(self) -> int:
        return self.x_train.shape[2]


def check(x: np.ndarray, y: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise DataError(f"{source}: features must be (N, T, S), got shape {x.shape}")
    if len(x) != len(y):
        raise DataError(f"{source}: {len(x)} windows but {len(y)} labels")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{source}: features are {x.dtype}, not numbers")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=(1, 2)).sum())
        raise DataError(f"{source}: {bad} window(s) contain NaN or infinite values")
    if y.ndim == 2:  # one-hot
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be (N,) or one-hot (N, C), got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
        raise DataError(f"{source}: labels are not class indices (found {y[y != np.round(y)][:3]})")
    return x, y


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, int]:
    classes, encoded = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"need at least 2 classes, found {len(classes)}")
    return encoded.astype(np.int64), len(classes)


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """TinyTNAS's format: arrays `features` and `labels`; never unpickled."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"features", "labels"} - set(data.files)
            if missing:
                raise DataError(f"{path}: missing array(s) {sorted(missing)}; has {data.files}")
            return check(data["features"], data["labels"], str(path))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: not a readable .npz ({error})") from error


def load_csv(path: Path, window: int) -> tuple[np.ndarray, np.ndarray]:
    """One row per time step: sensor columns, then the label; consecutive
    non-overlapping windows of `window` rows with one label each."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (a CSV data set has a header, then one row "
                        "per time step: sensor columns, then the label)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise DataError(f"{path}: not a readable CSV ({error})") from error
    if frame.shape[1] < 2:
        raise DataError(f"{path}: need sensor columns and a label column")
    n = len(frame) // window
    if n == 0:
        raise DataError(f"{path}: {len(frame)} rows, fewer than one window of {window}")
    values = frame.iloc[: n * window, :-1].to_numpy()
    labels = frame.iloc[: n * window, -1].to_numpy().reshape(n, window)[:, 0]
    return check(values.reshape(n, window, -1), labels, str(path))


def load_aeon(name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from aeon.datasets import load_classification
    except ImportError as error:
        raise DataError(f"data set {name!r} needs the aeon package (pip install aeon)") from error
    try:
        x, y = load_classification(name, extract_path=None, return_metadata=False)
    except Exception as error:  # aeon raises many kinds; all mean "not available here"
        raise DataError(f"aeon has no local copy of {name!r} ({error}); the sets it ships "
                        "offline include BasicMotions, JapaneseVowels, ...") from error
    return check(np.transpose(np.asarray(x), (0, 2, 1)), y, name)  # aeon: (N, S, T)


AEON_NAMES = {"basic_motions": "BasicMotions", "japanese_vowels": "JapaneseVowels"}
SYNTHETIC = re.compile(r"^synthetic(\d+)x(\d+)(?:c(\d+))?(?:n(\d+))?$")  # synthetic128x9c6n600


def load(spec: str, window: int | None = None, seed: int = 0,
         fractions=(0.6, 0.2, 0.2)) -> Splits:
    """`spec`: a .npz or .csv path, an aeon data set name (basic_motions), or
    synthetic<T>x<S>[c<classes>][n<windows>] (generated, e.g. synthetic128x9c6)."""
    if match := SYNTHETIC.match(spec):
        window, channels, classes, n = (int(g) if g else None for g in match.groups())
        return synthetic(n or 600, window, channels, classes or 6, seed)
    path = Path(spec)
    if path.suffix == ".npz":
        x, y = load_npz(path)
    elif path.suffix == ".csv":
        if not window:
            raise DataError("a CSV data set needs --window")
        x, y = load_csv(path, window)
    else:
        x, y = load_aeon(AEON_NAMES.get(spec, spec))
    y, classes = encode_labels(y)
    return split(x, y, classes, path.stem if path.suffix else spec, seed, fractions)


def split(x, y, classes: int, name: str, seed: int = 0, fractions=(0.6, 0.2, 0.2)) -> Splits:
    """Stratified shuffle into train / validation / test."""
    rng = np.random.default_rng(seed)
    parts = [[], [], []]
    for c in range(classes):
        index = rng.permutation(np.flatnonzero(y == c))
        cut1 = int(round(len(index) * fractions[0]))
        cut2 = cut1 + int(round(len(index) * fractions[1]))
        for part, chunk in zip(parts, (index[:cut1], index[cut1:cut2], index[cut2:])):
            part.extend(chunk)
    train, val, test = (np.array(sorted(p), dtype=int) for p in parts)
    if min(len(train), len(val)) == 0:
        raise DataError(f"{name}: too few windows ({len(y)}) for train/validation/test splits")
    return Splits(x[train], y[train], x[val], y[val], x[test], y[test], classes, name)


def synthetic(n: int = 600, window: int = 128, channels: int = 9, classes: int = 6,
              seed: int = 0) -> Splits:
    """Six-class HAR-shaped signals: class = mix of frequencies, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    t = np.arange(window)[None, :, None]
    freq = (1 + y)[:, None, None] * (1 + np.arange(channels))[None, None, :] / (window / 2)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, channels))
    x = np.sin(2 * np.pi * freq * t + phase) + 0.5 * rng.standard_normal((n, window, channels))
    return split(x.astype(np.float32), y, classes, f"synthetic{window}x{channels}c{classes}", seed)
