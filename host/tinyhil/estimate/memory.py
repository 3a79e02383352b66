"""Peak memory of an architecture: the MicroNAS paper's Appendix A, and an
estimate of the TFLM arena (its greedy planner replayed, plus per-op state
measured in the LUT)."""
from __future__ import annotations

import math

import numpy as np

from tinyhil.lut.table import Lut, LutError
from tinyhil.models.op_order import architecture_ops
from tinyhil.models.tflite_model import Graph
from tinyhil.spaces import ops
from tinyhil.spaces.arch import MODEL_INPUT, Architecture
from tinyhil.spaces.ops import OpConfig

ALIGN = 16  # TFLM aligns every arena buffer to 16 bytes
# What TFLM keeps in the arena for each model input (MicroInterpreter::
# AllocateTensors, TF_LITE_STATIC_MEMORY on a 32-bit core): a persistent
# TfLiteTensor (40 B), its TfLiteAffineQuantization (12 B) and zero-point
# array (8 B), and its pointer (4 B). An ADD's single-op benchmark has two
# model inputs; the same ADD in a network has none of its own.
MODEL_INPUT_BYTES = 40 + 12 + 8 + 4
# A kernel's persistent data (OpData) is taken from the arena's tail aligned
# down to 16 bytes, after allocations aligned to 4: in a network, the padding
# in front of it is 0, 4, 8 or 12 bytes depending on everything allocated
# before, 6 on average. (Measured: without it the arena of 60 MicroNAS
# networks on qemu-m4 came out 6.2 and 6.9 bytes per op low.)
OP_PADDING_BYTES = (0 + 4 + 8 + 12) / 4


def aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def cmsis_scratch_bytes(op: OpConfig) -> int:
    """The scratch buffer CMSIS-NN's kernels ask TFLM for (DSP builds, i.e.
    Cortex-M4/M7/M33 without MVE), from the *_get_buffer_size functions."""
    kh, kw = op.kernel
    if op.op == ops.CONV:
        if (kh, kw) == (1, 1) and op.strides == (1, 1):
            return 0  # arm_convolve_1x1_s8_fast
        return 2 * op.in_channels * kh * kw * 2  # im2col of int16 (also 1_x_n)
    if op.op == ops.DEPTHWISE:
        return op.in_channels * kh * kw * 2  # arm_depthwise_conv_s8_opt
    if op.op == ops.AVG_POOL:
        return op.in_channels * 4  # arm_avgpool_s8: one int32 per channel
    if op.op == ops.GLOBAL_AVG_POOL:
        # TFLM's MEAN (not CMSIS-NN): int32 sums per output, the input's dims, the two axes
        return op.out_channels * 4 + 4 * 4 + 2 * 4
    return 0  # fully connected, add, max pool, softmax, reshape


def appendix_a_peak(arch: Architecture) -> int:
    """max over ops of sum(inputs) + output + scratch (int8: one byte each)."""
    return max(op_peak(op) for op in arch.runtime().ops)


def greedy_plan(buffers: list[tuple[int, int, int]]) -> int:
    """TFLM's GreedyMemoryPlanner: (size, first op, last op) buffers, largest
    first, each at the lowest offset clear of every buffer alive at the same
    time. Returns the bytes the plan needs. Like TFLM, equal sizes go in the
    reverse of the order the buffers were added (it fills its list from the
    tail, then sorts stably)."""
    return max((o + s for o, (s, _, _) in zip(greedy_offsets(buffers), buffers)), default=0)


def greedy_offsets(buffers: list[tuple[int, int, int]]) -> list[int]:
    """Where greedy_plan puts each buffer (its offset in the arena), in the buffers' order."""
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    offsets = [0] * len(buffers)
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i][0], -i))
    for i in order:
        size, first, last = buffers[i]
        offset = 0
        for p_offset, p_size, p_first, p_last in sorted(p for p in placed
                                                        if not (p[3] < first or p[2] > last)):
            if offset + size <= p_offset:
                break
            offset = max(offset, p_offset + p_size)
        placed.append((offset, size, first, last))
        offsets[i] = offset
    return offsets


