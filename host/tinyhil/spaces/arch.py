"""Architectures: the typed description every stage after the search space
shares (estimators, search engines, deployment). A small DAG of op configs.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from tinyhil.spaces.ops import DENSE, RESHAPE, OpConfig, Shape

MODEL_INPUT = -1  # a node input that is the model's input tensor


@dataclass(frozen=True)
class Node:
    op: OpConfig
    inputs: tuple[int, ...] = (MODEL_INPUT,)  # earlier node indices, or MODEL_INPUT


@dataclass(frozen=True)
class Architecture:
    space: str
    input_shape: Shape
    nodes: tuple[Node, ...]  # in execution order; the last node is the output
    choices: dict = field(default_factory=dict, compare=False)  # the decisions, readable

    def __post_init__(self):
        for index, node in enumerate(self.nodes):
            for source in node.inputs:
                if not MODEL_INPUT <= source < index:
                    raise ValueError(f"node {index} ({node.op.key}) reads node {source}: not earlier")
                shape = self.input_shape if source == MODEL_INPUT else self.nodes[source].op.output_shape
                # a fully connected layer flattens whatever it is given
                flat = node.op.op == DENSE and math.prod(shape) == math.prod(node.op.input_shape)
                if shape != node.op.input_shape and not flat:
                    raise ValueError(f"node {index} ({node.op.key}) expects {node.op.input_shape}, "
                                     f"gets {shape} from {source}")

    @property
    def ops(self) -> list[OpConfig]:
        return [n.op for n in self.nodes]

    def runtime(self) -> Architecture:
        """The network as TFLite runs it: without the RESHAPEs the converter
        drops, its ops in `execution_order`. (The converter drops a RESHAPE
        that only removes unit axes ((1, 1, C) -> (C,)) when it feeds nothing
        but fully connected layers, which flatten their input themselves; it
        keeps real flattens, e.g. (100, 1, 6) -> (600,).)"""
        order = self.runtime_nodes()
        if order == list(range(len(self.nodes))):
            return self
        position = {old: new for new, old in enumerate(order)}

        def source(index: int) -> int:  # through folded RESHAPEs to what TFLite reads
            while index != MODEL_INPUT and index not in position:
                index = self.nodes[index].inputs[0]
            return position.get(index, MODEL_INPUT)

        nodes = tuple(Node(self.nodes[i].op, tuple(source(s) for s in self.nodes[i].inputs)) for i in order)
        return Architecture(self.space, self.input_shape, nodes, self.choices)

    def runtime_nodes(self) -> list[int]:
        """The indices of `nodes` that TFLite runs, in the order it runs them
        (see `runtime`): what a drawing or a per-layer table pairs with the
        device's profile."""
        consumers = _consumers(self.nodes)

        def squeeze_only(op: OpConfig) -> bool:
            return tuple(d for d in op.input_shape if d != 1) == tuple(d for d in op.output_shape if d != 1)

        folded = {i for i, n in enumerate(self.nodes) if n.op.op == RESHAPE and squeeze_only(n.op)
                  and consumers.get(i) and all(self.nodes[c].op.op == DENSE for c in consumers[i])}
        new_index: dict[int, int] = {MODEL_INPUT: MODEL_INPUT}
        kept, original = [], []
        for index, node in enumerate(self.nodes):
            if index in folded:
                new_index[index] = new_index[node.inputs[0]]
                continue
            kept.append(Node(node.op, tuple(new_index[i] for i in node.inputs)))
            original.append(index)
            new_index[index] = len(kept) - 1
        return [original[i] for i in execution_order(kept)]

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def weights_bytes(self) -> int:
        return sum(op.weights_bytes for op in self.ops)

    @property
    def id(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return {
            "space": self.space,
            "input_shape": list(self.input_shape),
            "choices": self.choices,
            "nodes": [{"op": _op_dict(n.op), "inputs": list(n.inputs)} for n in self.nodes],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> Architecture:
        nodes = tuple(Node(OpConfig(**{k: tuple(v) if isinstance(v, list) else v
                                       for k, v in n["op"].items()}), tuple(n["inputs"]))
                      for n in data["nodes"])
        return cls(data["space"], tuple(data["input_shape"]), nodes, data.get("choices", {}))


def execution_order(nodes: list[Node] | tuple[Node, ...]) -> list[int]:
    """The order tinyhil runs a network's ops in (and writes them into its
    .tflite, see models.op_order): depth first, each op
    as soon as its inputs exist, the most recently enabled first, so that a
    branch is summed as soon as it is computed. Parallel branches then hold
    fewer tensors at once than in the order they were declared, and the
    arena is planned from an order that is known before any conversion (the
    TFLite converter's own order is close to this one but not always equal)."""
    consumers = _consumers(nodes)
    waiting = {i: len(set(node.inputs)) for i, node in enumerate(nodes)}
    ready: list[int] = []  # a stack: what the last op enabled runs next
    order: list[int] = []

    def enable(source: int) -> None:
        enabled = []
        for consumer in sorted(set(consumers.get(source, []))):
            waiting[consumer] -= 1
            if not waiting[consumer]:
                enabled.append(consumer)
        ready.extend(reversed(enabled))  # the lowest index on top

    enable(MODEL_INPUT)
    while ready:
        order.append(ready.pop())
        enable(order[-1])
    return order


def _consumers(nodes) -> dict[int, list[int]]:
    consumers: dict[int, list[int]] = {}
    for index, node in enumerate(nodes):
        for source in node.inputs:
            consumers.setdefault(source, []).append(index)
    return consumers


def _op_dict(op: OpConfig) -> dict:
    return {"op": op.op, "input_shape": list(op.input_shape), "output_shape": list(op.output_shape),
            "kernel": list(op.kernel), "strides": list(op.strides), "filters": op.filters,
            "padding": op.padding, "activation": op.activation}


class Builder:
    """Appends nodes and hands back their indices: keeps samplers readable."""

    def __init__(self, input_shape: Shape):
        self.input_shape = input_shape
        self.nodes: list[Node] = []
        self.cell = ""  # the cell the next nodes belong to (a drawing's frame), if the space has cells
        self.cells: list[str] = []  # per node

    def add(self, op: OpConfig, *inputs: int) -> int:
        self.nodes.append(Node(op, tuple(inputs) if inputs else (len(self.nodes) - 1,)))
        self.cells.append(self.cell)
        return len(self.nodes) - 1

    def shape(self, index: int) -> Shape:
        return self.input_shape if index == MODEL_INPUT else self.nodes[index].op.output_shape

    def build(self, space: str, choices: dict) -> Architecture:
        return Architecture(space, self.input_shape, tuple(self.nodes), choices)
