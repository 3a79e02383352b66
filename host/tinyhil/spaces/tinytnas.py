"""The TinyTNAS search space (Saha et al.; BidyutSaha/TinyTNAS, ModelBank.py).

Its template, BuildModelwithSpecs(k, c): SeparableConv1D(k, 3, relu, same);
then c cells of MaxPool1D(2) + SeparableConv1D(int(1.5 x previous), 3, relu),
stopping early when the time axis reaches 1; GlobalAveragePooling1D;
Dense(int(1.5 x last), relu); Dense(classes, softmax). A separable
convolution runs as a depthwise 3x1 convolution and a pointwise 1x1
convolution (ReLU fused in the latter), as TFLite converts it.

The search explores c = 0..4 and every k its order can reach from k = 4
(each best k refills k + i * floor(k/4), i = 0..3, and doubles): nearly all
widths from 4 to k_max.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyhil.spaces import ops
from tinyhil.spaces.arch import Architecture, Builder
from tinyhil.spaces.micronas import SpaceError
from tinyhil.spaces.ops import OpConfig, Shape


def explored_widths(start: int = 4, k_max: int = 64) -> tuple[int, ...]:
    """Every k the TinyTNAS search order can reach, up to k_max: from any
    adopted k it may go on to k + i * floor(k/4) (i = 1..3) or 2k."""
    reached, frontier = {start}, [start]
    while frontier:
        k = frontier.pop()
        for nxt in [k + i * (k // 4) for i in range(1, 4)] + [2 * k]:
            if nxt <= k_max and nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    return tuple(sorted(reached))


@dataclass(frozen=True)
class TinyTnasArch:
    """One point of the template: first width k and cell count c."""

    k: int
    c: int


@dataclass(frozen=True)
class TinyTnasSpace:
    window: int
    channels: int
    classes: int
    k_max: int = 64
    max_cells: int = 4

    def __post_init__(self):
        if self.window < 2:
            raise SpaceError(f"TinyTNAS needs at least 2 time steps, got {self.window}")
        if self.channels < 1 or self.classes < 2:
            raise SpaceError(f"need at least 1 channel and 2 classes, got {self.channels} and {self.classes}")

    @property
    def input_shape(self) -> Shape:
        return (self.window, 1, self.channels)

    def architectures(self) -> list[TinyTnasArch]:
        return [TinyTnasArch(k, c) for k in explored_widths(4, self.k_max)
                for c in range(self.max_cells + 1)]

    def arch_ops(self, arch: TinyTnasArch) -> list[OpConfig]:
        """The ops of BuildModelwithSpecs(k, c), in execution order."""
        found = []
        shape = self.input_shape
        filters = arch.k

        def separable(shape: Shape, filters: int) -> Shape:
            dw = ops.depthwise(shape, (3, 1), activation="none")
            pw = ops.conv(dw.output_shape, filters, (1, 1), activation="relu")
            found.extend([dw, pw])
            return pw.output_shape

        shape = separable(shape, filters)
        for _ in range(arch.c):
            if shape[0] // 2 < 1:
                break  # the template stops when the time axis reaches 1
            pool = ops.pool(ops.MAX_POOL, shape, (2, 1))
            found.append(pool)
            filters = int(1.5 * filters)
            shape = separable(pool.output_shape, filters)
        gap = ops.global_avg_pool(shape)
        flat = ops.reshape(gap.output_shape, (shape[-1],))
        hidden = int(1.5 * filters)
        found += [gap, flat, ops.dense(shape[-1], hidden, "relu"),
                  ops.dense(hidden, self.classes, "none"), ops.softmax(self.classes)]
        return found

    def op_configs(self) -> list[OpConfig]:
        found: dict[str, OpConfig] = {}
        for arch in self.architectures():
            for op in self.arch_ops(arch):
                found.setdefault(op.key, op)
        return list(found.values())


def build_architecture(space: TinyTnasSpace, arch: TinyTnasArch) -> Architecture:
    b = Builder(space.input_shape)
    for op in space.arch_ops(arch):
        b.add(op)
    return b.build("tinytnas", {"k": arch.k, "c": arch.c})


def sample_architecture(space: TinyTnasSpace, rng) -> Architecture:
    options = space.architectures()
    return build_architecture(space, options[int(rng.integers(len(options)))])
