"""MicroNAS Eq. 2: the expected cost of a dynamic convolution or add.

    op_hw = alpha_y^T . HW_op . alpha_x

HW_op holds the measured cost for every (output, input) channel option;
alpha_x and alpha_y are the (Gumbel-)softmax weights of the decision groups
that choose the input and output channel counts. With one-hot alphas this
is a LUT lookup; in between it interpolates bilinearly.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinyhil.lut.table import Lut
from tinyhil.spaces.micronas import DynamicAdd, DynamicConv
from tinyhil.spaces.ops import OpConfig


def hw_matrix(conv: DynamicConv, cost: Callable[[OpConfig], float]) -> np.ndarray:
    """HW_op with rows = output options (y), columns = input options (x)."""
    return np.array([[cost(conv.op(cin, cout)) for cin in conv.in_options]
                     for cout in conv.out_options], dtype=np.float64)


def hw_vector(add: DynamicAdd, cost: Callable[[OpConfig], float]) -> np.ndarray:
    return np.array([cost(add.op(c)) for c in add.options], dtype=np.float64)


def lut_cost(lut: Lut, column: str = "cycles") -> Callable[[OpConfig], float]:
    return lambda op: float(lut.row(op)[column])


def expected(hw: np.ndarray, alpha_x: np.ndarray, alpha_y: np.ndarray) -> float:
    """Eq. 2 in numpy."""
    alpha_x, alpha_y = np.asarray(alpha_x, float), np.asarray(alpha_y, float)
    if hw.shape != (alpha_y.size, alpha_x.size):
        raise ValueError(f"HW is {hw.shape}, alphas are y={alpha_y.size}, x={alpha_x.size}")
    return float(alpha_y @ hw @ alpha_x)


def expected_add(hw: np.ndarray, alpha: np.ndarray) -> float:
    return float(np.asarray(alpha, float) @ hw)


def expected_tf(hw, alpha_x, alpha_y):
    """Eq. 2 in TensorFlow: differentiable in both alphas (for the DNAS engine)."""
    import tensorflow as tf

    hw = tf.convert_to_tensor(hw, dtype=alpha_x.dtype)
    return tf.tensordot(alpha_y, tf.linalg.matvec(hw, alpha_x), axes=1)


def channels_alpha(options: tuple[int, ...], channels: float) -> np.ndarray:
    """Weights that place `channels` between its two neighbouring options
    (linear interpolation), e.g. 6 between options 4 and 8 -> (0.5, 0.5)."""
    grid = np.asarray(options, float)
    if not grid[0] <= channels <= grid[-1]:
        raise ValueError(f"{channels} channels is outside the options {options}")
    alpha = np.zeros(len(options))
    upper = int(np.searchsorted(grid, channels))
    if grid[upper] == channels:
        alpha[upper] = 1.0
    else:
        lower = upper - 1
        weight = (channels - grid[lower]) / (grid[upper] - grid[lower])
        alpha[lower], alpha[upper] = 1 - weight, weight
    return alpha
