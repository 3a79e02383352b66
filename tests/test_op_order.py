"""A converted network runs its ops in the architecture's runtime order, the
order its arena is estimated for, and computes the same as converted."""
import dataclasses

import numpy as np
import pytest

from tinyhil.errors import TinyhilError
from tinyhil.models.op_order import architecture_ops, runtime_order, with_operator_order
from tinyhil.models.single_op import BUILTIN
from tinyhil.models.tflite_model import Graph, GraphOp, TfliteModel
from tinyhil.models.whole_model import convert_architecture
from tinyhil.spaces import ops
from tinyhil.spaces.arch import Builder


def two_cells():
    """A cell of two summed branches, then one whose three branches and a
    parallel convolution are declared before the adds that sum them (the
    shape of a MicroNAS network the converter ordered its own way)."""
    b = Builder((8, 1, 4))
    stem = b.add(ops.conv((8, 1, 4), 8, (1, 1)))
    first = b.add(ops.add((8, 1, 8)), b.add(ops.conv((8, 1, 8), 8, (3, 1)), stem),
                  b.add(ops.conv((8, 1, 8), 8, (5, 1)), stem))
    bottleneck = b.add(ops.conv((8, 1, 8), 4, (1, 1)), first)
    branches = [b.add(ops.conv((8, 1, 4), 8, (k, 1)), bottleneck) for k in (1, 3, 5)]
    parallel = b.add(ops.conv((8, 1, 8), 8, (3, 1)), first)
    total = b.add(ops.add((8, 1, 8)), branches[0], branches[1])
    total = b.add(ops.add((8, 1, 8)), total, branches[2])
    b.add(ops.add((8, 1, 8)), total, parallel)
    return b.build("test", {})


def op_names(flatbuffer: bytes) -> list[str]:
    return list(TfliteModel.from_bytes(flatbuffer, "m").ops)


def test_converted_network_runs_in_runtime_order_and_computes_the_same():
    arch = two_cells()
    runtime = arch.runtime()
    model = convert_architecture(arch)
    assert runtime_order(model, arch) == list(range(len(runtime.nodes)))
    assert op_names(model) == [BUILTIN[op.op] for op in runtime.ops]

    # the same network in another valid order: the parallel convolution run
    # before the add of the branches, which it does not read
    n = len(runtime.nodes)
    shuffled_order = list(range(n - 3)) + [n - 2, n - 3, n - 1]
    assert n - 3 not in runtime.nodes[n - 2].inputs
    shuffled = with_operator_order(model, shuffled_order)
    assert op_names(shuffled) != op_names(model)
    assert runtime_order(shuffled, arch) == shuffled_order  # where each op belongs
    assert with_operator_order(shuffled, shuffled_order) == model  # a swap undone by itself

    converted = TfliteModel.from_bytes(model, "runtime order")
    reordered = TfliteModel.from_bytes(shuffled, "other order")
    x = converted.random_input(seed=3)
    assert np.array_equal(np.frombuffer(converted.reference_output(x), np.int8),
                          np.frombuffer(reordered.reference_output(x), np.int8))


def test_an_op_the_converter_added_passes_its_input_on_and_a_foreign_op_is_named():
    b = Builder((8, 1, 4))
    b.add(ops.conv((8, 1, 4), 8, (3, 1)))
    b.add(ops.conv((8, 1, 8), 8, (1, 1)))
    arch = b.build("test", {})
    shapes = {0: (1, 8, 1, 4), 1: (8, 3, 1, 4), 2: (8,), 3: (1, 8, 1, 8), 4: (1, 8, 1, 8),
              5: (8, 1, 1, 8), 6: (8,), 7: (1, 8, 1, 8)}
    graph = Graph(ops=(GraphOp("CONV_2D", (0, 1, 2), (3,)), GraphOp("QUANTIZE", (3,), (4,)),
                       GraphOp("CONV_2D", (4, 5, 6), (7,))),
                  tensor_bytes={t: 0 for t in shapes}, tensor_shapes=shapes, inputs=(0,), outputs=(7,))
    assert architecture_ops(graph, arch) == [arch.ops[0], None, arch.ops[1]]
    two_inputs = dataclasses.replace(graph, ops=graph.ops[:1] + (GraphOp("ADD", (0, 3), (4,)),) + graph.ops[2:])
    with pytest.raises(TinyhilError, match=r"converted model's ADD \(1, 8, 1, 8\) is no op of the architecture"):
        architecture_ops(two_inputs, arch)
