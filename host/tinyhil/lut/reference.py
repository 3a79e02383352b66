"""Reference measurements from a physical board, read into tinyhil op configs.

A reference file is either a tinyhil LUT measured on the board (e.g. the
rows `tinyhil characterize --board B --sample 5%` wrote to luts/B/ops.csv),
or a CSV with one measured single-op model a row, as the MicroNAS authors
published for the NUCLEO-F446RE (`../shared/data/`):

    op,input_shape,output_shape,kernel,strides,filters,padding,activation,
    cycles_total,cycles_kernel,arena_used,...

Shapes are JSON lists in NHWC with the batch axis (H = time, W = sensors);
an add lists its two input shapes. `cycles_total` (the whole Invoke) is
what calibration predicts; the other numeric columns are kept when present.
"""
from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tinyhil.errors import TinyhilError
from tinyhil.lut.table import Lut, is_lut_header, row_op
from tinyhil.spaces import ops
from tinyhil.spaces.ops import OpConfig
from tinyhil.verdict import usable

REQUIRED = ("op", "input_shape", "output_shape", "cycles_total")
OPTIONAL_NUMBERS = ("cycles_kernel", "arena_used", "flash", "flops")
# op names as reference files spell them -> tinyhil op types
OP_NAMES = {
    "conv2d": ops.CONV, "conv_2d": ops.CONV,
    "depthwise_conv2d": ops.DEPTHWISE, "depthwise_conv_2d": ops.DEPTHWISE,
    "dense": ops.DENSE, "fully_connected": ops.DENSE,
    "add": ops.ADD,
    "max_pool2d": ops.MAX_POOL, "max_pooling2d": ops.MAX_POOL, "max_pool_2d": ops.MAX_POOL,
    "avg_pool2d": ops.AVG_POOL, "average_pooling2d": ops.AVG_POOL, "average_pool_2d": ops.AVG_POOL,
    "softmax": ops.SOFTMAX,
    "global_average_pooling2d": ops.GLOBAL_AVG_POOL, "global_avg_pool2d": ops.GLOBAL_AVG_POOL,
    "mean": ops.GLOBAL_AVG_POOL,
}


class ReferenceError(TinyhilError):
    """A reference file tinyhil cannot turn into op configurations."""


class CellError(ValueError):
    """What is wrong with one cell of a row: its column and why."""

    def __init__(self, column: str, why: str):
        super().__init__(why)
        self.column = column


@dataclass(frozen=True)
class ReferenceRow:
    """One op measured on the physical board."""

    line: int  # line in the file (header = 1), for messages
    op: OpConfig
    cycles_total: float
    cycles_kernel: float = math.nan
    arena_used: float = math.nan
    flops: float = math.nan


@dataclass(frozen=True)
class ReferenceSet:
    path: Path
    rows: tuple[ReferenceRow, ...]
    board: str = ""  # known when the reference is a tinyhil LUT
    core: str = ""
    counter: str = ""
    skipped: tuple[str, ...] = ()  # rows left out: "file:line: column C: why"

    @property
    def ops(self) -> list[OpConfig]:
        return [r.op for r in self.rows]

    def frame(self) -> pd.DataFrame:
        """One row per op, indexed by op key."""
        return pd.DataFrame([dict(key=r.op.key, op=r.op.op, line=r.line, ref_cycles=r.cycles_total,
                                  ref_kernel_cycles=r.cycles_kernel, ref_arena=r.arena_used,
                                  ref_flops=r.flops) for r in self.rows]).set_index("key", drop=False)


def _shape(text: str, what: str) -> tuple:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise CellError(what, f"{text!r} is not a list like [1, 64, 30, 1]") from None
    return value


def _without_batch(shape, what: str) -> tuple[int, ...]:
    if (not isinstance(shape, list) or not shape or not all(isinstance(d, int) for d in shape)):
        raise CellError(what, f"{shape!r} is not a list of integers")
    if len(shape) < 2 or shape[0] != 1:
        raise CellError(what, f"{shape!r} must start with a batch of 1")
    return tuple(shape[1:])


def _pair(text, what: str) -> tuple[int, int]:
    value = _shape(text, what)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(d, int) and d > 0 for d in value)):
        raise CellError(what, f"{text!r} must be two positive integers, e.g. [3, 1]")
    return tuple(value)


def _text(record: dict, name: str, default: str) -> str:
    value = record.get(name)
    return default if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" \
        else str(value).strip().lower()


