"""`tinyhil bench coldstart`: what a new user and CI wait for, from empty caches.

Each step runs `tinyhil` (or `.ci/run`) as a user would, in fresh clones of
the repository with their own empty image caches and a machine cache of the
benchmark's own (empty at the start): a first `tinyhil run`, the same from a
second checkout, a second board of the same core, the README's demo, the
Tiny-TimeNAS 100x6 table, and CI on a clean clone. The same steps run on a
baseline revision (the commit before TFLM was compiled once per machine)
in the same run, so the figures stand side by side.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tinyhil.errors import TinyhilError
from tinyhil.project import project_dir

BASELINE = "e5310ae"  # the last commit that compiled TFLM inside PlatformIO, per checkout
EXAMPLE = "examples/conv1d_har.tflite"
DEMO = ["pipeline", "--engine", "micronas", "--data", "japanese_vowels", "--board", "qemu-m4",
        "--latency", "110ms", "--memory", "32KB", "--search-epochs", "20", "--epochs", "30",
        "--qat-epochs", "5"]  # the Makefile's demo (a checkout's own Makefile says its spelling: demo_command)
TIMENAS = ["characterize", "--space", "timenas", "--input", "100x6", "--classes", "4", "--board", "qemu-m4"]


def demo_command(checkout: Path) -> list[str]:
    """The `tinyhil ...` arguments of the checkout's `make demo` (a baseline revision spells
    its options as it did then, e.g. --lat-target); DEMO when its Makefile has none."""
    import re
    import shlex

    try:
        text = (checkout / "Makefile").read_text().replace("\\\n", " ")
    except OSError:
        return DEMO
    found = re.search(r"^demo:.*\n\t\$\(BIN\)/tinyhil ([^\n]+)", text, re.M)
    return shlex.split(found.group(1)) if found else DEMO


STEPS = ("first-run", "warm-checkout", "second-board", "demo", "timenas", "ci")
TARGETS_S = {"first-run": 180, "warm-checkout": 10, "second-board": 10, "demo": 300, "timenas": 180,
             "ci": 1200}
WHAT = {"first-run": f"first `tinyhil run {EXAMPLE} --board qemu-m4`, empty caches",
        "warm-checkout": "the same from another checkout (machine cache warm)",
        "second-board": "--board qemu-stm32f4 (same core), that checkout",
        "demo": "`make demo`'s pipeline after the first run",
        "timenas": "Tiny-TimeNAS 100x6 table (8,379 ops), empty luts",
        "ci": "`.ci/run` on a clean clone (set-up and `make test`)"}


@dataclass
class StepResult:
    step: str
    seconds: float
    ok: bool
    note: str = ""
    log: Path | None = None


@dataclass
class Side:
    revision: str
    steps: dict[str, StepResult] = field(default_factory=dict)


class ColdStartError(TinyhilError):
    """The benchmark cannot run as asked."""


def _git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ColdStartError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def clone(revision: str, where: Path) -> Path:
    """A clean clone at `revision`, with what set-up would add beside it: PlatformIO's
    offline tool-scons (packaged by scripts/setup.sh) and the example model."""
    source = project_dir()
    _git("clone", "--quiet", "--no-hardlinks", str(source), str(where), cwd=source.parent)
    _git("checkout", "--quiet", revision, cwd=where)
    packages = source / ".pio" / "core" / "packages"
    if packages.is_dir():
        shutil.copytree(packages, where / ".pio" / "core" / "packages", symlinks=True)
    example = source / EXAMPLE
    if example.is_file():
        shutil.copyfile(example, where / EXAMPLE)
    return where


def _environment(checkout: Path, machine_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYHIL_", "PLATFORMIO_"))}
    env.update(PYTHONPATH=str(checkout / "host"), TINYHIL_PROJECT_DIR=str(checkout),
               TINYHIL_MACHINE_CACHE=str(machine_cache), TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="120")
    return env


def _timed(name: str, command: list[str], checkout: Path, env: dict[str, str], logs: Path,
           label: str) -> StepResult:
    log = logs / f"{label}-{name}.log"
    started = time.monotonic()
    with open(log, "w") as out:
        result = subprocess.run(command, cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    return StepResult(name, seconds, result.returncode == 0, "" if result.returncode == 0 else
                      f"exit {result.returncode} (log: {log})", log)


def _libraries(machine_cache: Path) -> set[str]:
    return {p.name for p in (machine_cache / "tflm").glob("cortex-*") if p.is_dir()}


def ceiling_line(log: Path) -> str:
    """The emulator's ceiling as the characterization printed it, if it did."""
    text = log.read_text(errors="replace") if log and log.is_file() else ""
    found = re.search(r"(emulator[^\n]*ceiling[^\n]*|ceiling[^\n]*)", text, re.I)
    return " ".join(found.group(1).split()) if found else ""


