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
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

from ..errors import TinyhilError
from ..files import atomic_write

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


COLUMNS = [f.name for f in fields(Row)]


def read_history(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # an append cut short by a kill: never completed
    if not lines or lines[0].rstrip("\n").split(",") != COLUMNS:
        raise HistoryError(f"{path}: not a tinyhil history (expected columns {','.join(COLUMNS)})")
    try:
        frame = pd.read_csv(io.StringIO("".join(lines)), keep_default_na=False,
                            dtype={"run_id": str, "case": str, "detail": str})
    except (ValueError, pd.errors.ParserError) as error:
        raise HistoryError(f"{path}: corrupt CSV ({error})") from error
    for column in ("baseline", "measured"):
        frame[column] = pd.to_numeric(frame[column].replace("", float("nan")), errors="coerce")
    return frame


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
        text = self.path.read_text()
        if not text.endswith("\n"):
            atomic_write(self.path, text[: text.rfind("\n") + 1])

    def append(self, rows: list[Row]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
        try:
            with open(self.path, "a") as f:
                f.write(buffer.getvalue())  # all metrics of a case in one write
                f.flush()
                os.fsync(f.fileno())
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
        path = self.run_state_path()
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if state.get("finished") or state.get("fingerprint") != fingerprint:
            return None
        return state.get("run_id")

    def mark(self, run_id: str, fingerprint: str, finished: bool) -> None:
        path = self.run_state_path()
        atomic_write(path, json.dumps({"run_id": run_id, "fingerprint": fingerprint,
                                       "finished": finished}))

    def last_good(self, environment: str, case: str, before_run: str) -> tuple[float, float] | None:
        """The latest passing (or first) cycles and arena of a case, from earlier runs."""
        frame = self.frame()
        mine = frame[(frame["environment"] == environment) & (frame["case"] == case)
                     & (frame["run_id"] != before_run)
                     & frame["verdict"].isin([PASS, NEW, IMPROVED])]
        if mine.empty:
            return None
        last_run = mine["run_id"].iloc[-1]
        figures = mine[mine["run_id"] == last_run].set_index("metric")["measured"]
        if "cycles" not in figures:
            return None
        return float(figures["cycles"]), float(figures.get("arena_bytes", float("nan")))
