"""Lookup tables on disk: CSV rows plus a JSON metadata sidecar.

Two kinds, one format:
  luts/<board>/ops.csv             every op measured on that board, appended
                                   row by row as measurements arrive (fsync'd
                                   twice a second and at the end): a killed
                                   run loses nothing it measured, and
                                   an op shared by several spaces is measured once
  luts/<board>/<space>-<input>.csv one search space's view of it, rewritten
                                   atomically after each characterization

Every row names its board, as its metadata does: a table of one board is never
taken for another's. Tables written before rows named their board (no `board`
column) are read with their metadata's board; a store is rewritten with the
column before anything is appended to it.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from tinyhil.errors import TinyhilError
from tinyhil.files import append_durably, atomic_write, not_utf8, read_text, sync_file, writable_file
from tinyhil.lut.numbers import row_problem
from tinyhil.spaces.ops import OpConfig
from tinyhil.verdict import OK, usable  # noqa: F401  (OK: re-exported for the LUT readers)

# Cycle columns hold instructions on emulated boards (see `counter`).
COLUMNS = [
    "key", "board", "op", "input_shape", "output_shape", "kernel", "strides", "filters", "padding",
    "activation", "cycles", "cycles_min", "cycles_max", "n", "kernel_cycles", "ms",
    "arena_bytes", "scratch_bytes", "weights_bytes", "macs", "status",
]
# The columns of tables written before rows named their board.
COLUMNS_WITHOUT_BOARD = [c for c in COLUMNS if c != "board"]


def is_lut_header(line: str) -> bool:
    """Is this the first line of a tinyhil LUT (of either format)?"""
    return line.rstrip("\r\n").split(",") in (COLUMNS, COLUMNS_WITHOUT_BOARD)


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


def read_meta(csv_path: Path, board: str | None = None) -> LutMeta:
    """A LUT's metadata; `board`: the board the LUT is used for, which its
    metadata must name."""
    path = meta_path(csv_path)
    if not path.is_file():
        raise LutError(f"{csv_path}: metadata sidecar {path.name} is missing")
    meta = LutMeta.from_json(read_text(path, LutError), str(path))
    if board is not None and meta.board != board:
        raise LutError(f"{csv_path} is a LUT of board {meta.board} (its {path.name} says so), not of "
                       f"{board}, the board it is used for here: move it to the luts/{meta.board}/ "
                       f"directory, and measure {board}'s with `tinyhil characterize --board {board}`")
    return meta


# A failed measurement ("error: ...", e.g. a hard fault) may have been the
# lab's fault, not the op's: it is measured again on later runs, each attempt
# appended as a row of its own (the last row of a key counts), up to this many.
MAX_ATTEMPTS = 3
ERROR = "error"
NUMERIC = ["filters", "cycles", "cycles_min", "cycles_max", "n", "kernel_cycles", "ms",
           "arena_bytes", "scratch_bytes", "weights_bytes", "macs"]
# Written as whole numbers ("1060"), whichever rows a table was made from; the
# other numbers as floats ("256228.0").
INTEGER = ["filters", "n", "arena_bytes", "scratch_bytes", "weights_bytes", "macs"]
# The statuses tinyhil writes: a row whose status is none of them was cut short.
KNOWN_STATUS = re.compile(r"^(ok|(lsb1|mismatch|error): .+)$", re.S)


def failed(status: str) -> bool:
    return status.startswith(ERROR)


@dataclass(frozen=True)
class Malformed:
    """A line of a LUT that is not a whole row (a write cut short, an edit gone wrong)."""

    path: Path
    line: int
    key: str  # the op it was for, if its first column survived
    why: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}: line {self.line}: {self.why}"


@dataclass
class ScannedRows:
    frame: pd.DataFrame  # one row per op key: its last
    malformed: list[Malformed]
    attempts: dict[str, int]  # op key -> failed attempts recorded ("error" rows)
    lines: list[str]  # the header and every well-formed line, in the current format
    torn_tail: bool
    meta: LutMeta | None = None
    old_format: bool = False  # written before rows named their board: `lines` add the column


def _check_line(path: Path, number: int, line: str, columns: list[str],
                meta: LutMeta) -> tuple[list[str] | None, Malformed | None]:
    """The line's fields in the order of COLUMNS, or why it is no row. A row of
    another board than the metadata's is an error, whatever the table."""
    def bad(why: str, key: str = "") -> tuple[None, Malformed]:
        return None, Malformed(path, number, key, why, line.rstrip("\r\n"))

    try:  # one row per line: statuses are written without line breaks
        (fields,) = list(csv.reader([line], strict=True))
    except (csv.Error, ValueError) as error:
        return bad(f"not one CSV row ({error})")
    key = fields[0] if fields else ""
    if len(fields) != len(columns):
        hint = "cut short?" if len(fields) < len(columns) else "a stray comma?"
        return bad(f"{len(fields)} fields where a row has {len(columns)} ({hint})", key)
    record = {"board": meta.board, **dict(zip(columns, fields))}  # no column: the metadata's board
    if not key:
        return bad("no op key")
    if not KNOWN_STATUS.match(record["status"]):
        return bad(f"status {record['status']!r} is not one tinyhil writes (cut short?)", key)
    if not record["board"]:
        return bad("no board", key)
    if record["board"] != meta.board:
        raise LutError(f"{path}: line {number}: a row of board {record['board']} in a LUT of board "
                       f"{meta.board} (its {meta_path(path).name} says so): two boards' tables were mixed; "
                       f"keep each board's rows in luts/<board>/ and measure {meta.board}'s op again")
    why = row_problem(record, meta.clock_hz, usable(record["status"]))
    if why:
        return bad(why, key)
    return [record[c] for c in COLUMNS], None


