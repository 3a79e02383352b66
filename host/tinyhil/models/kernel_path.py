"""Which CMSIS-NN function runs each op of an int8 model on a Cortex-M (DSP
extension, no MVE), decided from the model as TFLM's cmsis_nn kernels and
CMSIS-NN's wrappers decide it (the tree in ../shared/deps): by op, tensor
shapes and options only. Two models that take the same paths with the same
shapes run the same code, whatever their weights.
"""
from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from tinyhil.errors import InvalidModel

OPERATOR_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _padding(padding: int, stride: int, length: int, kernel: int) -> int:
    """TFLM's ComputePaddingHeightWidth (dilation 1): the padding before."""
    if padding != schema.Padding.SAME:
        return 0
    out = (length + stride - 1) // stride
    return max(((out - 1) * stride + kernel - length) // 2, 0)


def kernel_paths(flatbuffer: bytes) -> tuple[str, ...]:
    """The function each op of the (first) subgraph runs, in execution order."""
    try:
        model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    except Exception as error:  # a flatbuffer that does not parse
        raise InvalidModel(f"not a TFLite flatbuffer: {error}") from error
    graph = model.subgraphs[0]
    shape = lambda index: tuple(int(d) for d in graph.tensors[index].shape)  # noqa: E731
    def quantization(index: int) -> tuple | None:
        q = graph.tensors[index].quantization
        if q is None or q.scale is None or len(q.scale) != 1:
            return None
        return float(q.scale[0]), int(q.zeroPoint[0])

    return tuple(_kernel(OPERATOR_NAMES[model.operatorCodes[op.opcodeIndex].builtinCode], op, shape,
                         quantization) for op in graph.operators)


def _kernel(name: str, op, shape, quantization=lambda index: None) -> str:
    options = op.builtinOptions
    if name == "CONV_2D":
        _, in_h, in_w, _ = shape(op.inputs[0])
        _, k_h, k_w, _ = shape(op.inputs[1])
        _, _, out_w, _ = shape(op.outputs[0])
        dilated = options.dilationHFactor != 1 or options.dilationWFactor != 1
        pad_h = _padding(options.padding, options.strideH, in_h, k_h)
        pad_w = _padding(options.padding, options.strideW, in_w, k_w)
        if (pad_h, pad_w) == (0, 0) and (options.strideH, options.strideW) == (1, 1) \
                and (k_h, k_w) == (1, 1) and not dilated:
            return "arm_convolve_1x1_s8_fast"
        if in_h == 1 and out_w % 4 == 0 and options.dilationWFactor == 1 and k_h == 1:
            return "arm_convolve_1_x_n_s8"
        return "arm_convolve_s8"
    if name == "DEPTHWISE_CONV_2D":
        batch, in_h, in_w, _ = shape(op.inputs[0])
        _, k_h, k_w, _ = shape(op.inputs[1])
        if options.depthMultiplier == 1 and batch == 1 and options.dilationHFactor == 1 \
                and options.dilationWFactor == 1:
            pad_h = _padding(options.padding, options.strideH, in_h, k_h)
            pad_w = _padding(options.padding, options.strideW, in_w, k_w)
            if (k_h, k_w) == (3, 3) and pad_h <= 1 and pad_w <= 1:
                return "arm_depthwise_conv_3x3_s8"
            return "arm_depthwise_conv_s8_opt"
        return "arm_depthwise_conv_s8"
    if name == "FULLY_CONNECTED":
        accum_depth = shape(op.inputs[1])[-1]
        if len(shape(op.outputs[0])) > 2 and accum_depth % 4 == 0:
            return "arm_convolve_1x1_s8_fast"
        return "arm_fully_connected_s8"
    if name == "ADD":
        same = shape(op.inputs[0]) == shape(op.inputs[1])
        return "arm_elementwise_add_s8" if same else "reference_ops::BroadcastAdd"
    if name == "MAX_POOL_2D":
        return "arm_max_pool_s8"
    if name == "AVERAGE_POOL_2D":
        return "arm_avgpool_s8"
    if name == "SOFTMAX":
        return "arm_softmax_s8"
    if name in ("RESHAPE", "EXPAND_DIMS", "SQUEEZE"):
        return f"{name.lower()} (copy, no kernel)"
    if name == "MEAN":
        # TFLM's reduce_common.cc: the integer mean when the output keeps the input's quantization
        q_in, q_out = quantization(op.inputs[0]), quantization(op.outputs[0])
        same = q_in is not None and q_in == q_out
        return "TFLM reference_ops::Mean" if same else "TFLM reference_ops::QuantizedMeanOrSum"
    return f"{name} (not a CMSIS-NN kernel)"


def operands_in_graph_order(flatbuffer: bytes) -> bool:
    """Whether the first op reads the graph's inputs in the graph's order. The
    converter lists a model's inputs by the fingerprints of their names, so an
    ADD with Keras' default input names took them swapped for some names: the
    other calibration sample's quantization and the other seeded input bytes
    reached each operand, and the count, which depends on the data, moved by
    up to 0.6 %. Single-op models name their inputs so that it does not
    (tflite_writer.input_names); convert_op and the model cache check it."""
    graph = schema.ModelT.InitFromPackedBuf(flatbuffer, 0).subgraphs[0]
    graph_inputs = [int(i) for i in graph.inputs]
    used = [int(i) for i in graph.operators[0].inputs if int(i) in graph_inputs]
    return used == graph_inputs
