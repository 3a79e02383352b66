"""The MicroNAS super-network in TensorFlow: dynamic convolutions with
weight sharing (one convolution of f_max filters, masked to g..f_max by a
decision group), Gumbel-softmax decision groups, and its expected latency
and memory through Eq. 2, all differentiable in the architecture weights.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tinyhil.lut.interpolate import expected_tf
from tinyhil.nas.micronas.hardware import HardwareModel, cell_input_bytes
from tinyhil.spaces.micronas import MicroNasSpace, SensorFusionCell, TimeReduceCell

OFF, ON = 0, 1


def filter_masks(options: tuple[int, ...], f_max: int) -> np.ndarray:
    """m_i of the paper: row i keeps the first options[i] filters."""
    return np.array([[1.0 if c < n else 0.0 for c in range(f_max)] for n in options], np.float32)


def residual_runs(residual_on, branch_ons):
    """How much the residual runs: when chosen, and also when no branch is (a
    cell is never empty: build_architecture builds it as the residual alone,
    where the authors' super-network outputs zeros and their export fails)."""
    none_on = tf.reduce_prod(tf.stack([1 - on for on in branch_ons]))
    return 1 - (1 - residual_on) * (1 - none_on)


class Supernet(tf.keras.Model):
    """Placement of BatchNorm and dropout follows the authors' code: every
    convolution is conv -> ReLU -> BatchNorm (search only; the exported network
    has none), and channel dropout (Dropout2d, 0.3) follows every cell."""

    def __init__(self, space: MicroNasSpace, hardware: HardwareModel | None, dropout: float = 0.3):
        super().__init__()
        self.space = space
        self.hw = hardware
        layers = tf.keras.layers
        self.tr_masks = tf.constant(filter_masks(space.tr_options, space.tr_fmax))
        self.sf_masks = tf.constant(filter_masks(space.sf_options, space.sf_fmax))
        # SpatialDropout2D drops whole feature maps, as torch's Dropout2d does
        self.dropout = layers.SpatialDropout2D(dropout)
        self.cells = [c for c in space.cells if isinstance(c, (TimeReduceCell, SensorFusionCell))]
        self.convs = {}
        self.norms = {}
        for cell in self.cells:
            convs = cell.convs if isinstance(cell, TimeReduceCell) else (cell.bottleneck, *cell.branches,
                                                                         cell.residual)
            width = space.tr_fmax if isinstance(cell, TimeReduceCell) else space.sf_fmax
            for conv in convs:
                name = conv.name.replace(".", "_")
                self.convs[conv.name] = layers.Conv2D(width, conv.kernel, conv.strides, "same", name=name)
                # momentum 0.9 is PyTorch's default (0.1 there), the authors' BatchNorm: with
                # Keras' 0.99 the moving statistics are still mostly their initial 0 and 1
                # after a short warm-up, and the argmax network is scored with them
                self.norms[conv.name] = layers.BatchNormalization(momentum=0.9, name=name + "_bn")
        self.alphas = {name: tf.Variable(tf.zeros(size), trainable=True, name=name.replace(".", "_"))
                       for name, size in space.decision_groups().items()}
        self.head = layers.Conv2D(space.classes, 1, name="out_conv")  # logits: no ReLU
        self.head_conv = space.cells[-1].conv

    @property
    def alpha_variables(self) -> list[tf.Variable]:
        return list(self.alphas.values())

    @property
    def weight_variables(self) -> list[tf.Variable]:
        alpha_ids = {id(v) for v in self.alpha_variables}
        return [v for v in self.trainable_variables if id(v) not in alpha_ids]

    def sample(self, tau: float, hard: bool = False, gumbel: bool = True) -> dict[str, tf.Tensor]:
        """Gumbel-softmax weights per decision group (one-hot argmax if hard;
        plain softmax(alpha / tau) if not gumbel: the DARTS-Softmax baseline)."""
        out = {}
        for name, alpha in self.alphas.items():
            if hard:
                out[name] = tf.one_hot(tf.argmax(alpha), alpha.shape[0])
            elif gumbel:
                u = tf.random.uniform(alpha.shape, 1e-9, 1.0)
                out[name] = tf.nn.softmax((alpha - tf.math.log(-tf.math.log(u))) / tau)
            else:
                out[name] = tf.nn.softmax(alpha / tau)
        return out

    # ---- forward --------------------------------------------------------
    def _conv(self, conv, x, mask, training):
        # The authors mask before ReLU and BatchNorm, so BatchNorm's shift lets
        # masked filters through; masking last keeps them zero, as the width says.
        return self.norms[conv.name](tf.nn.relu(self.convs[conv.name](x)), training=training) * mask

    def call(self, x, weights, training=False):
        for cell in self.cells:
            if isinstance(cell, TimeReduceCell):
                mask = tf.tensordot(weights[f"tr{cell.index}.filters"], self.tr_masks, 1)
                choice = weights[f"tr{cell.index}.kernel"]
                x = tf.add_n([choice[i] * self._conv(conv, x, mask, training)
                              for i, conv in enumerate(cell.convs)])
            else:
                x = self._sensor_fusion(cell, x, weights, training)
            x = self.dropout(x, training=training)
        logits = tf.reduce_mean(self.head(x), axis=[1, 2])
        return logits

    def _sensor_fusion(self, cell: SensorFusionCell, x, w, training=False):
        i = cell.index
        bottleneck_mask = tf.tensordot(w[f"sf{i}.bottleneck"], self.sf_masks, 1)
        mask = tf.tensordot(w[f"sf{i}.filters"], self.sf_masks, 1)
        b = self._conv(cell.bottleneck, x, bottleneck_mask, training)
        ons = [w[f"sf{i}.branch{k}"][ON] for k in self.space.sf_kernels]
        out = tf.add_n([on * self._conv(conv, b, mask, training) for on, conv in zip(ons, cell.branches)])
        out = out + residual_runs(w[f"sf{i}.residual"][ON], ons) * self._conv(cell.residual, x, mask, training)
        if cell.skippable:  # MakeChoice([Id, cell])
            skip = w[f"sf{i}.skip"][ON]
            out = skip * x + (1 - skip) * out
        return out

    # ---- expected hardware use (Eq. 2) ------------------------------------
    def expected_hardware(self, w) -> tuple[tf.Tensor, tf.Tensor]:
        """(latency in ms, memory in bytes) of the architecture the weights describe."""
        if self.hw is None:
            raise ValueError("this super-network was built without a hardware model (LUT)")
        hw, f32 = self.hw, tf.float32
        cycles, memories, state, ops = [], [], [], []
        alpha_x = tf.ones(1)  # the raw window has one channel

        def conv_cost(name, ax, ay):
            c = hw.conv[name]
            return (expected_tf(c.latency.astype(np.float32), ax, ay),
                    expected_tf(c.memory.astype(np.float32), ax, ay),
                    expected_tf(c.state.astype(np.float32), ax, ay))

        for cell in self.cells:
            if isinstance(cell, TimeReduceCell):
                ay = w[f"tr{cell.index}.filters"]
                choice = w[f"tr{cell.index}.kernel"]
                for i, conv in enumerate(cell.convs):
                    k = choice[i]
                    lat, mem, st = conv_cost(conv.name, alpha_x, ay)
                    cycles.append(k * lat)
                    memories.append(k * mem)
                    state.append(k * st)
                ops.append(tf.constant(1.0))
                alpha_x = ay
                continue
            i = cell.index
            ab, af = w[f"sf{i}.bottleneck"], w[f"sf{i}.filters"]
            run = 1 - w[f"sf{i}.skip"][ON] if cell.skippable else tf.constant(1.0)  # the cell is not skipped
            ons = [w[f"sf{i}.branch{k}"][ON] for k in self.space.sf_kernels]
            none_on = tf.reduce_prod(tf.stack([1 - on for on in ons]))
            res_on = residual_runs(w[f"sf{i}.residual"][ON], ons)
            block = run * (1 - none_on)  # the bottleneck runs only for a branch (authors' code)
            lat, mem, st = conv_cost(cell.bottleneck.name, alpha_x, ab)
            cycles.append(block * lat), memories.append(block * mem), state.append(block * st)
            ops.append(block)
            # the cell's input stays alive while the branches run if the residual needs it
            input_bytes = tf.tensordot(alpha_x, cell_input_bytes(cell.bottleneck).astype(np.float32), 1)
            for on, conv in zip(ons, cell.branches):
                lat, mem, st = conv_cost(conv.name, ab, af)
                cycles.append(run * on * lat), state.append(run * on * st), ops.append(run * on)
                memories.append(run * on * (mem + res_on * input_bytes))
            lat, mem, st = conv_cost(cell.residual.name, alpha_x, af)
            cycles.append(run * res_on * lat), memories.append(run * res_on * mem)
            state.append(run * res_on * st), ops.append(run * res_on)
            # adds: one fewer than the branches, one more for the residual next to a branch
            adds = run * (tf.add_n(ons) - 1 + none_on + res_on * (1 - none_on))
            a = hw.add[cell.add.name]
            cycles.append(adds * tf.tensordot(af, a.latency.astype(np.float32), 1))
            memories.append(tf.tensordot(af, a.memory.astype(np.float32), 1) * tf.minimum(adds, 1.0))
            state.append(adds * tf.tensordot(af, a.state.astype(np.float32), 1))
            ops.append(adds)
            alpha_x = (1 - run) * alpha_x + run * af if cell.skippable else af  # a skipped cell keeps the width
        head = hw.conv[self.head_conv.name]
        cycles.append(tf.tensordot(alpha_x, head.latency[0].astype(np.float32), 1))
        memories.append(tf.tensordot(alpha_x, head.memory[0].astype(np.float32), 1))
        state.append(tf.tensordot(alpha_x, head.state[0].astype(np.float32), 1))
        n_ops = tf.add_n(ops) + 1 + 3
        total_cycles = tf.add_n(cycles) + hw.tail_cycles + hw.invoke + n_ops * hw.dispatch
        memory = (tf.reduce_max(tf.stack(memories + [tf.constant(hw.tail_memory, f32)]))
                  + hw.fixed + tf.add_n(state) + hw.tail_state)
        return hw.cycles_to_ms(total_cycles), memory