def _with_board(fields: list[str]) -> str:
    """A row of COLUMNS as a line of the table."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def scan_rows(path: Path, allow_torn_tail: bool = False, board: str | None = None) -> ScannedRows:
    """Reads and checks a LUT CSV line by line, each number by lut/numbers.py's
    rules. In a space's table any bad line is an error naming it; an
    append-only store (`allow_torn_tail`) may end in a torn line and may hold
    malformed ones (an impossible number too), which are left out and listed
    (the op is measured again). `board`: the board the table is used for."""
    meta = read_meta(path, board)
    data = Path(path).read_bytes()
    lines = data.splitlines(keepends=True)
    torn = bool(lines) and not lines[-1].endswith(b"\n")
    if torn:
        if not allow_torn_tail:
            raise LutError(f"{path}: truncated (last line has no end)")
        lines = lines[:-1]  # an append cut short by a crash: never completed
    header = lines[0].decode("utf-8", errors="replace").rstrip("\r\n").split(",") if lines else []
    if header not in (COLUMNS, COLUMNS_WITHOUT_BOARD):
        raise LutError(f"{path}: not a tinyhil LUT (expected the columns {','.join(COLUMNS)})")
    old_format = header == COLUMNS_WITHOUT_BOARD
    kept, malformed, rows = [",".join(COLUMNS) + "\n"], [], []
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            fields, problem = None, Malformed(path, number, "", not_utf8(raw, error)[1],
                                              raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        else:
            fields, problem = _check_line(path, number, line, header, meta)
        if problem is not None:
            if not allow_torn_tail:
                raise LutError(f"{problem}; fix that line, or make the table again with `tinyhil characterize`")
            malformed.append(problem)
            continue
        kept.append(_with_board(fields) if old_format else line)
        rows.append(fields)
    frame = pd.DataFrame(rows, columns=COLUMNS).astype({c: str for c in COLUMNS})
    for column in NUMERIC:  # each line's numbers were checked: Python's float() reads them exactly
        frame[column] = frame[column].replace("", float("nan")).astype(float)
    attempts: dict[str, int] = {}
    last: dict[str, str] = {}
    for key, status in zip(frame["key"], frame["status"]):
        # a failed attempt is superseded by a later row; a good row by nothing
        if key in last and not failed(last[key]):
            raise LutError(f"{path}: op {key} appears twice")
        last[key] = status
        if failed(status):
            attempts[key] = attempts.get(key, 0) + 1
    frame = typed(frame.drop_duplicates("key", keep="last"))
    return ScannedRows(frame.set_index("key", drop=False), malformed, attempts, kept, torn, meta, old_format)


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as the table holds them, whichever rows it was read from: whole
    numbers where a column has no gap (a failed measurement's), floats else."""
    frame = frame.copy()
    for column in NUMERIC:
        numbers = pd.to_numeric(frame[column], errors="coerce").astype(float)
        whole = column in INTEGER and numbers.notna().all()
        frame[column] = numbers.astype("int64") if whole else numbers
    return frame


