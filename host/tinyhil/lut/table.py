"""Lookup tables on disk: CSV rows plus a JSON metadata sidecar.

Two kinds, one format:
  luts/<board>/ops.csv             every op measured on that board, appended
                                   row by row (fsync'd) as measurements arrive:
                                   a killed run loses nothing it measured, and
                                   an op shared by several spaces is measured once
  luts/<board>/<space>-<input>.csv one search space's view of it, rewritten
                                   atomically after each characterization
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from ..errors import TinyhilError
from ..files import atomic_write, writable_file
from ..measure import OK, usable  # noqa: F401  (OK: re-exported for the LUT readers)
from ..spaces.ops import OpConfig

# Cycle columns hold instructions on emulated boards (see `counter`).
COLUMNS = [
    "key", "op", "input_shape", "output_shape", "kernel", "strides", "filters", "padding",
    "activation", "cycles", "cycles_min", "cycles_max", "n", "kernel_cycles", "ms",
    "arena_bytes", "scratch_bytes", "weights_bytes", "macs", "status",
]


class LutError(TinyhilError):
    """A LUT file that is corrupt, truncated, or for another board/runtime."""


@dataclass(frozen=True)
class LutMeta:
    board: str
    core: str
    clock_hz: int
    counter: str
    tflm: str
    compiler: str
    flags: str
    tinyhil: str
    engine: str = "tflite-micro + cmsis-nn"
    created: str = ""
    firmware: str = ""  # hash of the firmware sources (informative)
    # measured overheads so that op rows add up to whole models
    invoke_cycles: float = 0.0
    dispatch_cycles: float = 0.0
    space: str = ""
    input: str = ""
    extra: dict = field(default_factory=dict)

    IDENTITY = ("board", "counter", "tflm", "engine", "compiler")
    REQUIRED = ("board", "core", "clock_hz", "counter", "tflm", "compiler", "flags", "tinyhil")

    def mismatches(self, other: LutMeta) -> list[str]:
        return [f"{name}: {getattr(self, name)!r} vs {getattr(other, name)!r}"
                for name in self.IDENTITY if getattr(self, name) != getattr(other, name)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> LutMeta:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise LutError(f"{source}: metadata is corrupt ({error})") from error
        if not isinstance(data, dict):
            raise LutError(f"{source}: metadata must be a JSON object, not {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        for name in cls.REQUIRED:
            if name not in data:
                raise LutError(f"{source}: metadata lacks {name!r}")
        for name, value in data.items():
            if name in known and not _meta_value_ok(name, value):
                raise LutError(f"{source}: {name} is {value!r}, not {_META_KINDS.get(name, 'a string')}")
        return cls(**{k: v for k, v in data.items() if k in known})


_META_KINDS = {"clock_hz": "a positive whole number of Hz", "invoke_cycles": "a number",
               "dispatch_cycles": "a number", "extra": "a JSON object"}


def _meta_value_ok(name: str, value) -> bool:
    """The sidecar's fields are used in arithmetic and lookups: their kinds are checked on reading."""
    import math

    if name == "clock_hz":
        return isinstance(value, int) and not isinstance(value, bool) and value > 0
    if name in ("invoke_cycles", "dispatch_cycles"):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if name == "extra":
        return isinstance(value, dict)
    return isinstance(value, str)


def dims(shape) -> str:
    return "x".join(str(d) for d in shape)


def op_columns(op: OpConfig) -> dict:
    return dict(key=op.key, op=op.op, input_shape=dims(op.input_shape),
                output_shape=dims(op.output_shape), kernel=dims(op.kernel),
                strides=dims(op.strides), filters=op.filters, padding=op.padding,
                activation=op.activation, weights_bytes=op.weights_bytes, macs=op.macs)


def row_op(row) -> OpConfig:
    """The op configuration of a LUT row (op_columns read back)."""
    shape = lambda text: tuple(int(d) for d in str(text).split("x"))  # noqa: E731
    return OpConfig(row["op"], shape(row["input_shape"]), shape(row["output_shape"]), shape(row["kernel"]),
                    shape(row["strides"]), int(row["filters"]), row["padding"], row["activation"])


def meta_path(csv_path: Path) -> Path:
    return csv_path.with_suffix(".meta.json")


def read_meta(csv_path: Path) -> LutMeta:
    path = meta_path(csv_path)
    if not path.is_file():
        raise LutError(f"{csv_path}: metadata sidecar {path.name} is missing")
    return LutMeta.from_json(path.read_text(), str(path))