def parse_op(record: dict) -> OpConfig:
    """One CSV record -> the op configuration it measured; CellError says which column and why not."""
    name = _text(record, "op", "")
    if name not in OP_NAMES:
        raise CellError("op", f"{name or 'empty'!r} is not an op tinyhil can build "
                              f"(known: {', '.join(sorted(OP_NAMES))})")
    op_type = OP_NAMES[name]
    output = _without_batch(_shape(record["output_shape"], "output_shape"), "output_shape")
    raw_input = _shape(record["input_shape"], "input_shape")
    padding = _text(record, "padding", "same")
    activation = _text(record, "activation", "none")
    if activation in ("linear", "null"):
        activation = "none"
    if op_type == ops.ADD:
        if not (isinstance(raw_input, list) and len(raw_input) == 2 and all(isinstance(s, list) for s in raw_input)):
            raise CellError("input_shape", "add needs two input shapes, e.g. [[1, 16, 15, 8], [1, 16, 15, 8]]")
        first, second = (_without_batch(s, "input_shape") for s in raw_input)
        if first != second or first != output:
            raise CellError("input_shape", f"add of {first} and {second} into {output}: tinyhil's add "
                            "takes two inputs of the output's shape (no broadcasting)")
        return ops.add(first)
    shape = _without_batch(raw_input, "input_shape")
    if op_type in (ops.CONV, ops.DEPTHWISE, ops.MAX_POOL, ops.AVG_POOL):
        if len(shape) != 3:
            raise CellError("input_shape", f"{name} needs an NHWC input, got {list(shape)}")
        kernel = _pair(record.get("kernel"), "kernel")
        strides = _pair(record.get("strides"), "strides")
        if padding not in ("same", "valid"):
            raise CellError("padding", f"{padding!r} is not same or valid")
        if op_type == ops.CONV:
            filters = _number(record.get("filters"), "filters")
            if math.isnan(filters) or filters != int(filters) or int(filters) <= 0:
                raise CellError("filters", "conv2d needs a positive filters count")
            made = ops.conv(shape, int(filters), kernel, strides, padding, activation)
        elif op_type == ops.DEPTHWISE:
            made = ops.depthwise(shape, kernel, strides, padding, activation)
        else:
            if kernel != strides:
                raise CellError("strides", f"pooling with kernel {kernel} and strides {strides}: tinyhil "
                                "pools with strides equal to the window")
            made = ops.pool(op_type, shape, kernel, padding)
    elif op_type == ops.GLOBAL_AVG_POOL:
        if len(shape) != 3:
            raise CellError("input_shape", f"{name} needs an NHWC input, got {list(shape)}")
        made = ops.global_mean(shape)
    elif op_type == ops.DENSE:
        made = ops.dense(shape[-1], output[-1], activation)
        shape = made.input_shape if len(shape) == 1 else shape
    else:  # softmax
        made = ops.softmax(shape[-1])
    if made.output_shape != output or made.input_shape != shape:
        raise CellError("output_shape", f"{name} of {list(shape)} gives {list(made.output_shape)} as "
                        f"TFLite computes it, but the row says {list(output)}")
    if activation not in ("none", "relu"):
        raise CellError("activation", f"{activation!r} is not relu or none")
    return made


def read_reference(path: Path, strict: bool = False) -> ReferenceSet:
    """Reads and checks a reference file. A row that cannot be used is named
    (line, column, why) and left out; `strict` refuses the file instead,
    naming every problem row at once."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceError(f"{path}: no such reference file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ReferenceError(not_reference(path, "not text")) from None
    if is_lut_header(text.split("\n", 1)[0].strip()):
        return _read_lut(path)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as error:
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        why = (f"line {fields[2]} has {fields[3]} comma-separated fields, the header {fields[1]}" if fields
               else "not comma-separated values")
        raise ReferenceError(not_reference(path, why)) from error
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ReferenceError(not_reference(path, f"no column{'s' * (len(missing) > 1)} {', '.join(missing)}"))
    rows, problems, seen = [], [], {}
    for index, record in enumerate(frame.to_dict("records")):
        line = index + 2
        try:
            op = parse_op(record)
            cycles = _number(record.get("cycles_total"), "cycles_total")
            if not cycles > 0:
                raise CellError("cycles_total", f"{record['cycles_total'] or 'empty'!r} is not a positive number")
            numbers = {name: _number(record.get(name), name) for name in OPTIONAL_NUMBERS}
        except ValueError as error:  # a CellError names its column; an op config's own check is the op's
            column = getattr(error, "column", "op")
            problems.append(f"{path}:{line}: column {column}: {error} ({record.get('op') or '?'})")
            continue
        if op.key in seen:
            problems.append(f"{path}:{line}: columns op..activation: the same op as line {seen[op.key]} "
                            f"({op.key}); the first is used")
            continue
        seen[op.key] = line
        rows.append(ReferenceRow(line, op, cycles, numbers["cycles_kernel"], numbers["arena_used"],
                                 numbers["flops"]))
    if problems and (strict or not rows):
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        why = "--strict refuses the file" if rows else "no row is usable"
        raise ReferenceError(f"{path}: {len(problems)} row(s) cannot be used ({why}):\n  {shown}{more}")
    if not rows:
        raise ReferenceError(f"{path}: no reference rows")
    return ReferenceSet(path, tuple(rows), skipped=tuple(problems))


def not_reference(path: Path, why: str) -> str:
    """Why `path` is no reference file, and what one looks like."""
    return (f"{path} is not a reference CSV ({why}). A reference file is either a CSV of ops measured on "
            f"the board, one a row, with the columns {','.join(REQUIRED)} and the op's "
            "kernel,strides,filters,padding,activation (as ../shared/data/nucleo_f446re-reference.csv), or "
            "the board's own tinyhil LUT (luts/BOARD/ops.csv: `tinyhil characterize --board BOARD --sample 5%`)")


def _read_lut(path: Path) -> ReferenceSet:
    """A tinyhil LUT of the board: its good rows are the reference."""
    lut = Lut.load(path)
    if lut.meta.extra.get("calibration"):
        raise ReferenceError(f"{path} is itself calibrated, not measured on {lut.meta.board}")
    rows = [ReferenceRow(line, row_op(r), float(r["cycles"]), float(r["kernel_cycles"]),
                         float(r["arena_bytes"]))
            for line, (_, r) in enumerate(lut.rows.iterrows(), start=2) if usable(r["status"])]
    if not rows:
        raise ReferenceError(f"{path}: no good measurement to calibrate with")
    return ReferenceSet(path, tuple(rows), lut.meta.board, lut.meta.core, lut.meta.counter)


def _number(value, name: str) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise CellError(name, f"{value!r} is not a number") from None