def run_side(revision: str, steps: tuple[str, ...], work: Path, label: str,
             log: Callable[[str], None] = lambda _m: None) -> Side:
    """The steps on clones of `revision`, each clone with empty caches; one
    machine cache for the side (empty at its start)."""
    side = Side(revision)
    shared = project_dir().parent / "shared"
    if shared.is_dir() and not (work / "shared").exists():  # the clones see ../shared, as CI's do
        work.mkdir(parents=True, exist_ok=True)
        (work / "shared").symlink_to(shared.resolve())
    machine_cache = work / f"{label}-machine-cache"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    first = second = None
    if set(steps) - {"ci"}:
        first = clone(revision, work / f"{label}-checkout-1")
    for step in steps:
        log(f"{label} ({revision}): {WHAT[step]} ...")
        if step == "first-run":
            result = _timed(step, [python, "-m", "tinyhil", "run", EXAMPLE, "--board", "qemu-m4"], first,
                            _environment(first, machine_cache), logs, label)
        elif step in ("warm-checkout", "second-board"):
            second = second or clone(revision, work / f"{label}-checkout-2")
            before = _libraries(machine_cache)
            board = "qemu-m4" if step == "warm-checkout" else "qemu-stm32f4"
            result = _timed(step, [python, "-m", "tinyhil", "run", EXAMPLE, "--board", board], second,
                            _environment(second, machine_cache), logs, label)
            compiled = _libraries(machine_cache) - before
            if before:  # a revision that keeps TFLM in the machine cache
                result.note = (result.note or "") + ("TFLM compiled: " + ", ".join(sorted(compiled))
                                                     if compiled else "no TFLM compiled")
        elif step == "demo":
            result = _timed(step, [python, "-m", "tinyhil", *demo_command(first), "--out", str(work / f"{label}-demo")],
                            first, _environment(first, machine_cache), logs, label)
        elif step == "timenas":
            result = _timed(step, [python, "-m", "tinyhil", *TIMENAS, "--luts", str(work / f"{label}-luts")],
                            first, _environment(first, machine_cache), logs, label)
            result.note = result.note or ceiling_line(result.log)
        elif step == "ci":
            fresh = clone(revision, work / f"{label}-ci")
            shutil.rmtree(fresh / ".pio", ignore_errors=True)  # CI's clone has nothing beside it
            (fresh / EXAMPLE).unlink(missing_ok=True)
            env = _environment(fresh, work / f"{label}-ci-machine-cache")
            env.pop("PYTHONPATH")  # .ci/run makes its own venv in the clone
            result = _timed(step, ["bash", ".ci/run"], fresh, env, logs, label)
        else:
            raise ColdStartError(f"unknown step {step!r}; known: {', '.join(STEPS)}")
        side.steps[step] = result
        log(f"  {result.seconds:.0f} s {'' if result.ok else 'FAILED '}{result.note}")
    return side


def bench_coldstart(steps: tuple[str, ...], work: Path, before: str | None = BASELINE,
                    log: Callable[[str], None] = lambda _m: None) -> tuple[Side, Side | None]:
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ColdStartError(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(STEPS)}")
    head = _git("rev-parse", "--short", "HEAD", cwd=project_dir())
    if _git("status", "--porcelain", "--untracked-files=no", cwd=project_dir()):
        log("note: the checkout has uncommitted changes; the clones measure HEAD as committed")
    after = run_side(head, steps, work, "after", log)
    baseline = run_side(before, steps, work, "before", log) if before else None
    return after, baseline


__all__ = ["BASELINE", "STEPS", "TARGETS_S", "WHAT", "Side", "StepResult", "bench_coldstart"]