def read_rows(path: Path, allow_torn_tail: bool = False) -> pd.DataFrame:
    """Reads and checks a LUT CSV; an append-only store may end in a torn line."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        if not allow_torn_tail:
            raise LutError(f"{path}: truncated (last line has no end)")
        lines = lines[:-1]  # an append cut short by a crash: never completed
    if not lines or lines[0].rstrip("\r\n").split(",") != COLUMNS:
        raise LutError(f"{path}: not a tinyhil LUT (expected the columns {','.join(COLUMNS)})")
    _check_no_extra_fields(path, lines)
    try:
        frame = pd.read_csv(io.StringIO("".join(lines)), dtype={"key": str, "status": str},
                            keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as error:
        raise LutError(f"{path}: corrupt CSV ({error})") from error
    numeric = ["filters", "cycles", "cycles_min", "cycles_max", "n", "kernel_cycles", "ms",
               "arena_bytes", "scratch_bytes", "weights_bytes", "macs"]
    for column in numeric:
        values = pd.to_numeric(frame[column].replace("", float("nan")), errors="coerce")
        bad = values.isna() & frame["status"].map(usable)
        if bad.any():
            line = int(bad.idxmax()) + 2
            raise LutError(f"{path}: line {line}: {column} is not a number")
        frame[column] = values
    if frame["key"].duplicated().any():
        raise LutError(f"{path}: op {frame['key'][frame['key'].duplicated()].iloc[0]} appears twice")
    return frame.set_index("key", drop=False)


def _check_no_extra_fields(path: Path, lines: list[str]) -> None:
    """A row longer than the header would make pandas take its first column as the
    index and shift every other one: a stray comma is named, never read shifted."""
    for number, fields_ in enumerate(csv.reader(lines[1:]), start=2):
        if len(fields_) > len(COLUMNS):
            raise LutError(f"{path}: line {number} has {len(fields_)} fields, the header "
                           f"{len(COLUMNS)} (a stray comma?): fix or delete that line")


@contextmanager
def exclusive(store_path: Path):
    """One characterization per store at a time: a second one would measure
    the same ops and append them twice."""
    writable_file(store_path, "lookup tables")
    with open(store_path.with_name(f".{store_path.name}.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LutError(f"{store_path} is being written by another tinyhil process; "
                           "wait for it to finish, or use another --luts directory") from None
        yield


class OpStore:
    """Append-only table of every op measured on one board."""

    def __init__(self, path: Path, meta: LutMeta):
        self.path = path
        self.meta = meta
        self.rows: dict[str, dict] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            existing = read_meta(path)
            problems = existing.mismatches(meta)
            if problems:
                raise LutError(f"{path} was measured with another set-up ({'; '.join(problems)}); "
                               "move it away or characterize into another luts directory")
            frame = read_rows(path, allow_torn_tail=True)
            self.rows = {k: r for k, r in frame.to_dict("index").items()}
            self._rewrite_if_torn()
            self.meta = existing  # same set-up: keep what it measured (overheads, date)
        else:
            atomic_write(meta_path(path), meta.to_json())
            atomic_write(path, ",".join(COLUMNS) + "\n")

    def _rewrite_if_torn(self) -> None:
        if not self.path.read_text().endswith("\n"):
            frame = pd.DataFrame(list(self.rows.values()), columns=COLUMNS)
            atomic_write(self.path, frame.to_csv(index=False))

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def append(self, row: dict) -> None:
        if row["key"] in self.rows:
            raise LutError(f"{row['key']} is already in {self.path}")
        buffer = io.StringIO()
        csv.DictWriter(buffer, COLUMNS, lineterminator="\n").writerow(row)
        try:
            with open(self.path, "a") as f:
                f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
        except OSError as error:
            raise LutError(f"{self.path}: cannot append the row of {row['key']} ({error.strerror}); "
                           f"the {len(self.rows)} rows before it are kept, and this op is measured "
                           "again on the next run") from None
        self.rows[row["key"]] = row

    def update_meta(self, **changes) -> None:
        self.meta = LutMeta(**{**asdict(self.meta), **changes})
        atomic_write(meta_path(self.path), self.meta.to_json())


@dataclass
class Lut:
    """A loaded table: rows by op key, and where they come from."""

    meta: LutMeta
    rows: pd.DataFrame
    path: Path | None = None

    @classmethod
    def load(cls, path: Path, expect: LutMeta | None = None) -> Lut:
        path = Path(path)
        if not path.is_file():
            raise LutError(f"{path}: no such LUT; make it with `tinyhil characterize`")
        meta = read_meta(path)
        if expect is not None and meta.mismatches(expect):
            raise LutError(f"{path} is for another set-up: {'; '.join(meta.mismatches(expect))}")
        return cls(meta, read_rows(path), path)

    def write(self, path: Path) -> None:
        atomic_write(path, self.rows[COLUMNS].to_csv(index=False))
        atomic_write(meta_path(path), self.meta.to_json())
        self.path = path

    def __contains__(self, op: OpConfig) -> bool:
        return op.key in self.rows.index

    def row(self, op: OpConfig) -> pd.Series:
        if op.key not in self.rows.index:
            raise LutError(f"op {op.key} is not in {self.path or 'the LUT'}")
        row = self.rows.loc[op.key]
        if not usable(row["status"]):
            raise LutError(f"op {op.key} has no good measurement in {self.path}: {row['status']}")
        return row

    def cycles(self, op: OpConfig) -> float:
        return float(self.row(op)["cycles"])


def space_lut_path(luts_dir: Path, board: str, space: str, input_shape: tuple[int, ...],
                   classes: int) -> Path:
    return Path(luts_dir) / board / f"{space}-{dims(input_shape)}-c{classes}.csv"