def table_text(rows: pd.DataFrame, board: str) -> str:
    """The CSV text of a table of `board`: every row named its board, integer
    columns written as whole numbers, empty where a failed measurement has none."""
    frame = rows.reindex(columns=COLUMNS).copy()
    frame["board"] = board
    for column in NUMERIC:
        numbers = pd.to_numeric(frame[column], errors="coerce").astype(float)
        if column in INTEGER:
            fractional = numbers[numbers.notna() & (numbers != numbers.round())]
            if len(fractional):
                raise LutError(f"{column} of {fractional.index[0]} is {fractional.iloc[0]!r}, "
                               "not a whole number: not written")
            numbers = numbers.astype("Int64")
        frame[column] = numbers
    return frame.to_csv(index=False, lineterminator="\n")


def read_rows(path: Path, allow_torn_tail: bool = False, board: str | None = None) -> pd.DataFrame:
    """Reads and checks a LUT CSV; an append-only store may end in a torn line
    (and malformed lines, left out: see scan_rows)."""
    return scan_rows(path, allow_torn_tail, board).frame


@contextmanager
def exclusive(store_path: Path, wait_s: float = 0.0, on_wait=None):
    """One characterization per store at a time: a second one would measure
    the same ops and append them twice. `wait_s`: how long to wait for the
    other process to finish first (0: refuse at once); `on_wait(message)` is
    told once, when the waiting starts."""
    writable_file(store_path, "lookup tables")
    with open(store_path.with_name(f".{store_path.name}.lock"), "w") as lock:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    waited = f" (waited {wait_s:g} s)" if wait_s > 0 else ""
                    raise LutError(f"{store_path} is being written by another tinyhil process{waited}; "
                                   "wait for it to finish, or use another --luts directory") from None
                if on_wait is not None:
                    on_wait(f"{store_path} is being written by another tinyhil process: waiting up to "
                            f"{wait_s:g} s for it to finish")
                    on_wait = None
                time.sleep(min(0.2, left))
        yield