def lifetimes(arch: Architecture) -> list[tuple[int, int, int]]:
    """Activation tensors and scratch buffers as (aligned size, first, last)."""
    last_use = {MODEL_INPUT: 0}
    for index, node in enumerate(arch.nodes):
        for source in node.inputs:
            last_use[source] = max(last_use.get(source, 0), index)
    end = len(arch.nodes) - 1
    # TFLM adds the tensors first (in tensor order: here, execution order),
    # then the kernels' scratch buffers
    buffers = [(aligned(math.prod(arch.input_shape)), 0, last_use[MODEL_INPUT])]
    buffers += [(aligned(node.op.output_bytes), index, last_use.get(index, end))
                for index, node in enumerate(arch.nodes)]
    buffers += [(aligned(cmsis_scratch_bytes(node.op)), index, index)
                for index, node in enumerate(arch.nodes) if cmsis_scratch_bytes(node.op)]
    return buffers


def op_peak(op: OpConfig) -> int:
    """Appendix A for one op: its inputs + output + CMSIS-NN scratch."""
    return op.n_inputs * op.input_bytes + op.output_bytes + cmsis_scratch_bytes(op)


def single_op_plan(op: OpConfig) -> int:
    """The planned arena of the op's single-op benchmark (all buffers alive at once)."""
    scratch = cmsis_scratch_bytes(op)
    return op.n_inputs * aligned(op.input_bytes) + aligned(op.output_bytes) + (aligned(scratch) if scratch else 0)


def op_state(op: OpConfig, lut: Lut, fixed: float) -> float:
    """What the op keeps in the arena besides the plan, from its LUT row:
    its benchmark's arena less its planned buffers, the per-model part
    (which counts one model input) and the benchmark's other inputs, plus
    the padding its persistent data gets in a network."""
    extra_inputs = (op.n_inputs - 1) * MODEL_INPUT_BYTES
    return (float(lut.row(op)["arena_bytes"]) - single_op_plan(op) - fixed - extra_inputs
            + OP_PADDING_BYTES)


def fixed_model_bytes(lut: Lut) -> float:
    """The arena a model takes whatever its ops: the intercept of the arena
    of chains of n tiny convolutions (measured with the LUT) over n."""
    chains = lut.meta.extra.get("chain_arena_bytes")
    if not chains:
        raise LutError(f"{lut.path} has no chain_arena_bytes in its metadata: run "
                       "`tinyhil characterize` for it again to measure them (it adds only those)")
    lengths = np.array([int(n) for n in chains], float)
    # the chain's planned buffers: its 1-byte input and outputs, 16 bytes each, two alive at a time
    planned = [greedy_plan([(ALIGN, 0, 0)] + [(ALIGN, i, i + 1) for i in range(int(n))]) for n in lengths]
    beyond = np.array([chains[str(int(n))] for n in lengths], float) - planned
    _, intercept = np.polyfit(lengths, beyond, 1)
    # a calibrated LUT: the board's runtime allocates this much more per model than the emulated
    arena = lut.meta.extra.get("calibration", {}).get("arena") or {}
    return float(intercept) + float(arena.get("per_model_bytes", 0.0))


def graph_lifetimes(arch: Architecture, graph: Graph) -> list[tuple[int, int, int]]:
    """The buffers of a converted model exactly as TFLM adds them: its
    activation tensors in tensor-index order, then the kernels' scratch. (The
    order decides where equal-sized buffers land, so it changes the plan.)"""
    ops = architecture_ops(graph, arch)
    first, last = {t: 0 for t in graph.inputs}, {}
    for index, op in enumerate(graph.ops):
        for t in op.outputs:
            first[t] = index
        for t in op.inputs:
            if t in first:
                last[t] = index
    end = len(graph.ops) - 1
    buffers = [(aligned(graph.tensor_bytes[t]), first[t], end if t in graph.outputs else last.get(t, first[t]))
               for t in graph.activations()]
    buffers += [(aligned(cmsis_scratch_bytes(op)), index, index)
                for index, op in enumerate(ops) if op is not None and cmsis_scratch_bytes(op)]
    return buffers


def arena_estimate(arch: Architecture, lut: Lut, graph: Graph | None = None) -> int:
    """Planned activations + the fixed per-model part + each op's own state,
    where an op's state is what its single-op benchmark used beyond its
    planned buffers and the fixed part. The plan replays TFLM's planner on
    the converted model when there is one, else on the architecture in its
    runtime order, the order tinyhil writes into the models it converts
    (models/op_order.py); only the converter's tensor numbering, which
    decides where equal-sized buffers land, is unknown before conversion
    (the same plan for 170 of 170 random networks)."""
    arch = arch.runtime()
    fixed = fixed_model_bytes(lut)
    per_op = sum(op_state(op, lut, fixed) for op in arch.ops)
    buffers = graph_lifetimes(arch, graph) if graph is not None else lifetimes(arch)
    return int(round(greedy_plan(buffers) + fixed + per_op))
