"""The MicroNAS search space (King et al., sections 5.2-5.3, and the authors' code).

A window (T, S) enters as (T, S, 1). Time-Reduce cells halve T with a
(3|5|7)x1 convolution of g..f_max filters. A Sensor-Fusion cell mixes
sensors with a 1 x S_in bottleneck convolution of its own width, then
parallel (3|5|7)x1 convolutions (the convolution block, each on or off,
summed) of the block's width, plus an optional 1x1 residual convolution of
the block's width: the bottleneck's width and the block's width are two
decision groups, as in the authors' `ReduceCH`. When no branch of the block
is chosen the bottleneck is not run either (its output would feed nothing).
A non-reducing cell (stride 1) is a choice between the identity and the
whole cell (the authors' `MakeChoice([Id, cell])`): it can be skipped, which
is how the search makes a network shallower. The output cell is a 1x1
convolution to the classes, global average pooling and softmax. Every
convolution but the classifier is followed by ReLU (paper, 5.3; see
OutputCell for why not the classifier).

Number of cells: the paper's N_TR = floor(log2(ts_l / ts_ml)) and
N_SF = floor(log2(ts_s / ts_ms)) * (1 + sf_s), counted as halvings as the
authors' code does, with at least one cell of each kind (the code's rule;
without it UCI-HAR's 9 sensors would get no Sensor-Fusion cell).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tinyhil.errors import TinyhilError
from tinyhil.spaces import ops
from tinyhil.spaces.arch import MODEL_INPUT, Architecture, Builder
from tinyhil.spaces.ops import OpConfig, Shape


class SpaceError(TinyhilError, ValueError):
    """The space cannot be built for this input (the message says why)."""


@dataclass(frozen=True)
class DynamicConv:
    """A convolution whose input and output channel counts are searched.

    `grid()[i][j]` is the op with in_options[i] input and out_options[j]
    output channels: the HW matrix of Eq. 2 is this grid, looked up in a LUT.
    """

    name: str
    input_shape: Shape  # channels taken from in_options
    kernel: tuple[int, int]
    strides: tuple[int, int]
    in_options: tuple[int, ...]
    out_options: tuple[int, ...]
    activation: str = "relu"

    def op(self, cin: int, cout: int) -> OpConfig:
        t, s, _ = self.input_shape
        return ops.conv((t, s, cin), cout, self.kernel, self.strides, "same", self.activation)

    def grid(self) -> list[list[OpConfig]]:
        return [[self.op(cin, cout) for cout in self.out_options] for cin in self.in_options]


@dataclass(frozen=True)
class DynamicAdd:
    """An add of two tensors with a searched channel count (Eq. 2 as a vector)."""

    name: str
    shape: Shape  # channels taken from options
    options: tuple[int, ...]

    def op(self, channels: int) -> OpConfig:
        return ops.add((*self.shape[:2], channels))


@dataclass(frozen=True)
class TimeReduceCell:
    index: int
    convs: tuple[DynamicConv, ...]  # one per kernel size (decision group alpha_1)


@dataclass(frozen=True)
class SensorFusionCell:
    index: int
    stride: int
    bottleneck: DynamicConv  # out_options: the bottleneck's width (its own decision group)
    branches: tuple[DynamicConv, ...]  # (3|5|7)x1, each on or off: bottleneck width -> block width
    residual: DynamicConv  # cell input -> block width
    add: DynamicAdd  # sums of branches and residual (block width)
    skippable: bool  # stride 1: identity or the whole cell (MakeChoice([Id, cell]))


@dataclass(frozen=True)
class OutputCell:
    conv: DynamicConv  # out_options = (classes,)
    pool: OpConfig
    reshape: OpConfig
    softmax: OpConfig


@dataclass(frozen=True)
class MicroNasSpace:
    window: int  # T
    sensors: int  # S
    classes: int
    tr_kernels: tuple[int, ...] = (3, 5, 7)
    tr_fmax: int = 16
    tr_g: int = 4
    sf_kernels: tuple[int, ...] = (3, 5, 7)
    sf_fmax: int = 64
    sf_g: int = 8
    ts_ml: int = 16
    ts_ms: int = 5
    sf_s: int = 2
    cells: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.window < 2:
            raise SpaceError(f"MicroNAS needs windows of at least 2 samples to halve in time, got {self.window}")
        if self.sensors < 1 or self.classes < 2:
            raise SpaceError(f"need at least 1 sensor and 2 classes, got {self.sensors} and {self.classes}")
        for fmax, g, what in ((self.tr_fmax, self.tr_g, "Time-Reduce"), (self.sf_fmax, self.sf_g, "Sensor-Fusion")):
            if g <= 0 or fmax % g:
                raise SpaceError(f"{what}: f_max {fmax} must be a multiple of the granularity {g}")
        object.__setattr__(self, "cells", self._build())

    @property
    def input_shape(self) -> Shape:
        return (self.window, self.sensors, 1)

    @property
    def tr_options(self) -> tuple[int, ...]:
        return tuple(range(self.tr_g, self.tr_fmax + 1, self.tr_g))

    @property
    def sf_options(self) -> tuple[int, ...]:
        return tuple(range(self.sf_g, self.sf_fmax + 1, self.sf_g))

    @property
    def n_time_reduce(self) -> int:
        return max(1, _halvings(self.window, self.ts_ml))

    @property
    def n_sensor_reduce(self) -> int:
        return max(1, _halvings(self.sensors, self.ts_ms))

    @property
    def n_sensor_fusion(self) -> int:
        return self.n_sensor_reduce * (1 + self.sf_s)

    def _build(self) -> tuple:
        cells: list = []
        t, s = self.window, self.sensors
        channels: tuple[int, ...] = (1,)
        for i in range(self.n_time_reduce):
            convs = tuple(DynamicConv(f"tr{i}.conv{k}", (t, s, 0), (k, 1), (2, 1), channels,
                                      self.tr_options) for k in self.tr_kernels)
            cells.append(TimeReduceCell(i, convs))
            t, channels = math.ceil(t / 2), self.tr_options
        index = 0
        for _ in range(self.n_sensor_reduce):
            for stride in (2,) + (1,) * self.sf_s:
                s_out = math.ceil(s / stride)
                f = self.sf_options
                # The residual is 1x1 with stride (1, stride), where the authors'
                # code uses a 1x2 kernel when reducing: tinyhil keeps the 1x1 so the
                # committed (and calibrated) LUTs stay complete for this space.
                cells.append(SensorFusionCell(
                    index, stride,
                    bottleneck=DynamicConv(f"sf{index}.bottleneck", (t, s, 0), (1, s), (1, stride), channels, f),
                    branches=tuple(DynamicConv(f"sf{index}.conv{k}", (t, s_out, 0), (k, 1), (1, 1), f, f)
                                   for k in self.sf_kernels),
                    residual=DynamicConv(f"sf{index}.residual", (t, s, 0), (1, 1), (1, stride), channels, f),
                    add=DynamicAdd(f"sf{index}.add", (t, s_out, 0), f),
                    skippable=stride == 1,
                ))
                s, channels, index = s_out, f, index + 1
        # The paper puts a ReLU after every convolution; on the classifier it
        # can zero every logit (a random or badly trained net), which leaves
        # softmax an input scale of 0 that TFLite refuses: logits stay linear.
        head = DynamicConv("out.conv", (t, s, 0), (1, 1), (1, 1), channels, (self.classes,), "none")
        cells.append(OutputCell(head, ops.global_avg_pool((t, s, self.classes)),
                                ops.reshape((1, 1, self.classes), (self.classes,)),
                                ops.softmax(self.classes)))
        return tuple(cells)

    def decision_groups(self) -> dict[str, int]:
        """Every decision group and its number of options, in the order of the
        cells (the paper's alpha_i; the super-network has one weight vector each)."""
        groups: dict[str, int] = {}
        for cell in self.cells:
            if isinstance(cell, TimeReduceCell):
                groups[f"tr{cell.index}.kernel"] = len(cell.convs)
                groups[f"tr{cell.index}.filters"] = len(self.tr_options)
            elif isinstance(cell, SensorFusionCell):
                i = cell.index
                groups[f"sf{i}.bottleneck"] = len(self.sf_options)
                groups[f"sf{i}.filters"] = len(self.sf_options)
                for k in self.sf_kernels:
                    groups[f"sf{i}.branch{k}"] = 2
                groups[f"sf{i}.residual"] = 2
                if cell.skippable:
                    groups[f"sf{i}.skip"] = 2
        return groups

    def architecture_count(self) -> int:
        """Combinations of one option per decision group, as the paper counts
        its space ("about 1e13" for UCI-HAR, "1e22" for SkodaR)."""
        return math.prod(self.decision_groups().values())

    def dynamic_convs(self) -> list[DynamicConv]:
        found = []
        for cell in self.cells:
            if isinstance(cell, TimeReduceCell):
                found += cell.convs
            elif isinstance(cell, SensorFusionCell):
                found += [cell.bottleneck, *cell.branches, cell.residual]
            else:
                found.append(cell.conv)
        return found

    def dynamic_adds(self) -> list[DynamicAdd]:
        return [c.add for c in self.cells if isinstance(c, SensorFusionCell)]

    def op_configs(self) -> list[OpConfig]:
        """Every op the super-network can use, each once, in a stable order."""
        found: dict[str, OpConfig] = {}
        for conv in self.dynamic_convs():
            for row in conv.grid():
                for op in row:
                    found.setdefault(op.key, op)
        for add in self.dynamic_adds():
            for channels in add.options:
                op = add.op(channels)
                found.setdefault(op.key, op)
        out = self.cells[-1]
        for op in (out.pool, out.reshape, out.softmax):
            found.setdefault(op.key, op)
        return list(found.values())


def _halvings(length: int, minimum: int) -> int:
    count = 0
    while math.ceil(length / 2) >= minimum:
        length = math.ceil(length / 2)
        count += 1
    return count


# ---- discrete architectures ---------------------------------------------------

def build_architecture(space: MicroNasSpace, choices: dict) -> Architecture:
    """The network for one choice per decision group:
    {"tr": [{"kernel", "filters"}...], "sf": [{"bottleneck", "filters", "branches": [k...],
    "residual": bool, "skip": bool}...]} ("skip" only on stride-1 cells).

    A cell with neither a branch nor the residual computes nothing (the
    authors' super-network gives zeros there, and their export fails): it is
    built with the residual, the cheapest convolution that yields the cell's width."""
    return _built(space, choices).build("micronas", choices)


def cell_labels(arch: Architecture) -> list[str]:
    """The cell of each of a MicroNAS architecture's nodes ("Time-Reduce 0",
    "Sensor-Fusion 1", "classifier"), as build_architecture adds them."""
    (window, sensors, _), classes = arch.input_shape, arch.nodes[-1].op.output_shape[-1]
    built = _built(MicroNasSpace(window, sensors, classes), arch.choices)
    if tuple(built.nodes) != arch.nodes:
        raise SpaceError("the architecture's nodes are not those its choices build")
    return built.cells


def _built(space: MicroNasSpace, choices: dict) -> Builder:
    b = Builder(space.input_shape)
    x, cin = MODEL_INPUT, 1
    tr_cells = [c for c in space.cells if isinstance(c, TimeReduceCell)]
    sf_cells = [c for c in space.cells if isinstance(c, SensorFusionCell)]
    for cell, choice in zip(tr_cells, choices["tr"], strict=True):
        b.cell = f"Time-Reduce {cell.index}"
        conv = cell.convs[space.tr_kernels.index(choice["kernel"])]
        x, cin = b.add(conv.op(cin, choice["filters"]), x), choice["filters"]
    for cell, choice in zip(sf_cells, choices["sf"], strict=True):
        b.cell = f"Sensor-Fusion {cell.index}"
        if choice.get("skip"):
            if not cell.skippable:
                raise SpaceError(f"Sensor-Fusion cell {cell.index} reduces the sensors: it cannot be skipped")
            continue  # the identity: x and its width go on unchanged
        f = choice["filters"]
        outputs = []
        if choice["branches"]:
            bottleneck = b.add(cell.bottleneck.op(cin, choice["bottleneck"]), x)
            outputs = [b.add(cell.branches[space.sf_kernels.index(k)].op(choice["bottleneck"], f), bottleneck)
                       for k in choice["branches"]]
        if choice["residual"] or not outputs:
            outputs.append(b.add(cell.residual.op(cin, f), x))
        main = outputs[0]
        for other in outputs[1:]:
            main = b.add(cell.add.op(f), main, other)
        x, cin = main, f
    out = space.cells[-1]
    b.cell = "classifier"
    b.add(out.conv.op(cin, space.classes), x)
    for op in (out.pool, out.reshape, out.softmax):
        b.add(op)
    return b


def sample_architecture(space: MicroNasSpace, rng) -> Architecture:
    """A random architecture. A size drawn per architecture steers every
    choice, so that samples range from the smallest to the largest networks."""
    size = rng.uniform()

    def pick(options):
        index = int(np.clip(round(size * (len(options) - 1) + rng.normal(0, 1)), 0, len(options) - 1))
        return options[index]

    tr = [{"kernel": int(rng.choice(space.tr_kernels)), "filters": pick(space.tr_options)}
          for _ in range(space.n_time_reduce)]
    sf = []
    for cell in (c for c in space.cells if isinstance(c, SensorFusionCell)):
        on = 0.2 + 0.6 * size
        branches = [k for k in space.sf_kernels if rng.uniform() < on]
        sf.append({"bottleneck": pick(space.sf_options), "filters": pick(space.sf_options),
                   "branches": branches,
                   # neither branch nor residual is built as the residual alone
                   "residual": bool(rng.uniform() < 0.5) or not branches,
                   "skip": cell.skippable and bool(rng.uniform() < 0.5 * (1 - size))})
    return build_architecture(space, {"tr": tr, "sf": sf})
