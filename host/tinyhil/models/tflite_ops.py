"""A converted model's operators as tinyhil op configurations, read from the
flatbuffer's builtin options (strides, padding, fused activation), so that a
bare .tflite can be looked up in a LUT op by op."""
from __future__ import annotations

from tinyhil.spaces import ops
from tinyhil.spaces.ops import OpConfig

PADDING = {0: "same", 1: "valid"}
RELU = 1  # ActivationFunctionType.RELU


def _activation(code: int) -> str | None:
    return {0: "none", RELU: "relu"}.get(code)


def op_configs(flatbuffer: bytes) -> list[OpConfig | None]:
    """One entry per operator in execution order: its op config, or None where
    the op is none tinyhil has (or has options tinyhil does not build)."""
    # the interpreter package's schema: the same generated reader as TensorFlow's, without importing TensorFlow
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(flatbuffer), 0))
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    shape = lambda t: tuple(int(d) for d in graph.tensors[t].shape)  # noqa: E731
    found = []
    for operator in graph.operators:
        code = model.operatorCodes[operator.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        inputs = [t for t in operator.inputs if t >= 0]
        source, out = shape(inputs[0])[1:], shape(operator.outputs[0])[1:]
        options = operator.builtinOptions
        try:
            found.append(_config(name, options, source, out, [shape(t) for t in inputs]))
        except (ValueError, AttributeError, KeyError):
            found.append(None)
    return found


def _config(name: str, options, source, out, input_shapes) -> OpConfig | None:
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kernel = tuple(input_shapes[1][1:3])
        strides = (options.strideH, options.strideW)
        activation = _activation(options.fusedActivationFunction)
        if activation is None:
            return None
        padding = PADDING[options.padding]
        made = (ops.conv(source, out[-1], kernel, strides, padding, activation) if name == "CONV_2D"
                else ops.depthwise(source, kernel, strides, padding, activation))
    elif name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        kernel = (options.filterHeight, options.filterWidth)
        if (options.strideH, options.strideW) != kernel or options.fusedActivationFunction != 0:
            return None
        made = ops.pool(ops.MAX_POOL if name == "MAX_POOL_2D" else ops.AVG_POOL, source, kernel,
                        PADDING[options.padding])
    elif name == "FULLY_CONNECTED":
        activation = _activation(options.fusedActivationFunction)
        if activation is None:
            return None
        made = ops.dense(input_shapes[1][1], out[-1], activation)
        source = made.input_shape if len(source) == 1 else source
    elif name == "ADD":
        if options is not None and options.fusedActivationFunction != 0:
            return None
        made = ops.add(source)
    elif name == "SOFTMAX":
        made = ops.softmax(out[-1])
    elif name == "RESHAPE":
        made = ops.reshape(source, out)
    elif name == "MEAN":
        made = ops.global_mean(source)
    else:
        return None
    return made if made.output_shape == out else None
