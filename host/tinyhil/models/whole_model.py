"""Architecture -> Keras model -> int8 .tflite (whole networks, for validation
and deployment); cached by architecture id like the single-op models."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from tinyhil.errors import TinyhilError
from tinyhil.models.single_op import REPRESENTATIVE_SAMPLES, _run_jobs, keras_layer
from tinyhil.spaces.arch import MODEL_INPUT, Architecture


def keras_model(arch: Architecture, batch_size: int | None = 1, keras=None,
                sequence_input: bool = False):
    """The network as Keras layers, one per node (untrained weights unless trained later).
    `keras`: the Keras to build with (default Keras 3; tf_keras for QAT).
    `sequence_input`: take (T, C) windows, as the seeds' models do, and reshape
    them to the architecture's (T, 1, C) first."""
    if keras is None:
        import tensorflow as tf

        keras = tf.keras
    if sequence_input:
        t, s, c = arch.input_shape
        inputs = keras.layers.Input((t, s * c), batch_size=batch_size)
        first = keras.layers.Reshape(arch.input_shape)(inputs)
    else:
        inputs = first = keras.layers.Input(arch.input_shape, batch_size=batch_size)
    tensors = []
    for node in arch.nodes:
        sources = [first if i == MODEL_INPUT else tensors[i] for i in node.inputs]
        layer = keras_layer(node.op, keras.layers)
        tensors.append(layer(sources if len(sources) > 1 else sources[0]))
        got = tuple(tensors[-1].shape[1:])
        if got != tuple(node.op.output_shape):
            raise TinyhilError(f"{node.op.key}: Keras gives {got}, expected {node.op.output_shape}")
    return keras.Model(inputs, tensors[-1])


def convert_architecture(arch: Architecture) -> bytes:
    """Random weights (seeded by the architecture), calibrated on random
    inputs: what matters for latency and memory is the graph, not the values."""
    import tensorflow as tf

    from tinyhil.models.convert import to_int8_tflite
    from tinyhil.models.op_order import in_runtime_order

    seed = int(arch.id, 16) % (2**31)
    tf.keras.utils.set_random_seed(seed)
    samples = np.random.default_rng(seed).standard_normal(
        (REPRESENTATIVE_SAMPLES, *arch.input_shape)).astype(np.float32)
    return in_runtime_order(to_int8_tflite(keras_model(arch), list(samples)), arch)


def generate_architecture_models(archs: Iterable[Architecture],
                                 on_done: Callable | None = None) -> dict[str, Path]:
    """arch id -> cached .tflite path, converted in worker processes."""
    # a new cache key: models cached before op_order kept the converter's op order
    jobs = {f"arch-in-runtime-order/{a.id}": (convert_architecture, a) for a in archs}
    return {key.split("/", 1)[1]: path for key, path in _run_jobs(jobs, None, on_done).items()}
