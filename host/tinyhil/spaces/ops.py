"""Operator configurations: the unit that is benchmarked and looked up.

Shapes follow TFLite's NHWC without the batch axis, with H = time and
W = sensors (as MicroNAS and the F446RE reference set do): a window of T
samples of S sensors enters as (T, S, 1); 1-D models run as (T, 1, C).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

Shape = tuple[int, ...]

CONV = "conv2d"
DEPTHWISE = "depthwise_conv2d"
DENSE = "dense"
ADD = "add"
MAX_POOL = "max_pool2d"
AVG_POOL = "avg_pool2d"
SOFTMAX = "softmax"
RESHAPE = "reshape"
GLOBAL_AVG_POOL = "global_avg_pool2d"  # Keras' GlobalAveragePooling2D: TFLite's MEAN over H and W
OP_TYPES = (CONV, DEPTHWISE, DENSE, ADD, MAX_POOL, AVG_POOL, SOFTMAX, RESHAPE, GLOBAL_AVG_POOL)


def conv_out(length: int, kernel: int, stride: int, padding: str) -> int:
    """Output length along one axis, as TFLite computes it."""
    if padding == "same":
        return math.ceil(length / stride)
    return (length - kernel) // stride + 1


@dataclass(frozen=True, order=True)
class OpConfig:
    op: str
    input_shape: Shape
    output_shape: Shape
    kernel: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    filters: int = 0  # output channels of conv/dense; 0 where it does not apply
    padding: str = "same"
    activation: str = "none"  # "relu" fused, "none"

    def __post_init__(self):
        if self.op not in OP_TYPES:
            raise ValueError(f"unknown op type {self.op!r}; known: {', '.join(OP_TYPES)}")
        if any(d <= 0 for d in (*self.input_shape, *self.output_shape)):
            raise ValueError(f"{self.op}: shapes must be positive: {self.input_shape} -> {self.output_shape}")

    @property
    def key(self) -> str:
        """Stable, readable identity: the LUT's row key and the model cache key."""
        dims = lambda s: "x".join(map(str, s))  # noqa: E731
        parts = [self.op, f"{dims(self.input_shape)}-{dims(self.output_shape)}"]
        if self.op in (CONV, DEPTHWISE, MAX_POOL, AVG_POOL):
            parts += [f"k{dims(self.kernel)}", f"s{dims(self.strides)}", self.padding]
        if self.activation != "none":
            parts.append(self.activation)
        return "/".join(parts)

    @property
    def in_channels(self) -> int:
        return self.input_shape[-1]

    @property
    def out_channels(self) -> int:
        return self.output_shape[-1]

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the op (additions for add and pooling)."""
        out = math.prod(self.output_shape)
        kh, kw = self.kernel
        if self.op == CONV:
            return out * kh * kw * self.in_channels
        if self.op == DEPTHWISE:
            return out * kh * kw
        if self.op == DENSE:
            return self.input_shape[-1] * self.output_shape[-1]
        if self.op in (MAX_POOL, AVG_POOL):
            return out * kh * kw
        if self.op in (ADD, SOFTMAX):
            return out
        if self.op == GLOBAL_AVG_POOL:
            return math.prod(self.input_shape)
        return 0

    @property
    def weights_bytes(self) -> int:
        """int8 weights plus int32 biases."""
        kh, kw = self.kernel
        if self.op == CONV:
            return kh * kw * self.in_channels * self.out_channels + 4 * self.out_channels
        if self.op == DEPTHWISE:
            return kh * kw * self.out_channels + 4 * self.out_channels
        if self.op == DENSE:
            return self.input_shape[-1] * self.output_shape[-1] + 4 * self.output_shape[-1]
        return 0

    @property
    def n_inputs(self) -> int:
        """Tensors the op reads (an add reads two of input_shape)."""
        return 2 if self.op == ADD else 1

    @property
    def input_bytes(self) -> int:
        """Bytes of one input tensor."""
        return math.prod(self.input_shape)

    @property
    def output_bytes(self) -> int:
        return math.prod(self.output_shape)


def conv(input_shape: Shape, filters: int, kernel: tuple[int, int], strides=(1, 1),
         padding="same", activation="relu") -> OpConfig:
    t, s, _ = input_shape
    out = (conv_out(t, kernel[0], strides[0], padding), conv_out(s, kernel[1], strides[1], padding),
           filters)
    return OpConfig(CONV, tuple(input_shape), out, tuple(kernel), tuple(strides), filters, padding,
                    activation)


def depthwise(input_shape: Shape, kernel: tuple[int, int], strides=(1, 1), padding="same",
              activation="none") -> OpConfig:
    t, s, c = input_shape
    out = (conv_out(t, kernel[0], strides[0], padding), conv_out(s, kernel[1], strides[1], padding), c)
    return OpConfig(DEPTHWISE, tuple(input_shape), out, tuple(kernel), tuple(strides), c, padding,
                    activation)


def pool(op: str, input_shape: Shape, size: tuple[int, int], padding="valid") -> OpConfig:
    t, s, c = input_shape
    out = (conv_out(t, size[0], size[0], padding), conv_out(s, size[1], size[1], padding), c)
    return OpConfig(op, tuple(input_shape), out, tuple(size), tuple(size), 0, padding)


def dense(inputs: int, units: int, activation="relu") -> OpConfig:
    return OpConfig(DENSE, (inputs,), (units,), filters=units, activation=activation)


def add(shape: Shape) -> OpConfig:
    return OpConfig(ADD, tuple(shape), tuple(shape))


def global_avg_pool(input_shape: Shape) -> OpConfig:
    """Global average pooling as an average pool over the whole window: TFLM
    runs it with CMSIS-NN, where Keras' GlobalAveragePooling becomes MEAN."""
    return pool(AVG_POOL, input_shape, (input_shape[0], input_shape[1]))


def global_mean(input_shape: Shape) -> OpConfig:
    """Global average pooling as Keras and MicroNAS' records have it: MEAN over
    the window, (T, S, C) -> (C,). (The spaces use global_avg_pool, which runs
    on CMSIS-NN; this op is for measuring what such records measured.)"""
    return OpConfig(GLOBAL_AVG_POOL, tuple(input_shape), (input_shape[-1],))


def reshape(input_shape: Shape, output_shape: Shape) -> OpConfig:
    return OpConfig(RESHAPE, tuple(input_shape), tuple(output_shape))


def softmax(classes: int) -> OpConfig:
    return OpConfig(SOFTMAX, (classes,), (classes,))
