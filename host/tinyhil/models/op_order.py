"""A converted network with its ops in the order tinyhil runs them.

TFLM runs a model's ops in the order its .tflite lists them, and that order
decides which tensors are alive together, so the arena. The TFLite converter
orders parallel branches its own way (mostly, not always, as
spaces.arch.execution_order does), which put the arena of a network up to
4.5 KB away from its estimate, made before any conversion. So the converted
model's operator list is permuted into the architecture's runtime order; the
tensors, buffers and everything else stay as the converter wrote them.
"""
from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from tinyhil.errors import TinyhilError
from tinyhil.models.kernel_path import OPERATOR_NAMES
from tinyhil.models.single_op import BUILTIN
from tinyhil.spaces.arch import MODEL_INPUT, Architecture, Node
from tinyhil.spaces.ops import CONV, DEPTHWISE

OPERATORS_FIELD = 10  # vtable offset of SubGraph.operators (its fourth field)
UOFFSET = 4  # bytes of a flatbuffer offset


def in_runtime_order(flatbuffer: bytes, arch: Architecture) -> bytes:
    """The model with its operators in `arch.runtime()`'s order."""
    return with_operator_order(flatbuffer, runtime_order(flatbuffer, arch))


def with_operator_order(flatbuffer: bytes, order: list[int]) -> bytes:
    """The model with operator `order[i]` run i-th: the operator list's
    offsets rewritten in place, every other byte as it was."""
    if order == list(range(len(order))):
        return flatbuffer
    data = bytearray(flatbuffer)
    table = schema.Model.GetRootAs(data, 0).Subgraphs(0)._tab
    vector = table.Vector(table.Offset(OPERATORS_FIELD))
    if sorted(order) != list(range(table.VectorLen(table.Offset(OPERATORS_FIELD)))):
        raise TinyhilError(f"operator order {order} is not a permutation of the model's operators")
    slots = [vector + UOFFSET * i for i in range(len(order))]
    # each slot holds the distance from itself to its operator's table
    tables = [slot + int.from_bytes(data[slot:slot + UOFFSET], "little") for slot in slots]
    for slot, old in zip(slots, order):
        data[slot:slot + UOFFSET] = (tables[old] - slot).to_bytes(UOFFSET, "little")
    return bytes(data)


def runtime_order(flatbuffer: bytes, arch: Architecture) -> list[int]:
    """The converted model's op indices in the architecture's runtime order.
    Each op is matched to the node of the same kind, output shape and kernel
    that reads the nodes its inputs came from; an op the architecture does
    not have (a QUANTIZE the converter adds, the reshape of a sequence input)
    stays right after the op whose output it reads."""
    runtime = arch.runtime()
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    graph = model.subgraphs[0]
    shape = lambda tensor: tuple(int(d) for d in graph.tensors[tensor].shape)  # noqa: E731
    node_of = {int(t): MODEL_INPUT for t in graph.inputs}  # tensor -> the node that made it
    unmatched = list(range(len(runtime.nodes)))
    keys = []
    for op in graph.operators:
        name = OPERATOR_NAMES[max(model.operatorCodes[op.opcodeIndex].builtinCode,
                                  model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)]
        sources = sorted({node_of[int(t)] for t in op.inputs if int(t) in node_of})
        kernel = shape(op.inputs[1])[1:3] if name in (BUILTIN[CONV], BUILTIN[DEPTHWISE]) else None
        match = next((i for i in unmatched
                      if _same(runtime.nodes[i], name, sources, shape(op.outputs[0])[1:], kernel)), None)
        if match is None and len(sources) != 1:
            raise TinyhilError(f"{arch.id}: the converted model's {name} {shape(op.outputs[0])} "
                               "is no op of the architecture")
        if match is not None:
            unmatched.remove(match)
        source = sources[0] if match is None else match
        node_of[int(op.outputs[0])] = source
        keys.append((source, match is None))
    if unmatched:
        raise TinyhilError(f"{arch.id}: the converted model has no op for "
                           f"{runtime.nodes[unmatched[0]].op.key}")
    return sorted(range(len(keys)), key=keys.__getitem__)


def _same(node: Node, name: str, sources: list[int], output_shape: tuple, kernel) -> bool:
    return (BUILTIN[node.op.op] == name and sorted(set(node.inputs)) == sources
            and tuple(node.op.output_shape) == output_shape
            and (kernel is None or tuple(node.op.kernel) == kernel))
