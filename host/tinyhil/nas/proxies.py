"""Zero-cost proxies: rank untrained networks without training them.

FLOPs: the operation count (the seed sorts by it, highest first).
ZiCo (Li et al., ICLR 2023): for every layer, over several mini-batches,
the gradient's mean absolute value over its standard deviation, summed over
the layer's weights; the score is the sum over layers of its logarithm.
The seed's code uses one batch and conv kernels only; this is the paper's.
"""
from __future__ import annotations

import numpy as np


def zico(model, x: np.ndarray, y: np.ndarray, loss, batch_size: int = 16, batches: int = 4,
         seed: int = 0) -> float:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    kernels = [v for v in model.trainable_variables if len(v.shape) > 1]  # weights, not biases
    grads = [[] for _ in kernels]
    for _ in range(batches):
        index = rng.choice(len(x), size=min(batch_size, len(x)), replace=False)
        with tf.GradientTape() as tape:
            value = loss(y[index], model(x[index], training=True))
        for store, g in zip(grads, tape.gradient(value, kernels)):
            store.append(np.zeros(1) if g is None else g.numpy().ravel())
    return zico_from_gradients([np.stack(g) for g in grads])


def zico_from_gradients(per_layer: list[np.ndarray]) -> float:
    """per_layer[l]: (batches, parameters) gradients of layer l."""
    score = 0.0
    for g in per_layer:
        std = g.std(axis=0)
        mean_abs = np.abs(g).mean(axis=0)
        keep = std > 0
        total = float(np.sum(mean_abs[keep] / std[keep]))
        if total > 0:
            score += np.log(total)
    return score
