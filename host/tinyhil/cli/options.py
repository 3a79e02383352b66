"""The options several commands share, defined once: one name, one meaning and
one unit rule everywhere (tinyhil.units: a latency, memory size or duration
needs its unit; a count such as MACs may be bare).

    --latency 40ms   --memory 32KB   --flash 64KB   --macs 60k    targets
    --time-budget 10m   --timeout 30s   --wait 1m                  durations
    --repeats N   --seed N   --candidates N                        counts
    --out DIR   --report FILE.html   --json FILE.json               outputs
"""
from __future__ import annotations

from pathlib import Path

import typer

from tinyhil.units import parse_duration_s

MEMORY_UNITS = "unit B, KB, KiB, MB or MiB; KB = KiB = 1024 B"

LATENCY = typer.Option(None, "--latency", help="latency target on the board, e.g. 40ms (unit us, ms or s); "
                       "omit: none")
MEMORY = typer.Option(None, "--memory", help=f"peak memory target (the TFLM arena), e.g. 32KB ({MEMORY_UNITS}); "
                      "omit: none")
FLASH = typer.Option(None, "--flash", help=f"flash target (the int8 model), e.g. 64KB ({MEMORY_UNITS}); omit: none")
MACS = typer.Option(None, "--macs", help="MACs target, e.g. 60k (a count: bare, or k, M, G); omit: none")

BOARD = typer.Option("qemu-m4", "--board", help="board name (see `tinyhil boards`)")
LUTS = typer.Option(Path("luts"), "--luts", help="directory of lookup tables (LUTS/BOARD/*.csv)")
PORT = typer.Option("", "--port", help="serial port of a physical board")
SEED = typer.Option(0, "--seed", help="random seed (data split, sampling, training)")
WINDOW = typer.Option(None, "--window", min=1, help="window length, for CSV data")
LATENCY_AT = typer.Option("point", "--latency-at", help="price latency at: point (the estimate) or, on a "
                          "calibrated board LUT, its bound p50, p90, p95 or p99 (a measured LUT has no model "
                          "error: the same as point)")


def time_budget(default: str, what: str = "TinyTNAS's wall-clock budget") -> typer.Option:
    return typer.Option(default, "--time-budget", help=f"{what}, e.g. 10m, 90s (unit s, m, min or h)")


def timeout(default: str = "30s", what: str = "to wait for each reply of a board") -> typer.Option:
    return typer.Option(default, "--timeout", help=f"how long {what}, e.g. 30s (unit s, m, min or h)")


def wait() -> typer.Option:
    return typer.Option(None, "--wait", help="how long to wait for a labgrid place another user holds, e.g. "
                        "5m (unit s, m, min or h) [default: the inventory's `wait:`, else 0s]")


def store_wait(what: str = "the emulated board's store") -> typer.Option:
    return typer.Option("10m", "--store-wait", help=f"how long to wait for another tinyhil process writing {what}, "
                        "if ops must be measured, e.g. 10m or 0s (unit s, m, min or h)")


def candidates(default: int, what: str = "Tiny-TimeNAS candidates sampled and ranked") -> typer.Option:
    return typer.Option(default, "--candidates", min=1, help=what)


def seconds(text: str | None, option: str, allow_zero: bool = False) -> float | None:
    """A duration option's value in seconds (`allow_zero`: 0s, no wait); None stays None."""
    return None if text is None else parse_duration_s(text, option, allow_zero)
