"""The super-network's expected latency and memory, differentiable in the
architecture weights: Eq. 2 over matrices taken from the board's LUT.

Memory follows the MicroNAS paper's Appendix A (max over ops of inputs +
output + CMSIS-NN scratch), plus what TFLM keeps besides the plan: the
fixed per-model part and each op's state, measured in the LUT, so that the
target bounds the arena the deployed model will really use.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyhil.estimate.memory import fixed_model_bytes, op_peak, op_state
from tinyhil.lut.interpolate import hw_matrix, hw_vector
from tinyhil.lut.table import Lut
from tinyhil.spaces.micronas import DynamicConv, MicroNasSpace


@dataclass(frozen=True)
class Costs:
    """HW matrices of one dynamic op: latency (cycles), memory and state (bytes)."""

    latency: np.ndarray
    memory: np.ndarray
    state: np.ndarray


class HardwareModel:
    def __init__(self, space: MicroNasSpace, lut: Lut):
        self.space = space
        self.lut = lut
        self.clock_hz = lut.meta.clock_hz
        self.fixed = fixed_model_bytes(lut)
        kernel = lambda op: float(lut.row(op)["kernel_cycles"])  # noqa: E731
        state = lambda op: op_state(op, lut, self.fixed)  # noqa: E731
        self.conv = {}
        for conv in space.dynamic_convs():
            self.conv[conv.name] = Costs(hw_matrix(conv, kernel), hw_matrix(conv, op_peak),
                                         hw_matrix(conv, state))
        self.add = {}
        for add in space.dynamic_adds():
            self.add[add.name] = Costs(hw_vector(add, kernel), hw_vector(add, op_peak),
                                       hw_vector(add, state))
        out = space.cells[-1]
        tail = (out.pool, out.reshape, out.softmax)
        self.tail_cycles = sum(kernel(op) for op in tail)
        self.tail_memory = max(op_peak(op) for op in tail)
        self.tail_state = sum(state(op) for op in tail)
        self.invoke = lut.meta.invoke_cycles
        self.dispatch = lut.meta.dispatch_cycles

    def cycles_to_ms(self, cycles):
        return cycles / self.clock_hz * 1e3


def cell_input_bytes(conv: DynamicConv) -> np.ndarray:
    """Bytes of the cell's input for each input channel option."""
    t, s, _ = conv.input_shape
    return np.array([t * s * c for c in conv.in_options], dtype=np.float64)
