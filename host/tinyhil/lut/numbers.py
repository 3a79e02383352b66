"""What a number read from a LUT may be: one rule per column, used by every
reader of a table (lut/table.py's scan of each line) and of the baselines taken
from tables, deployments and the regression history (regress/).

A figure no device can produce (a count of cycles that is infinite, 0,
negative, or longer than a minute of the board's clock; a negative or
fractional byte count) is never a measurement: an append-only store sets its
line aside and measures the op again, any other file is refused naming it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# No single op, nor any model tinyhil times, runs for a minute: a count of
# cycles above the board's clock x this many seconds is no measurement.
LONGEST_S = 60
# A 32-bit microcontroller addresses no more bytes than this.
ADDRESSABLE_BYTES = 2**32


@dataclass(frozen=True)
class Rule:
    above_zero: bool  # > 0 (a count of cycles), else >= 0
    whole: bool  # a whole number (a count of things or bytes)
    bound: str = ""  # "cycles" (clock x LONGEST_S), "ms" (LONGEST_S in ms), "bytes" (ADDRESSABLE_BYTES)


CYCLES = Rule(above_zero=True, whole=False, bound="cycles")
BYTES = Rule(above_zero=False, whole=True, bound="bytes")
RULES = {
    "cycles": CYCLES, "cycles_min": CYCLES, "cycles_max": CYCLES,
    "kernel_cycles": Rule(above_zero=False, whole=False, bound="cycles"),
    "ms": Rule(above_zero=True, whole=False, bound="ms"),
    "n": Rule(above_zero=True, whole=True),
    "arena_bytes": BYTES, "scratch_bytes": BYTES, "weights_bytes": BYTES,
    "macs": Rule(above_zero=False, whole=True),
    "filters": Rule(above_zero=False, whole=True),
}
# The columns every row has (the op's own figures); the others are measured,
# and a row whose measurement failed leaves them empty.
OP_COLUMNS = ("filters", "weights_bytes", "macs")


def parse(text: str) -> float | None:
    """A cell's number; None if the cell holds none (empty, or not a number)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def problem(column: str, value, clock_hz: int | None) -> str:
    """What makes `value` impossible in `column` of a table for a board clocked
    at `clock_hz` ('' if nothing; no clock: no upper bound on cycles)."""
    rule = RULES[column]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"{column} is not a number"
    if math.isnan(number):
        return f"{column} is not a number"
    shown = f"{column} {value!s}"
    if not math.isfinite(number):
        return f"{shown} is not a finite number"
    if rule.above_zero and number <= 0:
        return f"{shown} is not above 0 (no {column} can be {value!s})"
    if number < 0:
        return f"{shown} is below 0"
    if rule.whole and number != int(number):
        return f"{shown} is not a whole number"
    if rule.bound == "cycles" and clock_hz and number >= clock_hz * LONGEST_S:
        return (f"{shown} is more than {LONGEST_S} s at the board's {clock_hz / 1e6:g} MHz "
                f"({clock_hz * LONGEST_S:.3g} cycles): no op runs that long")
    if rule.bound == "ms" and number >= LONGEST_S * 1e3:
        return f"{shown} is more than {LONGEST_S} s: no op runs that long"
    if rule.bound == "bytes" and number >= ADDRESSABLE_BYTES:
        return f"{shown} is more than a 32-bit microcontroller addresses ({ADDRESSABLE_BYTES} bytes)"
    return ""


def row_problem(record: dict, clock_hz: int | None, measured: bool) -> str:
    """The first impossible number of a LUT row ('' if none). A `measured` row
    (one that prices an op) must have every column; another may leave its
    measured columns empty (a failed measurement has none), but what it holds
    is checked all the same."""
    for column in RULES:
        text = record.get(column, "")
        if text in ("", None) and not measured and column not in OP_COLUMNS:
            continue
        why = problem(column, text, clock_hz)
        if why:
            return why
    return ""