class OpStore:
    """Append-only table of every op measured on one board.

    A row is written (whole, in one write) as soon as it is appended: a killed
    or interrupted run keeps it. It reaches the disk with the next sync, at
    most SYNC_SECONDS later or at `sync()`: one fsync per row cost more than
    the measuring of a small op, and a machine that loses power loses at most
    the last moments' rows (a torn last line is set aside and measured again)."""

    SYNC_SECONDS = 0.5

    def __init__(self, path: Path, meta: LutMeta):
        self.path = path
        self.meta = meta
        self._synced_at = time.monotonic()
        self._unsynced = False
        self.rows: dict[str, dict] = {}
        self.attempts: dict[str, int] = {}  # op key -> failed attempts recorded
        self.malformed: list[Malformed] = []  # lines left out when it was opened
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            existing = read_meta(path)
            problems = existing.mismatches(meta)
            if problems:
                raise LutError(f"{path} was measured with another set-up ({'; '.join(problems)}); "
                               "move it away or characterize into another luts directory")
            scanned = scan_rows(path, allow_torn_tail=True, board=meta.board)
            self.rows = {k: r for k, r in scanned.frame.to_dict("index").items()}
            self.attempts = scanned.attempts
            self.malformed = scanned.malformed
            self._rewrite_without_bad_lines(scanned)
            self.meta = existing  # same set-up: keep what it measured (overheads, date)
        else:
            atomic_write(meta_path(path), meta.to_json())
            atomic_write(path, ",".join(COLUMNS) + "\n")

    def _rewrite_without_bad_lines(self, scanned: ScannedRows) -> None:
        """A torn tail or malformed lines would sit between the rows about to be
        appended: the store is rewritten with its good lines, verbatim, and the
        bad ones are kept aside in .<name>.malformed. A store written before
        rows named their board is rewritten with the column (its metadata's board)."""
        if not (scanned.torn_tail or scanned.malformed or scanned.old_format):
            return
        if scanned.malformed:
            with open(self.path.with_name(f".{self.path.name}.malformed"), "a", encoding="utf-8") as aside:
                aside.writelines(f"{m}: {m.text}\n" for m in scanned.malformed)
        atomic_write(self.path, "".join(scanned.lines))

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def append(self, row: dict) -> None:
        """Adds an op's row; an op whose last row is a failed attempt may get another."""
        key = row["key"]
        if key in self.rows and not failed(str(self.rows[key]["status"])):
            raise LutError(f"{key} is already in {self.path}")
        # one row per line, whatever the device said (scan_rows relies on it)
        row = {**row, "board": self.meta.board, "status": " | ".join(str(row["status"]).splitlines())}
        buffer = io.StringIO()
        csv.DictWriter(buffer, COLUMNS, lineterminator="\n").writerow(row)
        sync = time.monotonic() - self._synced_at >= self.SYNC_SECONDS
        try:
            append_durably(self.path, buffer.getvalue(), sync=sync)
        except OSError as error:
            raise LutError(f"{self.path}: cannot append the row of {key} ({error.strerror}); "
                           f"the {len(self.rows)} rows before it are kept, and this op is measured "
                           "again on the next run") from None
        if sync:
            self._synced_at, self._unsynced = time.monotonic(), False
        else:
            self._unsynced = True
        self.rows[key] = row
        if failed(row["status"]):
            self.attempts[key] = self.attempts.get(key, 0) + 1

    def sync(self) -> None:
        """Waits until every row appended so far is on disk."""
        if not self._unsynced:
            return
        try:
            sync_file(self.path)
        except OSError as error:
            raise LutError(f"{self.path}: cannot write its rows to disk ({error.strerror})") from None
        self._synced_at, self._unsynced = time.monotonic(), False

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
    def load(cls, path: Path, expect: LutMeta | None = None, board: str | None = None) -> Lut:
        """`board`: the board the table is used for (its metadata must name it)."""
        path = Path(path)
        if not path.is_file():
            raise LutError(f"{path}: no such LUT; make it with `tinyhil characterize`")
        meta = read_meta(path, board)
        if expect is not None and meta.mismatches(expect):
            raise LutError(f"{path} is for another set-up: {'; '.join(meta.mismatches(expect))}")
        return cls(meta, read_rows(path, board=board), path)

    def write(self, path: Path) -> None:
        """Writes the table, each row named the metadata's board (a calibrated
        table's rows, made from another board's, are its board's estimates)."""
        atomic_write(path, table_text(self.rows, self.meta.board))
        atomic_write(meta_path(path), self.meta.to_json())
        self.path = path

    def text(self) -> str:
        """The table's CSV, as `write` writes it."""
        return table_text(self.rows, self.meta.board)

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


def space_lut_classes(luts_dir: Path, board: str, space: str, input_text: str) -> int:
    """The class count of the one LUT of `space` and input `input_text` (e.g. 128x9)
    for `board`: `space_lut_path`'s naming read backwards."""
    directory = Path(luts_dir) / board
    found = sorted(directory.glob(f"{space}-{input_text}-c*.csv"))
    if len(found) == 1:
        return int(re.search(r"-c(\d+)\.csv$", found[0].name).group(1))
    if found:
        counts = ", ".join(re.search(r"-c(\d+)\.csv$", p.name).group(1) for p in found)
        raise LutError(f"{len(found)} LUTs of {space} {input_text} for {board} in {directory} (classes {counts}): "
                       f"say which with --classes")
    others = sorted(p.name for p in directory.glob(f"{space}-*-c*.csv"))
    raise LutError(f"no LUT of {space} for input {input_text} on {board} ({directory}/{space}-{input_text}-c*.csv); "
                   f"measure it first: tinyhil characterize --space {space} --input {input_text} --classes N "
                   f"--board {board} (N: the data's classes)"
                   + (f"; {directory} has {', '.join(others)}" if others else ""))
