"""A deployed network layer by layer: each op TFLite runs (the architecture's
runtime order), its cell, what the device measured for it beside its LUT row,
its weights, and the arena: which activation tensors and scratch buffers are
alive while it runs and where the planner puts them (TFLM's greedy plan,
replayed as estimate.memory does)."""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from tinyhil.estimate.memory import cmsis_scratch_bytes, greedy_offsets, lifetimes  # noqa: E402
from tinyhil.spaces.arch import MODEL_INPUT, Architecture  # noqa: F401  # noqa: E402
from tinyhil.spaces.micronas import cell_labels  # noqa: E402
from tinyhil.spaces.ops import OpConfig  # noqa: E402


@dataclass(frozen=True)
class Layer:
    position: int  # in the order TFLite runs the ops
    op: OpConfig
    inputs: tuple[int, ...]  # positions of the layers it reads (MODEL_INPUT: the model's input)
    cell: str  # "" where the space has no cells
    device_cycles: float | None  # the device's profile of this op (None: not paired)
    lut_cycles: float | None  # the LUT row's kernel cycles
    live_bytes: int  # activations and scratch alive while it runs (planned, aligned)

    @property
    def error_pct(self) -> float | None:
        if not self.device_cycles or self.lut_cycles is None:
            return None
        return (self.lut_cycles / self.device_cycles - 1) * 100


@dataclass(frozen=True)
class Buffer:
    name: str  # "input", "#3 conv2d", "#3 scratch"
    size: int
    first: int  # positions of the first and last op it is alive for
    last: int
    offset: int  # where the planner puts it


def cells_of(arch: Architecture) -> list[str]:
    """The cell of each node, where the space has cells (MicroNAS), else ''."""
    if arch.space == "micronas" and arch.choices:
        try:
            return cell_labels(arch)
        except (KeyError, TypeError, ValueError):
            pass  # choices that do not build these nodes: draw without cells
    return [""] * len(arch.nodes)


def layers(arch: Architecture, profile=()) -> list[Layer]:
    """`profile`: the deployment's LayerRows (device op, cycles, LUT key and
    cycles), paired with the runtime ops in order by LUT key; ops the
    converter added (no LUT key) are left out."""
    order = arch.runtime_nodes()
    runtime = arch.runtime()
    cells = cells_of(arch)
    paired = [row for row in profile if getattr(row, "lut_key", "")]
    by_position: dict[int, object] = {}
    unused = list(paired)
    for position, op in enumerate(runtime.ops):
        in_order = paired[position] if position < len(paired) and paired[position].lut_key == op.key else None
        row = in_order if in_order in unused else next((r for r in unused if r.lut_key == op.key), None)
        if row is not None:
            unused.remove(row)
            by_position[position] = row
    buffers = arena_buffers(runtime)
    out = []
    for position, (node, original) in enumerate(zip(runtime.nodes, order)):
        row = by_position.get(position)
        live = sum(b.size for b in buffers if b.first <= position <= b.last)
        out.append(Layer(position, node.op, node.inputs, cells[original],
                         None if row is None else float(row.device_cycles),
                         None if row is None or row.lut_cycles is None else float(row.lut_cycles), live))
    return out


def arena_buffers(runtime: Architecture) -> list[Buffer]:
    """The planned buffers of a runtime architecture, named and placed."""
    spans = lifetimes(runtime)
    names = ["input"] + [f"#{i} {n.op.op}" for i, n in enumerate(runtime.nodes)]
    names += [f"#{i} scratch" for i, n in enumerate(runtime.nodes) if cmsis_scratch_bytes(n.op)]
    offsets = greedy_offsets(spans)
    return [Buffer(name, size, first, last, offset)
            for name, (size, first, last), offset in zip(names, spans, offsets)]


def short_name(op: OpConfig) -> str:
    """conv 3x1 /2, add, avg pool 25x3, dense, softmax ..."""
    kind = {"conv2d": "conv", "depthwise_conv2d": "dw conv", "avg_pool2d": "avg pool", "max_pool2d": "max pool",
            "global_avg_pool2d": "global avg pool"}.get(op.op, op.op)
    if op.op in ("conv2d", "depthwise_conv2d", "avg_pool2d", "max_pool2d"):
        kind += f" {op.kernel[0]}x{op.kernel[1]}"
        if op.strides != (1, 1):
            kind += f" /{op.strides[0]}x{op.strides[1]}"
    return kind


def lifetime_figure(runtime: Architecture):
    """The arena over the ops: each buffer a box from its first to its last op,
    at the offset the planner gives it; the plan's size is the top."""
    buffers = arena_buffers(runtime)
    fig, ax = plt.subplots(figsize=(11, 4))
    for b in buffers:
        color = "C1" if "scratch" in b.name else "C7" if b.name == "input" else "C0"
        ax.add_patch(plt.Rectangle((b.first - 0.4, b.offset), b.last - b.first + 0.8, b.size,
                                   facecolor=color, edgecolor="k", lw=0.5, alpha=0.75))
        if b.size > 0.06 * max(x.offset + x.size for x in buffers):
            ax.text(b.first - 0.35, b.offset + b.size / 2, f"{b.name} ({b.size:,} B)", fontsize=7,
                    va="center", ha="left", clip_on=True)
    top = max(b.offset + b.size for b in buffers)
    ax.axhline(top, color="k", ls="--", lw=1)
    ax.text(len(runtime.nodes) - 0.5, top, f"planned activations: {top:,} B", ha="right", va="bottom", fontsize=8)
    ax.set_xlim(-0.6, len(runtime.nodes) - 0.4)
    ax.set_ylim(0, top * 1.12)
    ax.set_xticks(range(len(runtime.nodes)), [f"{i}: {short_name(n.op)}" for i, n in enumerate(runtime.nodes)],
                  rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("arena offset (bytes)")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, alpha=0.75) for c in ("C7", "C0", "C1")]
    ax.legend(handles, ["model input", "activation (op output)", "CMSIS-NN scratch"], fontsize=7,
              loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def layer_figure(rows: list[Layer], counter: str):
    """Cycles per layer, device beside the LUT row, and the weights per layer."""
    fig, (cycles, weights) = plt.subplots(2, 1, figsize=(11, 5.2), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1.3]})
    x = list(range(len(rows)))
    cycles.bar([i - 0.2 for i in x], [r.device_cycles or 0 for r in rows], 0.4, label="device (measured)")
    cycles.bar([i + 0.2 for i in x], [r.lut_cycles or 0 for r in rows], 0.4, label="LUT row (estimate)")
    cycles.set_ylabel(counter)
    cycles.legend(fontsize=8)
    weights.bar(x, [r.op.weights_bytes for r in rows], 0.6, color="C2")
    weights.set_ylabel("weights (B)")
    weights.set_xticks(x, [f"{r.position}: {short_name(r.op)}" for r in rows], rotation=45, ha="right", fontsize=7)
    fig.tight_layout()
    return fig


def share(rows: list[Layer]) -> list[float | None]:
    """Each layer's part of the measured cycles of all paired layers (%)."""
    total = sum(r.device_cycles or 0 for r in rows)
    return [None if r.device_cycles is None or not total else r.device_cycles / total * 100 for r in rows]

