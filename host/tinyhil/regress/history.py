"""The regression history: one append-only CSV of every figure ever compared.

Rows are appended (and fsync'd) as each measurement arrives, so a killed run
loses nothing; a run's identity (`run_id`) lets a resumed run find what it
has already measured and add only the rest, never a row twice.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

from tinyhil.errors import TinyhilError
from tinyhil.files import append_durably, atomic_write, read_text
from tinyhil.lut.numbers import problem

PASS, REGRESSION, IMPROVED, NEW, ERROR, SKIPPED = (
    "pass", "regression", "improved", "new", "error", "skipped")
FAILING = (REGRESSION, ERROR, SKIPPED)


class HistoryError(TinyhilError):
    """The history table is corrupt or being written by another run."""


@dataclass(frozen=True)
class Row:
    run_id: str
    time: str
    suite: str
    environment: str
    farm_board: str
    case: str
    kind: str
    metric: str  # cycles | arena_bytes | output
    baseline: float | None
    measured: float | None
    tolerance: float
    verdict: str
    detail: str
    seconds: float | None = None  # the board's time measuring the case (JUnit's time=)
    firmware: str = ""  # the fingerprint of the firmware that measured it
    commit: str = ""  # the tinyhil checkout's commit that ran it


COLUMNS = [f.name for f in fields(Row)]
# a history written before seconds, firmware and commit were recorded: read as
# is, and given the new columns (empty) before anything is appended to it
LEGACY_COLUMNS = COLUMNS[:13]


def read_history(path: Path) -> pd.DataFrame:
    """The history's rows, indexed by their line in the file (for messages)."""
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    text = read_text(path, HistoryError)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # an append cut short by a kill: never completed
    if lines and lines[0].rstrip("\n").split(",") == LEGACY_COLUMNS:
        lines = _with_new_columns(lines)
    if not lines or lines[0].rstrip("\n").split(",") != COLUMNS:
        raise HistoryError(f"{path}: not a tinyhil history (expected columns {','.join(COLUMNS)})")
    # Field counts checked record by record: pandas would take a first row
    # with one field too many as having an index column and shift every column.
    reader = csv.reader(io.StringIO("".join(lines)))
    numbers = []  # the line each record starts on (a detail may hold newlines)
    try:
        next(reader)
        start = reader.line_num + 1
        for record in reader:
            if record and len(record) != len(COLUMNS):
                raise HistoryError(f"{path}: line {start}: {len(record)} fields, expected "
                                   f"{len(COLUMNS)} ({','.join(COLUMNS)}); a stray comma? "
                                   "Fix or delete that line")
            if record:
                numbers.append(start)
            start = reader.line_num + 1
    except csv.Error as error:
        raise HistoryError(f"{path}: line {reader.line_num}: corrupt CSV ({error})") from error
    try:
        frame = pd.read_csv(io.StringIO("".join(lines)), keep_default_na=False,
                            dtype={"run_id": str, "case": str, "detail": str, "firmware": str, "commit": str})
    except (ValueError, pd.errors.ParserError) as error:
        raise HistoryError(f"{path}: corrupt CSV ({error})") from error
    for column in ("baseline", "measured", "seconds"):
        frame[column] = pd.to_numeric(frame[column].replace("", float("nan")), errors="coerce")
    frame.index = pd.Index(numbers, name="line")
    return frame


def _with_new_columns(lines: list[str]) -> list[str]:
    """A legacy history's lines (header included) with the columns added since, empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for n, record in enumerate(csv.reader(io.StringIO("".join(lines)))):
        writer.writerow(COLUMNS if n == 0 else record + [""] * (len(COLUMNS) - len(record))
                        if len(record) == len(LEGACY_COLUMNS) else record)
    return out.getvalue().splitlines(keepends=True)


class History:
    """The append-only table and the lock that keeps one writer at a time."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / "history.csv"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = None

    @contextmanager
    def exclusive(self):
        with open(self.out_dir / ".history.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HistoryError(f"{self.path} is being written by another `tinyhil regress`; "
                                   "wait for it, or use another --out directory") from None
            self._repair()
            yield self

    def _repair(self) -> None:
        """A torn last line (killed mid-append) is cut before appending more."""
        if not self.path.exists():
            self.path.write_text(",".join(COLUMNS) + "\n")
            return
        text = read_text(self.path, HistoryError)
        if not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
            atomic_write(self.path, text)
        if text.split("\n", 1)[0].split(",") == LEGACY_COLUMNS:
            atomic_write(self.path, "".join(_with_new_columns(text.splitlines(keepends=True))))

    def append(self, rows: list[Row]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
        try:
            append_durably(self.path, buffer.getvalue())  # all metrics of a case in one write
        except OSError as error:
            raise HistoryError(f"{self.path}: cannot append the rows of {rows[0].case if rows else '-'} "
                               f"({error.strerror}); rows before them are kept and the next "
                               "`tinyhil regress` resumes the run") from None

    def frame(self) -> pd.DataFrame:
        return read_history(self.path)

    # ---- runs: which run is unfinished and may be resumed -------------------
    def run_state_path(self) -> Path:
        return self.out_dir / "last-run.json"

    def unfinished_run(self, fingerprint: str) -> str | None:
        """The run to resume: the last one, if it measured this suite on these
        boards and did not finish. A state file that is not tinyhil's is an
        error naming it (it is written whole, atomically: someone edited it)."""
        path = self.run_state_path()
        if not path.is_file():
            return None
        fix = "delete it, and the next `tinyhil regress` starts a new run"
        try:
            state = json.loads(read_text(path, HistoryError))
        except json.JSONDecodeError as error:
            raise HistoryError(f"{path}: line {error.lineno}: not JSON ({error.msg}); {fix}") from None
        if not isinstance(state, dict):
            raise HistoryError(f"{path}: not the state of a run (a JSON object with run_id, fingerprint and "
                               f"finished) but a {type(state).__name__}; {fix}")
        if state.get("finished") or state.get("fingerprint") != fingerprint:
            return None
        run_id = state.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise HistoryError(f"{path}: run_id is {run_id!r}, not the name of a run; {fix}")
        return run_id

    def mark(self, run_id: str, fingerprint: str, finished: bool) -> None:
        path = self.run_state_path()
        atomic_write(path, json.dumps({"run_id": run_id, "fingerprint": fingerprint,
                                       "finished": finished}))

    def last_good(self, environment: str, case: str, before_run: str,
                  clock_hz: int | None = None) -> tuple[float, float] | None:
        """The latest passing (or first) cycles and arena of a case, from earlier
        runs; a figure there that no measurement can have (lut/numbers.py's rule,
        on a board clocked at `clock_hz`) is an error naming its line."""
        frame = self.frame()
        mine = frame[(frame["environment"] == environment) & (frame["case"] == case)
                     & (frame["run_id"] != before_run)
                     & frame["verdict"].isin([PASS, NEW, IMPROVED])]
        if mine.empty:
            return None
        last_run = mine["run_id"].iloc[-1]
        figures = mine[mine["run_id"] == last_run]
        cycles = figures[figures["metric"] == "cycles"]
        if cycles.empty:
            return None
        arena = figures[figures["metric"] == "arena_bytes"]
        for metric, rows in (("cycles", cycles), ("arena_bytes", arena)):
            for line, value in rows["measured"].items():
                why = problem(metric, value, clock_hz)
                if why:
                    raise HistoryError(f"{self.path}: line {line}: impossible baseline: {why} ({case} on "
                                       f"{environment}); fix or delete that line")
        return float(cycles["measured"].iloc[-1]), \
            float(arena["measured"].iloc[-1]) if not arena.empty else float("nan")
