"""The data a model sees: one row per op, emulated counts and op features
(sizes known before anything runs, and the geometry of the loops whose
board cycles per instruction differ most)."""
from __future__ import annotations

import math

import pandas as pd

from tinyhil.lut.reference import ReferenceSet
from tinyhil.lut.table import Lut, row_op
from tinyhil.spaces.ops import CONV, OpConfig
from tinyhil.verdict import usable


def kernel_path(op: OpConfig) -> str:
    """The op type, refined by which CMSIS-NN kernel runs it: a 1x1 stride-1
    convolution over a multiple of 4 channels takes the fast path with no
    im2col, whose loops cost the board other cycles per instruction."""
    if op.op == CONV and op.kernel == (1, 1) and op.strides == (1, 1) and op.in_channels % 4 == 0:
        return f"{CONV}-1x1"
    return op.op


def op_type(path: str) -> str:
    """The op type of a kernel path (the arena and the bounds do not depend on the kernel)."""
    return path.removesuffix("-1x1")


def _valid_taps(length: int, out: int, kernel: int, stride: int, padding: str) -> int:
    """Kernel taps inside the input, summed over the output positions of one
    axis (TFLite's `same` pads the smaller half before the data)."""
    if padding != "same":
        return out * kernel
    before = max((out - 1) * stride + kernel - length, 0) // 2
    return sum(min(o * stride - before + kernel, length) - max(o * stride - before, 0) for o in range(out))


FLASH_LINE = 16  # bytes a flash cache line holds (the STM32 ART accelerator's 128 bits)


def weights_working_set(op: OpConfig) -> int:
    """Weight bytes a convolution's matrix loop streams again and again: the
    1x1 kernel (arm_nn_mat_mult_nt_t_s8) keeps two output channels' rows
    while it walks every pixel; the im2col kernel (arm_nn_mat_mult_kernel_s8_s16)
    walks every output channel's row for each pair of pixels."""
    if op.op != CONV:
        return 0
    row = op.kernel[0] * op.kernel[1] * op.in_channels
    return 2 * row if kernel_path(op) == f"{CONV}-1x1" else op.out_channels * row


def flash_refetch_lines(op: OpConfig, flash_cache_bytes: int) -> float:
    """Weight lines read from flash again because the board's flash data cache
    cannot hold the loop's working set (0 without a modelled cache). The
    weights sit in flash; a loop that cycles over as many lines as the cache
    has (or more) misses on every line under LRU, since the loop's other
    flash reads (bias, literals) or a line the rows straddle take one. Each
    weight byte then comes from flash once per pass, and a pass serves two
    pixels (or two output channels' rows): MACs / (2 x line) lines. The
    emulated board has no flash wait states, so only the board pays them."""
    working_set = weights_working_set(op)
    if not flash_cache_bytes or not working_set:
        return 0.0
    if math.ceil(working_set / FLASH_LINE) < flash_cache_bytes // FLASH_LINE:
        return 0.0
    return float(op.macs) / (2 * FLASH_LINE)


def geometry_features(op: OpConfig, flash_cache_bytes: int = 0) -> dict:
    """Counts of the loops whose board cycles per instruction differ most from
    the bulk MAC loop, for the geometries other sizes do not predict: im2col
    copies (one call per kernel tap inside the input: many for a 128x9x1
    first layer), padded taps (zero fill: a 1x15 kernel over 15 sensors is
    mostly padding), MACs left over by the kernels' blocked loops (4 for the
    im2col kernel, 16 for the 1x1 kernel), the 1-3 channels each im2col
    copy does one by one, and weight lines the board's flash cache misses."""
    none = dict(im2col_calls=0.0, pad_taps=0.0, tail_macs=0.0, in_tail=0.0, flash_refetch=0.0)
    if op.op != CONV:
        return none
    (ih, iw, cin), (oh, ow, cout) = op.input_shape, op.output_shape
    (kh, kw), (sh, sw) = op.kernel, op.strides
    path = kernel_path(op)
    block = 16 if path == f"{CONV}-1x1" else 4
    tail_macs = float(oh * ow * cout * ((kh * kw * cin) % block))
    refetch = flash_refetch_lines(op, flash_cache_bytes)
    if path != CONV:
        return none | dict(tail_macs=tail_macs, flash_refetch=refetch)
    valid = _valid_taps(ih, oh, kh, sh, op.padding) * _valid_taps(iw, ow, kw, sw, op.padding)
    return dict(im2col_calls=float(valid), pad_taps=float((oh * ow * kh * kw - valid) * cin),
                tail_macs=tail_macs, in_tail=float(valid * (cin % 4)), flash_refetch=refetch)


