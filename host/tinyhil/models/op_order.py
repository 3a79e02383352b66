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
from tinyhil.models.single_op import BUILTIN
from tinyhil.models.tflite_model import Graph, TfliteModel, model_graph
from tinyhil.spaces.arch import MODEL_INPUT, Architecture, Node
from tinyhil.spaces.ops import CONV, DEPTHWISE, OpConfig

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
    An op the architecture does not have (a QUANTIZE the converter adds, the
    reshape of a sequence input) stays right after the op whose output it reads."""
    trace = _trace(model_graph(TfliteModel.from_bytes(flatbuffer, f"arch-{arch.id}")), arch)
    return sorted(range(len(trace)), key=trace.__getitem__)


def architecture_ops(graph: Graph, arch: Architecture) -> list[OpConfig | None]:
    """For each op of a converted model, the architecture's op it computes;
    None for an op the architecture does not have."""
    nodes = arch.runtime().nodes
    return [None if added else nodes[node].op for node, added in _trace(graph, arch)]


def _trace(graph: Graph, arch: Architecture) -> list[tuple[int, bool]]:
    """For each op of the converted model: the node whose output it makes,
    and whether the converter added it. An op computes the node of the same
    kind, output shape and kernel that reads the nodes its inputs came from;
    an op no node matches that reads one node's output passes that output on
    (QUANTIZE, a sequence input's reshape)."""
    runtime = arch.runtime()
    node_of = {int(t): MODEL_INPUT for t in graph.inputs}  # tensor -> the node that made it
    unmatched = list(range(len(runtime.nodes)))
    trace = []
    for op in graph.ops:
        sources = sorted({node_of[int(t)] for t in op.inputs if int(t) in node_of})
        output = graph.tensor_shapes[op.outputs[0]]
        kernel = (graph.tensor_shapes[op.inputs[1]][1:3]
                  if op.name in (BUILTIN[CONV], BUILTIN[DEPTHWISE]) else None)
        match = next((i for i in unmatched if _same(runtime.nodes[i], op.name, sources, output[1:], kernel)),
                     None)
        if match is None and len(sources) != 1:
            raise TinyhilError(f"{arch.id}: the converted model's {op.name} {output} "
                               "is no op of the architecture")
        if match is not None:
            unmatched.remove(match)
        node_of[int(op.outputs[0])] = sources[0] if match is None else match
        trace.append((node_of[int(op.outputs[0])], match is None))
    if unmatched:
        raise TinyhilError(f"{arch.id}: the converted model has no op for "
                           f"{runtime.nodes[unmatched[0]].op.key}")
    return trace


def _same(node: Node, name: str, sources: list[int], output_shape: tuple, kernel) -> bool:
    return (BUILTIN[node.op.op] == name and sorted(set(node.inputs)) == sources
            and tuple(node.op.output_shape) == output_shape
            and (kernel is None or tuple(node.op.kernel) == kernel))
