"""Quantities given as text (command-line options): a latency, a memory size,
a count, a time budget. Each takes only units of its own kind, so that
`--latency 40m` or a memory of `40ms` is refused instead of being read as
another quantity's unit. Latencies, memory sizes and durations (budgets,
timeouts, waits) need their unit, on every command; a bare number is taken
only for counts (e.g. MACs).

    parse_latency_ms("40ms", "--latency")      -> 40.0
    parse_memory_bytes("32KB", "--memory")    -> 32768
    parse_count("60k", "--macs")               -> 60000.0
    parse_duration_s("10m", "--time-budget")   -> 600.0
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tinyhil.errors import TinyhilError


class UnitError(TinyhilError, ValueError):
    """A quantity that cannot be read, or whose unit is of another kind."""


@dataclass(frozen=True)
class Quantity:
    name: str  # what it measures, for messages
    units: dict[str, float]  # lower-case unit -> factor to the result's unit
    example: str
    bare_allowed: bool = False  # a bare number is in the result's unit


# KB and KiB are both 1024 bytes, as the boards' datasheets and MicroNAS count.
LATENCY = Quantity("latency", {"us": 1e-3, "ms": 1.0, "s": 1000.0}, "40ms")
MEMORY = Quantity("memory size", {"b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2}, "32KB")
COUNT = Quantity("count", {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}, "60k", bare_allowed=True)
DURATION = Quantity("duration", {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}, "10m")
KINDS = (LATENCY, MEMORY, DURATION)  # to name a unit of the wrong kind

# What the units are called where they are written (messages use these).
SPELLING = {"us": "us", "ms": "ms", "s": "s", "b": "B", "kb": "KB", "kib": "KiB", "mb": "MB",
            "mib": "MiB", "k": "k", "m": "M", "g": "G", "min": "min", "h": "h"}

NUMBER = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*")


def parse(text: str, quantity: Quantity, option: str, allow_zero: bool = False) -> float:
    """`text` as a number in `quantity`'s result unit; `option` names where it
    came from in every error. Only positive, finite values are targets
    (`allow_zero`: 0 too, e.g. a wait of 0s)."""
    match = NUMBER.fullmatch(str(text or ""))
    spelled = ", ".join(SPELLING[u] for u in quantity.units if u)
    if not match:
        raise UnitError(f"{option} {text!r}: not a {quantity.name}; give a positive number with "
                        f"a unit ({spelled}), e.g. {quantity.example}")
    value, unit = float(match.group(1)), match.group(2).lower()
    if not unit and not quantity.bare_allowed:
        raise UnitError(f"{option} {text!r}: a bare number is refused, the {quantity.name} needs "
                        f"its unit ({spelled}), e.g. {quantity.example}")
    if unit not in quantity.units:
        other = [k.name for k in KINDS if k is not quantity and unit in k.units]
        kind = f" is a {other[0]} unit, not a {quantity.name} unit" if other else \
            f" is not a {quantity.name} unit"
        raise UnitError(f"{option} {text!r}: {match.group(2)!r}{kind}; accepted units: "
                        f"{spelled}, e.g. {quantity.example}")
    result = value * quantity.units[unit]
    if not (math.isfinite(result) and (result > 0 or allow_zero and result == 0)):
        raise UnitError(f"{option} {text!r}: must be {'0 or ' if allow_zero else ''}more than 0")
    return result


def parse_latency_ms(text: str, option: str = "latency") -> float:
    return parse(text, LATENCY, option)


def parse_memory_bytes(text: str, option: str = "memory size") -> int:
    value = parse(text, MEMORY, option)
    if value != int(value):
        raise UnitError(f"{option} {text!r}: {value:g} is not a whole number of bytes")
    return int(value)


def parse_count(text: str, option: str = "count") -> float:
    return parse(text, COUNT, option)


def parse_duration_s(text: str, option: str = "duration", allow_zero: bool = False) -> float:
    return parse(text, DURATION, option, allow_zero)