GEOMETRY = ("im2col_calls", "pad_taps", "tail_macs", "in_tail", "flash_refetch")
# terms of the board, not of one kernel path: one coefficient for every path
# (a flash line costs the same wait states whichever loop asks for it), so a
# path whose fitted rows never missed the cache still learns the cost from
# the paths whose rows did
BOARD_TERMS = ("flash_refetch",)
# A kernel path's own fixed cost, read per call (1 for every op) instead of per
# output pixel: the two cannot be told apart on a path whose rows all have one
# pixel count (every 1x1 convolution of the F446RE reference is 16x15), yet
# predict a small 1x1 classifier head (16x5, 25x3) apart by 4-8 %. The grouped
# error chooses between them on the paths whose pixel counts vary
# (cross_validation.select_geometry).
CALL_TERM = "calls"


def op_features(op: OpConfig, flash_cache_bytes: int = 0) -> dict:
    """Sizes of an op known before anything runs (and `calls`: one); `group` is its input shape
    (the unit a user's next data set changes: grouped cross-validation holds
    out one at a time). `flash_cache_bytes`: the physical board's flash data
    cache (boards.BoardConfig), 0 when none is modelled."""
    out_pixels = op.output_bytes / op.out_channels
    path = kernel_path(op)
    return dict(op=path, group="x".join(map(str, op.input_shape)), macs=float(op.macs),
                out_elems=float(op.output_bytes), out_pixels=out_pixels, calls=1.0,
                im2col=float(op.macs / op.out_channels) if path == CONV else 0.0,
                in_elems=float(op.n_inputs * op.input_bytes), **geometry_features(op, flash_cache_bytes))


def training_frame(reference: ReferenceSet, emulated: pd.DataFrame, flash_cache_bytes: int = 0) -> pd.DataFrame:
    """Reference rows joined with the emulated rows of the same ops (by key)."""
    rows = []
    for ref in reference.rows:
        if ref.op.key not in emulated.index:
            continue
        emu = emulated.loc[ref.op.key]
        if not usable(emu["status"]):
            continue
        rows.append(dict(key=ref.op.key, line=ref.line, **op_features(ref.op, flash_cache_bytes),
                         emu_cycles=float(emu["cycles"]), emu_kernel=float(emu["kernel_cycles"]),
                         emu_arena=float(emu["arena_bytes"]), ref_cycles=ref.cycles_total,
                         ref_kernel=ref.cycles_kernel, ref_arena=ref.arena_used))
    return pd.DataFrame(rows).set_index("key", drop=False) if rows else pd.DataFrame()


def prediction_frame(lut: Lut, flash_cache_bytes: int = 0) -> pd.DataFrame:
    """The emulated LUT's usable rows as a model's input."""
    rows = []
    for key, r in lut.rows.iterrows():
        if not usable(r["status"]):
            continue
        op = row_op(r)
        rows.append(dict(key=key, **op_features(op, flash_cache_bytes), emu_cycles=float(r["cycles"]),
                         emu_kernel=float(r["kernel_cycles"])))
    return pd.DataFrame(rows).set_index("key", drop=False)
