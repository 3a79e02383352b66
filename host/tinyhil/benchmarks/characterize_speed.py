"""`tinyhil bench characterize --baseline REV`: a space's table characterized
by the tinyhil of git revision REV (before) and by this checkout (after), each
from empty model and image caches, alternately, in one run; their figures side
by side, this checkout's emulator ceiling beside them, and whether the two
tables are the same row for row.

Both sides run as `python -m tinyhil characterize` in a process of their own,
the same way: REV's tree is exported with `git archive` (its firmware, its
host code), this checkout is used as it is. Each tree characterizes one op
first, untimed, so that PlatformIO has built its runner once and recorded the
commands later images are linked with (image/relink.py) on both sides alike.
TFLM's library is the machine's (compiled once per core), shared by both.
"""
from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tinyhil.errors import TinyhilError
from tinyhil.project import project_dir

# Rows of `tinyhil characterize`'s summary that hold seconds (first figure of the value)
SECONDS_ROWS = ("wall time", "model generation", "firmware builds", "boots", "measuring")
CEILING_ROWS = ("guest instructions run", "QEMU's pace", "emulator ceiling")
ROW = re.compile(r"^[│|]\s*(?P<label>[^│|]+?)\s*[│|]\s*(?P<value>.*?)\s*[│|]\s*$")
FIGURE = re.compile(r"(\d+(?:\.\d+)?)")
COMPARED = ("cycles", "kernel_cycles", "arena_bytes")  # the counts; every other column is compared too


@dataclass(frozen=True)
class Side:
    """A tinyhil to characterize with: its host package and its project tree."""

    label: str
    host_dir: Path
    project: Path


@dataclass(frozen=True)
class SideRun:
    side: Side
    round: int
    wall_s: float  # the process's, start to end
    cpu_s: float  # user + system time of it and every process it started: the work, whatever the load
    rows: dict[str, str]  # its summary table, label -> value as printed
    lut: Path
    load: tuple[float, float]  # the machine's 1-minute load average at start and end

    def seconds(self, label: str) -> float | None:
        match = FIGURE.search(self.rows.get(label, ""))
        return float(match.group(1)) if match else None


@dataclass(frozen=True)
class TableComparison:
    rows: int
    other_rows: int
    differing: dict[str, list[str]] = field(default_factory=dict)  # column -> keys that differ

    @property
    def identical(self) -> bool:
        return self.rows == self.other_rows and not self.differing


def compare_tables(a: Path, b: Path) -> TableComparison:
    """Row by row, every column (the counts first): what differs, by key."""
    first, second = pd.read_csv(a, index_col="key"), pd.read_csv(b, index_col="key")
    differing: dict[str, list[str]] = {}
    if list(first.index) != list(second.index):
        differing["key"] = sorted(set(first.index) ^ set(second.index))[:10] or ["(order)"]
    common = first.index.intersection(second.index)
    columns = [*COMPARED, *(c for c in first.columns if c not in COMPARED)]
    for column in columns:
        if column not in second.columns:
            differing[column] = ["(missing)"]
            continue
        left = first.loc[common, column].astype(str)
        right = second.loc[common, column].astype(str)
        keys = list(left.index[left != right])
        if keys:
            differing[column] = keys
    return TableComparison(len(first), len(second), differing)


def export_tree(revision: str, into: Path) -> Path:
    """REV's whole tree (git archive), set up to build offline as this checkout
    does: PlatformIO's packages (tool-scons) taken from this checkout's core."""
    root = project_dir()
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", revision],
                             capture_output=True)
    if archive.returncode != 0:
        raise TinyhilError(f"--baseline {revision}: git archive failed in {root} "
                           f"({archive.stderr.decode(errors='replace').strip()}); it needs a git checkout")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    packages = root / ".pio" / "core" / "packages"
    if packages.is_dir():
        (into / ".pio" / "core").mkdir(parents=True)
        os.symlink(packages, into / ".pio" / "core" / "packages")
    return into


def revision_name(revision: str) -> str:
    found = subprocess.run(["git", "-C", str(project_dir()), "rev-parse", "--short", revision],
                           capture_output=True, text=True)
    return found.stdout.strip() or revision


