"""One op configuration -> a single-op int8 .tflite, written directly.

No Keras model and no converter: the flatbuffer is written with the TFLite
schema (ai_edge_litert's generated Python, the interpreter's own package)
and holds what the TFLite converter makes of the same Keras layer
(models/single_op.py, kept as the reference the tests compare with):

- the same graph: tensors in the converter's order, a batch axis of 1, the
  same builtin op, op version and options (fused activation included);
- the same inputs in the same order: the converter lists a model's inputs
  by the fingerprints of their names, not in the order the op reads them,
  and feeds the calibration samples (and tinyhil the seeded input bytes)
  in that listed order; both makers name the inputs with input_names, which
  the converter lists in the op's order (convert_op checks it);
- the converter's quantization: activations asymmetric int8 from the
  min/max that calibration on the same representative samples finds (for
  outputs: the op computed in float on them), weights symmetric int8 per
  output channel (FULLY_CONNECTED per tensor, see models/convert.py), int32
  bias at input_scale x weight_scale; pooling and RESHAPE keep their
  input's quantization, SOFTMAX outputs 1/256 at -128;
- random weights from a seed (Keras' default Glorot-uniform, zero bias,
  which the converter drops from FULLY_CONNECTED).

A model takes milliseconds instead of the converter's half second, and no
TensorFlow is imported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tinyhil.errors import TinyhilError
from tinyhil.spaces import ops
from tinyhil.spaces.ops import OpConfig

INT8_MIN, INT8_MAX = -128, 127
WEIGHT_MAX = 127  # symmetric weights use the narrow range [-127, 127]
BUFFER_ALIGNMENT = 16  # constant data 16-byte aligned, as the converter writes it

# (builtin op, op version, runtime version of that version): what the
# converter writes for the int8 form of each op type.
OPCODES = {
    ops.CONV: (schema.BuiltinOperator.CONV_2D, 3, "1.14.0"),
    ops.DEPTHWISE: (schema.BuiltinOperator.DEPTHWISE_CONV_2D, 3, "1.14.0"),
    ops.DENSE: (schema.BuiltinOperator.FULLY_CONNECTED, 4, "1.14.0"),
    ops.ADD: (schema.BuiltinOperator.ADD, 2, "1.14.0"),
    ops.MAX_POOL: (schema.BuiltinOperator.MAX_POOL_2D, 2, "1.14.0"),
    ops.AVG_POOL: (schema.BuiltinOperator.AVERAGE_POOL_2D, 2, "1.14.0"),
    ops.SOFTMAX: (schema.BuiltinOperator.SOFTMAX, 2, "1.14.0"),
    ops.RESHAPE: (schema.BuiltinOperator.RESHAPE, 1, "1.5.0"),
}
PADDING = {"same": schema.Padding.SAME, "valid": schema.Padding.VALID}
ACTIVATION = {"none": schema.ActivationFunctionType.NONE, "relu": schema.ActivationFunctionType.RELU}
SOFTMAX_OUTPUT = (1.0 / 256, INT8_MIN)  # the converter's fixed softmax output range [0, 1)


def input_names(count: int) -> list[str]:
    """The names of a single-op model's inputs, in the order the op reads them.

    The converter (TF 2.x, a Keras model exported as a SavedModel) orders the
    graph's inputs by Fingerprint64 (farmhash) of their signature names, so
    Keras' default names (keras_tensor_<n>, n counting up over the process)
    put an ADD's second operand first for some n and not for others: its
    operands then got the other calibration sample and the other seeded
    bytes, and the op counted up to 0.6 % differently. These names sort as
    the operands do (fingerprints 0x232e... < 0x9cab... for input_1 < input_2).
    """
    return [f"input_{n}" for n in range(1, count + 1)]


@dataclass(frozen=True)
class Quantization:
    scale: np.ndarray  # float32, one per channel or a single one
    zero_point: np.ndarray  # int64
    axis: int = 0

    @classmethod
    def tensor(cls, scale: float, zero_point: int) -> Quantization:
        return cls(np.array([scale], np.float32), np.array([zero_point], np.int64))


def activation_quantization(low: float, high: float) -> Quantization:
    """Asymmetric int8 for a calibrated range, as the converter's quantizer
    computes it: in float32, the range stretched to hold 0, the zero point
    nudged to an integer from whichever end adds the smaller rounding error."""
    f32 = np.float32
    low, high = min(f32(low), f32(0)), max(f32(high), f32(0))
    if high - low < np.finfo(np.float32).eps:  # all zeros: any scale represents them
        return Quantization.tensor(1.0, INT8_MIN)
    qmin, qmax = f32(INT8_MIN), f32(INT8_MAX)
    scale = (high - low) / (qmax - qmin)
    from_min, from_max = qmin - low / scale, qmax - high / scale
    zero = from_min if abs(qmin) + abs(low / scale) < abs(qmax) + abs(high / scale) else from_max
    nudged = INT8_MIN if zero < qmin else INT8_MAX if zero > qmax else _round_away(zero)
    return Quantization.tensor(float(scale), int(nudged))


def _round_away(x):
    """Round half away from zero (C's round), not numpy's half to even."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_weights(weights: np.ndarray, axis: int | None) -> tuple[np.ndarray, Quantization]:
    """Symmetric int8 weights: one scale per index of `axis` (None: per tensor)."""
    reduce = tuple(i for i in range(weights.ndim) if i != axis) if axis is not None else None
    largest = np.max(np.abs(weights), axis=reduce, keepdims=True).astype(np.float32)
    largest = np.where(largest > 0, largest, np.float32(1))  # an all-zero channel: any scale
    scale = largest / np.float32(WEIGHT_MAX)
    values = np.clip(_round_away(weights / scale), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
    scales = scale.reshape(-1).astype(np.float32)
    return values, Quantization(scales, np.zeros(len(scales), np.int64), axis or 0)


def bias_quantization(input_q: Quantization, weight_q: Quantization) -> Quantization:
    scales = input_q.scale * weight_q.scale  # float32, as the converter multiplies them
    return Quantization(scales, np.zeros(len(scales), np.int64), 0)


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int):
    """Keras' default kernel initializer."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


# --------------------------------------------------------------------------
# The op in float, to calibrate its output as the converter does.

def _same_padding(length: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(length / stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, op: OpConfig) -> np.ndarray:
    """(N, out_h, out_w, C, kh, kw) windows of an NHWC batch, TFLite's padding."""
    (kh, kw), (sh, sw) = op.kernel, op.strides
    if op.padding == "same":
        x = np.pad(x, ((0, 0), _same_padding(x.shape[1], kh, sh), _same_padding(x.shape[2], kw, sw),
                       (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    return windows[:, :op.output_shape[0], :op.output_shape[1]]


def _activate(x: np.ndarray, activation: str) -> np.ndarray:
    return np.maximum(x, 0) if activation == "relu" else x


def conv_float(x: np.ndarray, kernel: np.ndarray, op: OpConfig) -> np.ndarray:
    """Keras Conv2D (kernel kh x kw x cin x cout, zero bias) on an NHWC batch."""
    out = np.tensordot(_windows(x, op), kernel, axes=([3, 4, 5], [2, 0, 1]))
    return _activate(out, op.activation)


def depthwise_float(x: np.ndarray, kernel: np.ndarray, op: OpConfig) -> np.ndarray:
    """Keras DepthwiseConv2D (kernel kh x kw x c x 1, zero bias)."""
    out = np.einsum("nhwcij,ijc->nhwc", _windows(x, op), kernel[..., 0])
    return _activate(out, op.activation)


# --------------------------------------------------------------------------
# The flatbuffer.

class _AlignedBuffer(schema.BufferT):
    """Constant data 16-byte aligned (the converter's alignment), so kernels
    read their weights and int32 biases from aligned addresses."""

    def Pack(self, builder):
        data = None
        if self.data is not None:
            raw = bytes(self.data)
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


class GraphWriter:
    """One subgraph of int8 ops: tensors, constants and operators, packed
    into a TFLite flatbuffer laid out as the converter lays it out (buffer
    0 empty, one buffer per tensor, identical constants shared)."""

    def __init__(self):
        self.tensors: list = []
        self.buffers: list = [_AlignedBuffer()]
        self.operators: list = []
        self.opcodes: dict[tuple[int, int], int] = {}
        self.runtime_versions: list[str] = []
        self._constants: dict[bytes, int] = {}

    def tensor(self, name: str, shape, dtype: int = schema.TensorType.INT8,
               quantization: Quantization | None = None, data: bytes | None = None) -> int:
        tensor = schema.TensorT()
        tensor.name, tensor.type, tensor.hasRank = name, dtype, True
        tensor.shape = np.array(shape, np.int32)
        if data is not None and data in self._constants:
            tensor.buffer = self._constants[data]
        else:
            buffer = _AlignedBuffer()
            buffer.data = data
            self.buffers.append(buffer)
            tensor.buffer = len(self.buffers) - 1
            if data is not None:
                self._constants[data] = tensor.buffer
        q = schema.QuantizationParametersT()  # empty when not quantized, as the converter writes it
        if quantization is not None:
            q.scale, q.zeroPoint, q.quantizedDimension = (quantization.scale, quantization.zero_point,
                                                          quantization.axis)
        tensor.quantization = q
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def operator(self, op_type: str, inputs: list[int], outputs: list[int], options_type: int,
                 options) -> None:
        builtin, version, runtime = OPCODES[op_type]
        index = self.opcodes.setdefault((builtin, version), len(self.opcodes))
        self.runtime_versions.append(runtime)
        operator = schema.OperatorT()
        operator.opcodeIndex = index
        operator.inputs, operator.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        operator.builtinOptionsType, operator.builtinOptions = options_type, options
        self.operators.append(operator)

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        subgraph = schema.SubGraphT()
        subgraph.name = "main"
        subgraph.tensors, subgraph.operators = self.tensors, self.operators
        subgraph.inputs, subgraph.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        model = schema.ModelT()
        model.version, model.description = 3, "tinyhil direct writer"
        model.subgraphs = [subgraph]
        model.operatorCodes = []
        for (builtin, version) in self.opcodes:
            code = schema.OperatorCodeT()
            code.builtinCode, code.version = builtin, version
            code.deprecatedBuiltinCode = min(builtin, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
            model.operatorCodes.append(code)
        # The oldest runtime that runs every op, padded as the converter pads it.
        runtime = max(self.runtime_versions, key=lambda v: tuple(map(int, v.split("."))))
        version_buffer = _AlignedBuffer()
        version_buffer.data = runtime.encode().ljust(16, b"\0")
        self.buffers.append(version_buffer)
        metadata = schema.MetadataT()
        metadata.name, metadata.buffer = "min_runtime_version", len(self.buffers) - 1
        model.metadata = [metadata]
        model.buffers = self.buffers
        model.signatureDefs = [_signature(self.tensors, inputs, outputs)]
        builder = flatbuffers.Builder(1024 + sum(len(b.data or b"") for b in self.buffers))
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _signature(tensors, inputs: list[int], outputs: list[int]):
    def tensor_map(name: str, index: int):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, index
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    # the converter's signature names an input as its Keras input (tensor serving_default_<name>:0)
    signature.inputs = [tensor_map(tensors[i].name.removeprefix("serving_default_").removesuffix(":0"), i)
                        for i in inputs]
    signature.outputs = [tensor_map(f"output_{n}", i) for n, i in enumerate(outputs)]
    return signature


def _conv_options(op: OpConfig, depthwise: bool):
    options = schema.DepthwiseConv2DOptionsT() if depthwise else schema.Conv2DOptionsT()
    options.padding = PADDING[op.padding]
    options.strideH, options.strideW = op.strides
    options.dilationHFactor = options.dilationWFactor = 1
    options.fusedActivationFunction = _activation(op)
    if depthwise:
        options.depthMultiplier = 1
    return options


def _activation(op: OpConfig) -> int:
    if op.activation not in ACTIVATION:
        raise TinyhilError(f"{op.key}: no fused activation {op.activation!r} in the direct writer "
                           f"(known: {', '.join(ACTIVATION)}); use --model-maker converter")
    return ACTIVATION[op.activation]


def _pool_options(op: OpConfig):
    options = schema.Pool2DOptionsT()
    options.padding = PADDING[op.padding]
    options.strideH, options.strideW = op.strides
    options.filterHeight, options.filterWidth = op.kernel
    options.fusedActivationFunction = schema.ActivationFunctionType.NONE
    return options


def _range(x: np.ndarray) -> Quantization:
    return activation_quantization(float(np.min(x)), float(np.max(x)))


# Op types written here; others (e.g. MEAN for global average pooling) take the converter.
WRITTEN_OPS = frozenset({ops.CONV, ops.DEPTHWISE, ops.DENSE, ops.ADD, ops.MAX_POOL, ops.AVG_POOL,
                         ops.SOFTMAX, ops.RESHAPE})


def write_op(op: OpConfig, samples: list[np.ndarray], seed: int) -> bytes:
    """The single-op int8 model of `op`: `samples` are the representative
    inputs (one batch per input tensor, as the converter path calibrates on),
    `seed` draws the weights."""
    rng = np.random.default_rng([seed, 1])  # weights apart from the calibration samples
    graph = GraphWriter()
    batch = lambda shape: [1, *shape]  # noqa: E731
    # tensor names as the converter writes them (its signature gives the bare names)
    names = [f"serving_default_{name}:0" for name in input_names(op.n_inputs)]
    input_qs = [_range(s) for s in samples]  # sample i calibrates graph input i, as in the converter
    inputs = [graph.tensor(n, batch(op.input_shape), quantization=q) for n, q in zip(names, input_qs)]
    x, input_q = samples[0], input_qs[0]

    if op.op in (ops.CONV, ops.DEPTHWISE):
        kh, kw = op.kernel
        cin, cout = op.in_channels, op.out_channels
        if op.op == ops.CONV:
            kernel = glorot_uniform(rng, (kh, kw, cin, cout), kh * kw * cin, kh * kw * cout)
            out = conv_float(x, kernel, op)
            filter_values, filter_q = quantize_weights(kernel.transpose(3, 0, 1, 2), axis=0)  # OHWI
            options = (schema.BuiltinOptions.Conv2DOptions, _conv_options(op, False))
        else:
            kernel = glorot_uniform(rng, (kh, kw, cin, 1), kh * kw * cin, kh * kw)
            out = depthwise_float(x, kernel, op)
            filter_values, filter_q = quantize_weights(kernel.reshape(1, kh, kw, cin), axis=3)
            options = (schema.BuiltinOptions.DepthwiseConv2DOptions, _conv_options(op, True))
        bias = graph.tensor("bias", [cout], schema.TensorType.INT32, bias_quantization(input_q, filter_q),
                            np.zeros(cout, np.int32).tobytes())
        weights = graph.tensor("filter", filter_values.shape, quantization=filter_q,
                               data=filter_values.tobytes())
        output = graph.tensor("output", batch(op.output_shape), quantization=_range(out))
        graph.operator(op.op, [inputs[0], weights, bias], [output], *options)
    elif op.op == ops.DENSE:
        units, depth = op.output_shape[-1], op.input_shape[-1]
        kernel = glorot_uniform(rng, (depth, units), depth, units)
        out = _activate(x @ kernel, op.activation)
        filter_values, filter_q = quantize_weights(kernel.T, axis=None)  # per tensor: models/convert.py
        weights = graph.tensor("filter", filter_values.shape, quantization=filter_q,
                               data=filter_values.tobytes())
        output = graph.tensor("output", batch(op.output_shape), quantization=_range(out))
        options = schema.FullyConnectedOptionsT()
        options.fusedActivationFunction = _activation(op)
        # The converter drops the all-zero bias of a fresh Dense layer: no bias input.
        graph.operator(op.op, [inputs[0], weights, -1], [output],
                       schema.BuiltinOptions.FullyConnectedOptions, options)
    elif op.op == ops.ADD:
        output = graph.tensor("output", batch(op.output_shape), quantization=_range(samples[0] + samples[1]))
        options = schema.AddOptionsT()
        options.potScaleInt16 = True
        graph.operator(op.op, inputs, [output], schema.BuiltinOptions.AddOptions, options)
    elif op.op in (ops.MAX_POOL, ops.AVG_POOL):
        output = graph.tensor("output", batch(op.output_shape), quantization=input_q)
        graph.operator(op.op, inputs, [output], schema.BuiltinOptions.Pool2DOptions, _pool_options(op))
    elif op.op == ops.SOFTMAX:
        output = graph.tensor("output", batch(op.output_shape), quantization=Quantization.tensor(*SOFTMAX_OUTPUT))
        options = schema.SoftmaxOptionsT()
        options.beta = 1.0
        graph.operator(op.op, inputs, [output], schema.BuiltinOptions.SoftmaxOptions, options)
    elif op.op == ops.RESHAPE:
        target = np.array(batch(op.output_shape), np.int32)
        shape = graph.tensor("shape", [len(target)], schema.TensorType.INT32, data=target.tobytes())
        output = graph.tensor("output", batch(op.output_shape), quantization=input_q)
        graph.operator(op.op, [inputs[0], shape], [output], schema.BuiltinOptions.NONE, None)
    else:  # pragma: no cover  (OpConfig admits only the types above)
        raise TinyhilError(f"{op.key}: no direct writer for op type {op.op}")
    return graph.finish(inputs, [output])


def write_chain(length: int, samples: np.ndarray, seed: int) -> bytes:
    """`length` 1x1x1 -> 1x1x1 convolutions in a row (Keras Conv2D(1, 1),
    valid padding, no activation): the interpreter-overhead chains."""
    rng = np.random.default_rng([seed, 1])
    op = ops.OpConfig(ops.CONV, (1, 1, 1), (1, 1, 1), filters=1, padding="valid")
    graph = GraphWriter()
    x = samples
    q = _range(x)
    first = current = graph.tensor("input", [1, 1, 1, 1], quantization=q)
    for n in range(length):
        kernel = glorot_uniform(rng, (1, 1, 1, 1), 1, 1)
        x = conv_float(x, kernel, op)
        values, filter_q = quantize_weights(kernel.transpose(3, 0, 1, 2), axis=0)
        weights = graph.tensor(f"filter_{n}", values.shape, quantization=filter_q, data=values.tobytes())
        bias = graph.tensor(f"bias_{n}", [1], schema.TensorType.INT32, bias_quantization(q, filter_q),
                            np.zeros(1, np.int32).tobytes())
        q = _range(x)
        output = graph.tensor(f"output_{n}", [1, 1, 1, 1], quantization=q)
        graph.operator(ops.CONV, [current, weights, bias], [output], schema.BuiltinOptions.Conv2DOptions,
                       _conv_options(op, False))
        current = output
    return graph.finish([first], [current])
