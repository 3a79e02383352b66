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


class Supernet(tf.keras.Model):
    def __init__(self, space: MicroNasSpace, hardware: HardwareModel | None, dropout: float = 0.3):
        super().__init__()
        self.space = space
        self.hw = hardware
        layers = tf.keras.layers
        self.tr_masks = tf.constant(filter_masks(space.tr_options, space.tr_fmax))
        self.sf_masks = tf.constant(filter_masks(space.sf_options, space.sf_fmax))
        self.dropout = layers.Dropout(dropout)  # between cells (paper, 5)
        self.cells = [c for c in space.cells if isinstance(c, (TimeReduceCell, SensorFusionCell))]
        self.convs = {}
        self.alphas = {}
        for cell in self.cells:
            if isinstance(cell, TimeReduceCell):
                for conv in cell.convs:
                    self.convs[conv.name] = layers.Conv2D(space.tr_fmax, conv.kernel, conv.strides,
                                                          "same", name=conv.name.replace(".", "_"))
                self._alpha(f"tr{cell.index}.kernel", len(cell.convs))
                self._alpha(f"tr{cell.index}.filters", len(space.tr_options))
            else:
                for conv in (cell.bottleneck, *cell.branches, cell.residual):
                    self.convs[conv.name] = layers.Conv2D(space.sf_fmax, conv.kernel, conv.strides,
                                                          "same", name=conv.name.replace(".", "_"))
                self._alpha(f"sf{cell.index}.filters", len(space.sf_options))
                for k in space.sf_kernels:
                    self._alpha(f"sf{cell.index}.branch{k}", 2)
                self._alpha(f"sf{cell.index}.residual", 2)
                if cell.identity:
                    self._alpha(f"sf{cell.index}.identity", 2)
        head = space.cells[-1].conv
        self.head = layers.Conv2D(space.classes, 1, name="out_conv")  # logits: no ReLU
        self.head_conv = head

    def _alpha(self, name: str, size: int) -> None:
        self.alphas[name] = tf.Variable(tf.zeros(size), trainable=True, name=name.replace(".", "_"))

    @property
    def alpha_variables(self) -> list[tf.Variable]:
        return list(self.alphas.values())

    @property
    def weight_variables(self) -> list[tf.Variable]:
        alpha_ids = {id(v) for v in self.alpha_variables}
        return [v for v in self.trainable_variables if id(v) not in alpha_ids]

    def sample(self, tau: float, hard: bool = False) -> dict[str, tf.Tensor]:
        """Gumbel-softmax weights per decision group (one-hot argmax if hard)."""
        out = {}
        for name, alpha in self.alphas.items():
            if hard:
                out[name] = tf.one_hot(tf.argmax(alpha), alpha.shape[0])
            else:
                u = tf.random.uniform(alpha.shape, 1e-9, 1.0)
                out[name] = tf.nn.softmax((alpha - tf.math.log(-tf.math.log(u))) / tau)
        return out

    # ---- forward --------------------------------------------------------
    def call(self, x, weights, training=False):
        for cell in self.cells:
            if isinstance(cell, TimeReduceCell):
                mask = tf.tensordot(weights[f"tr{cell.index}.filters"], self.tr_masks, 1)
                choice = weights[f"tr{cell.index}.kernel"]
                x = tf.add_n([choice[i] * tf.nn.relu(self.convs[conv.name](x)) * mask
                              for i, conv in enumerate(cell.convs)])
            else:
                x = self._sensor_fusion(cell, x, weights)
            x = self.dropout(x, training=training)
        logits = tf.reduce_mean(self.head(x), axis=[1, 2])
        return logits

    def _sensor_fusion(self, cell: SensorFusionCell, x, w):
        i = cell.index
        mask = tf.tensordot(w[f"sf{i}.filters"], self.sf_masks, 1)
        b = tf.nn.relu(self.convs[cell.bottleneck.name](x)) * mask
        ons = [w[f"sf{i}.branch{k}"][ON] for k in self.space.sf_kernels]
        main = tf.add_n([on * tf.nn.relu(self.convs[conv.name](b)) * mask
                         for on, conv in zip(ons, cell.branches)])
        none_on = tf.reduce_prod(tf.stack([1 - on for on in ons]))
        main = main + none_on * b  # no branch chosen: the bottleneck's output goes on
        main = main + w[f"sf{i}.residual"][ON] * tf.nn.relu(self.convs[cell.residual.name](x)) * mask
        if cell.identity and x.shape[-1] == main.shape[-1]:
            main = main + w[f"sf{i}.identity"][ON] * x
        return main

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
            af = w[f"sf{i}.filters"]
            lat, mem, st = conv_cost(cell.bottleneck.name, alpha_x, af)
            cycles.append(lat), memories.append(mem), state.append(st), ops.append(tf.constant(1.0))
            ons = [w[f"sf{i}.branch{k}"][ON] for k in self.space.sf_kernels]
            res_on = w[f"sf{i}.residual"][ON]
            id_on = w[f"sf{i}.identity"][ON] if cell.identity else tf.constant(0.0)
            # the cell's input stays alive while the branches run if a skip path needs it
            keep_input = 1 - (1 - res_on) * (1 - id_on)
            input_bytes = tf.tensordot(alpha_x, cell_input_bytes(cell.bottleneck).astype(np.float32), 1)
            for on, conv in zip(ons, cell.branches):
                lat, mem, st = conv_cost(conv.name, af, af)
                cycles.append(on * lat), memories.append(on * (mem + keep_input * input_bytes))
                state.append(on * st), ops.append(on)
            lat, mem, st = conv_cost(cell.residual.name, alpha_x, af)
            cycles.append(res_on * lat), memories.append(res_on * mem), state.append(res_on * st)
            ops.append(res_on)
            # adds: E[max(0, branches - 1)] + residual + identity
            n_on = tf.add_n(ons)
            none_on = tf.reduce_prod(tf.stack([1 - on for on in ons]))
            adds = n_on - 1 + none_on + res_on + id_on
            a = hw.add[cell.add.name]
            cycles.append(adds * tf.tensordot(af, a.latency.astype(np.float32), 1))
            memories.append(tf.tensordot(af, a.memory.astype(np.float32), 1) * tf.minimum(adds, 1.0))
            state.append(adds * tf.tensordot(af, a.state.astype(np.float32), 1))
            ops.append(adds)
            alpha_x = af
        head = hw.conv[self.head_conv.name]
        cycles.append(tf.tensordot(alpha_x, head.latency[0].astype(np.float32), 1))
        memories.append(tf.tensordot(alpha_x, head.memory[0].astype(np.float32), 1))
        state.append(tf.tensordot(alpha_x, head.state[0].astype(np.float32), 1))
        n_ops = tf.add_n(ops) + 1 + 3
        total_cycles = tf.add_n(cycles) + hw.tail_cycles + hw.invoke + n_ops * hw.dispatch
        memory = (tf.reduce_max(tf.stack(memories + [tf.constant(hw.tail_memory, f32)]))
                  + hw.fixed + tf.add_n(state) + hw.tail_state)
        return hw.cycles_to_ms(total_cycles), memory