def characterize(side: Side, scratch: Path, name: str, args: list[str],
                 tflm: Path) -> tuple[float, float, str, Path]:
    """`tinyhil characterize ARGS` by `side` from empty caches under scratch/name:
    (wall seconds, CPU seconds of all its processes, what it printed, its luts directory)."""
    luts = scratch / name / "luts"
    env = dict(os.environ, PYTHONPATH=str(side.host_dir), TINYHIL_PROJECT_DIR=str(side.project),
               TINYHIL_CACHE_DIR=str(scratch / name / "cache"), TINYHIL_TFLM_DIR=str(tflm),
               COLUMNS="400", TERM="dumb", PYTHONUNBUFFERED="1")
    started, used = time.monotonic(), _children_cpu_s()
    done = subprocess.run([sys.executable, "-m", "tinyhil", "characterize", *args, "--luts", str(luts)],
                          cwd=side.project, env=env, capture_output=True, text=True)
    wall, cpu = time.monotonic() - started, _children_cpu_s() - used
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise TinyhilError(f"{side.label}: tinyhil characterize failed ({done.returncode}):\n{tail}")
    return wall, cpu, done.stdout, luts


def _children_cpu_s() -> float:
    """User + system seconds of this process's children that have ended (and theirs:
    QEMU, the compilers and the model workers are each waited for by their parent)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summary_rows(printed: str) -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in printed.splitlines():
        match = ROW.match(line.strip())
        if match and match.group("label") not in rows:
            rows[match.group("label")] = match.group("value")
    return rows


def bench_before_after(revision: str, board: str, space: str, window: int, channels: int, classes: int,
                       rounds: int = 1, keep: Path | None = None, limit: int | None = None,
                       log=print) -> tuple[list[SideRun], list[TableComparison]]:
    """REV's characterize and this checkout's, `rounds` times each, alternately
    (before, after; after, before; ...), each from empty caches; every table
    compared with the first one's. `keep`: a directory the luts directories of
    the runs are copied to (before-1/, after-1/, ...), to diff them again.
    `limit`: only the space's first ops (a quick look; the target is the whole space's)."""
    import shutil

    from tinyhil.image.firmware import tflm_dir
    from tinyhil.lut.table import space_lut_path

    tflm = tflm_dir()
    args = ["--space", space, "--input", f"{window}x{channels}", "--classes", str(classes), "--board", board,
            *(["--limit", str(limit)] if limit else [])]
    with tempfile.TemporaryDirectory(prefix="tinyhil-bench-speed-") as scratch_name:
        scratch = Path(scratch_name)
        before = Side(f"before ({revision_name(revision)})",
                      export_tree(revision, scratch / "before-tree") / "host", scratch / "before-tree")
        after = Side("after (this checkout)", Path(__file__).resolve().parents[2], project_dir())
        for side in (before, after):  # PlatformIO builds each tree's runner once, untimed
            log(f"{side.label}: one op first, untimed (PlatformIO builds the runner and records its link)")
            characterize(side, scratch, f"warm-{side.project.name}", [*args[:8], "--limit", "1"], tflm)
        runs: list[SideRun] = []
        for n in range(rounds):
            for side in ((before, after) if n % 2 == 0 else (after, before)):
                log(f"round {n + 1}/{rounds}: {side.label} characterizes {space} {window}x{channels} "
                    "from empty caches")
                load = os.getloadavg()[0]
                wall, cpu, printed, luts = characterize(side, scratch, f"{n}-{side.project.name}", args, tflm)
                if keep is not None:
                    luts = Path(shutil.copytree(luts, keep / f"{'after' if side is after else 'before'}-{n + 1}"))
                lut = space_lut_path(luts, board, space, (window, channels), classes)
                runs.append(SideRun(side, n + 1, wall, cpu, summary_rows(printed), lut,
                                    (load, os.getloadavg()[0])))
        comparisons = [compare_tables(runs[0].lut, run.lut) for run in runs[1:]]
    return runs, comparisons


def median_wall(runs: list[SideRun], label: str) -> float:
    walls = sorted(run.wall_s for run in runs if run.side.label == label)
    return walls[len(walls) // 2] if walls else float("nan")
