"""One op of a model, cut out as a model of its own: the same operator, options,
constants (weights, biases) and quantization, its activation inputs made the
graph's inputs and its outputs the graph's outputs. Run on the board and on
the host with the tensors the op read inside the whole model, it tells a
kernel's difference (the op alone differs too) from one that only the whole
model shows (the runner, the model, another op overwriting a tensor).
"""
from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tinyhil.errors import InvalidModel
from tinyhil.models.tflite_writer import _AlignedBuffer


def _has_data(buffer) -> bool:
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def op_alone(flatbuffer: bytes, op_index: int) -> tuple[bytes, tuple[int, ...]]:
    """The model holding only operator `op_index` of `flatbuffer`'s first
    subgraph, and the tensor indices (of the whole model) its graph inputs
    are, in order: the op's inputs that hold no constant data."""
    try:
        model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    except Exception as error:  # a flatbuffer that does not parse
        raise InvalidModel(f"not a TFLite flatbuffer: {error}") from error
    graph = model.subgraphs[0]
    if not 0 <= op_index < len(graph.operators):
        raise InvalidModel(f"no op {op_index}: the model has {len(graph.operators)}")
    operator = graph.operators[op_index]
    old_inputs = [int(t) for t in operator.inputs]
    old_outputs = [int(t) for t in operator.outputs]
    order = list(dict.fromkeys([t for t in old_inputs if t >= 0] + old_outputs))  # each once, in the op's order
    new_index = {old: new for new, old in enumerate(order)}
    buffers = [_AlignedBuffer()]  # buffer 0: the empty sentinel
    tensors, constant = [], set()
    for old in order:
        tensor = graph.tensors[old]
        source = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
        buffer = _AlignedBuffer()
        if _has_data(source):
            buffer.data = np.asarray(source.data, dtype=np.uint8).tobytes()
            constant.add(old)
        buffers.append(buffer)
        tensor.buffer = len(buffers) - 1
        tensors.append(tensor)
    graph_inputs = tuple(dict.fromkeys(t for t in old_inputs if t >= 0 and t not in constant))
    code = model.operatorCodes[operator.opcodeIndex]
    operator.opcodeIndex = 0
    operator.inputs = np.array([new_index[t] if t >= 0 else -1 for t in old_inputs], np.int32)
    operator.outputs = np.array([new_index[t] for t in old_outputs], np.int32)
    sub = schema.SubGraphT()
    sub.name = "op_alone"
    sub.tensors, sub.operators = tensors, [operator]
    sub.inputs = np.array([new_index[t] for t in graph_inputs], np.int32)
    sub.outputs = np.array([new_index[t] for t in old_outputs], np.int32)
    out = schema.ModelT()
    out.version = model.version
    out.description = f"op {op_index} alone, cut by tinyhil"
    out.operatorCodes = [code]
    out.subgraphs = [sub]
    out.buffers = buffers
    builder = flatbuffers.Builder(1024 + sum(len(b.data or b"") for b in buffers))
    builder.Finish(out.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), graph_inputs
