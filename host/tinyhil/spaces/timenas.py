"""The Tiny-TimeNAS search space (JOSS paper, Table 1; tiny_tnas/ in its code).

Networks of 2..6 layers, all MLP or all CNN. MLP: flatten, Dense(units, relu)
per layer. CNN: Conv1D(filters, kernel, stride, same, relu) per layer, run
here as a (kernel x 1) Conv2D over (T, 1, C). Head: flatten + Dense(classes)
+ softmax (classification) or Dense(1) (regression).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tinyhil.spaces import ops
from tinyhil.spaces.arch import Architecture, Builder
from tinyhil.spaces.micronas import SpaceError
from tinyhil.spaces.ops import OpConfig, Shape

# P(MLP) per task, from the seed's Table 1 (the rest is CNN)
MLP_PROBABILITY = {"classification": 0.4516, "regression": 0.5055}
WIDTHS = (8, 16, 32, 64, 128, 256)
KERNELS = (2, 3, 5, 7, 9)
STRIDES = (1, 2, 3)
MIN_LAYERS, MAX_LAYERS = 2, 6


@dataclass(frozen=True)
class TimeNasSpace:
    window: int
    channels: int
    classes: int  # 1 for regression
    widths: tuple[int, ...] = WIDTHS
    kernels: tuple[int, ...] = KERNELS
    strides: tuple[int, ...] = STRIDES
    max_layers: int = MAX_LAYERS

    def __post_init__(self):
        if self.window < 1 or self.channels < 1 or self.classes < 1:
            raise SpaceError(f"bad input {self.window}x{self.channels} with {self.classes} outputs")

    @property
    def input_shape(self) -> Shape:
        return (self.window, 1, self.channels)

    def lengths_by_depth(self) -> list[set[int]]:
        """Time lengths a CNN layer at each depth can see (strides compound)."""
        levels = [{self.window}]
        for _ in range(self.max_layers - 1):
            levels.append({math.ceil(t / s) for t in levels[-1] for s in self.strides})
        return levels

    def head(self, features: int) -> list[OpConfig]:
        if self.classes == 1:
            return [ops.dense(features, 1, "none")]
        return [ops.dense(features, self.classes, "none"), ops.softmax(self.classes)]

    def op_configs(self) -> list[OpConfig]:
        found: dict[str, OpConfig] = {}

        def keep(op: OpConfig) -> None:
            found.setdefault(op.key, op)

        flat = self.window * self.channels
        # MLP: flatten, then Dense layers of any width after any width
        keep(ops.reshape(self.input_shape, (flat,)))
        for units in self.widths:
            keep(ops.dense(flat, units))
            for previous in self.widths:
                keep(ops.dense(previous, units))
            for op in self.head(units):
                keep(op)
        # CNN: every (length, in, out, kernel, stride) a layer can meet
        for depth, lengths in enumerate(self.lengths_by_depth()):
            in_channels = (self.channels,) if depth == 0 else self.widths
            for t in sorted(lengths):
                for cin in in_channels:
                    for cout in self.widths:
                        for k in self.kernels:
                            for s in self.strides:
                                keep(ops.conv((t, 1, cin), cout, (k, 1), (s, 1)))
        # CNN head: flatten whatever a 2..6-layer CNN leaves
        for lengths in self.lengths_by_depth()[MIN_LAYERS:] + [self._final_lengths()]:
            for t in lengths:
                for c in self.widths:
                    keep(ops.reshape((t, 1, c), (t * c,)))
                    for op in self.head(t * c):
                        keep(op)
        return list(found.values())

    def _final_lengths(self) -> set[int]:
        last = self.lengths_by_depth()[-1]
        return {math.ceil(t / s) for t in last for s in self.strides}


def build_architecture(space: TimeNasSpace, choices: dict) -> Architecture:
    """{"type": "mlp"|"cnn"|"mix", "layers": [{"units"} | {"filters", "kernel", "stride"}...]}
    ("mix": each layer also has its "type")."""
    b = Builder(space.input_shape)
    if choices["type"] == "mlp":
        features = space.window * space.channels
        b.add(ops.reshape(space.input_shape, (features,)))
        for layer in choices["layers"]:
            b.add(ops.dense(features, layer["units"]))
            features = layer["units"]
    else:
        shape = space.input_shape
        for layer in choices["layers"]:
            if choices["type"] == "mix" and layer["type"] == "mlp":
                # the seed's Dense on a (T, C) sequence acts on each time step: the
                # same arithmetic as a 1x1 convolution, which is how it runs here
                op = ops.conv(shape, layer["units"], (1, 1), (1, 1))
            else:
                op = ops.conv(shape, layer["filters"], (layer["kernel"], 1), (layer["stride"], 1))
            b.add(op)
            shape = op.output_shape
        features = shape[0] * shape[-1]
        b.add(ops.reshape(shape, (features,)))
    for op in space.head(features):
        b.add(op)
    return b.build("timenas", choices)


NETWORK_TYPES = ("mlp", "cnn")


def network_types(network_type) -> tuple[str, ...] | None:
    """The seed's network_type: 'ALL' (None here: Table 1's probabilities) or a
    list of types such as ['CNN'] (drawn uniformly, as the seed does)."""
    if isinstance(network_type, str):
        if network_type.upper() == "ALL":
            return None
        network_type = [network_type]
    try:
        types = tuple(str(t).lower() for t in network_type)
    except TypeError:
        raise SpaceError(f"network_type must be 'ALL' or a list such as ['MLP', 'CNN'], "
                         f"not {network_type!r}") from None
    unknown = [t for t in types if t not in NETWORK_TYPES]
    if unknown or not types:
        raise SpaceError(f"network_type {network_type!r}: the types are 'MLP' and 'CNN' "
                         "(the seed's others do not run on TFLite Micro)")
    return types


def _layer(space: TimeNasSpace, rng, kind: str) -> dict:
    if kind == "mlp":
        return {"units": int(rng.choice(space.widths))}
    return {"filters": int(rng.choice(space.widths)), "kernel": int(rng.choice(space.kernels)),
            "stride": int(rng.choice(space.strides))}


def sample_choices(space: TimeNasSpace, rng, task: str = "classification", types=None,
                   allow_mix: bool = False) -> dict:
    """One draw as the seed's sampler makes it: 2..6 layers; the type by Table 1
    (or uniformly among `types`), once per network or, with allow_mix, per layer;
    uniform widths, kernels and strides."""
    def draw_type() -> str:
        if types is None:
            return "mlp" if rng.uniform() < MLP_PROBABILITY[task] else "cnn"
        return str(types[int(rng.integers(len(types)))])

    depth = int(rng.integers(MIN_LAYERS, space.max_layers + 1))
    if allow_mix:
        # with allow_mix the seed never flattens before an MLP layer: Dense per time step
        kinds = [draw_type() for _ in range(depth)]
        return {"type": "mix", "layers": [{"type": k, **_layer(space, rng, k)} for k in kinds]}
    kind = draw_type()
    return {"type": kind, "layers": [_layer(space, rng, kind) for _ in range(depth)]}


def sample_architecture(space: TimeNasSpace, rng, task: str = "classification") -> Architecture:
    return build_architecture(space, sample_choices(space, rng, task))
