"""The same training on every machine: TensorFlow's ops made deterministic and
run on one thread, so a search or a retraining from the same seed and data gives
the same network and the same figures run after run (another CPU or TensorFlow
build may still round differently: the README gives the demo on two machines).

Why one thread: Eigen splits a reduction (a loss, a gradient over a batch) over
the threads of TensorFlow's pool, and the split sets the order of the float
additions; a machine with another core count would add in another order. The
networks here are small, so training on one thread costs little (the demo:
see README). oneDNN's kernels are off already (tinyhil/__init__.py).
"""
from __future__ import annotations

_one_thread: bool | None = None  # None: not tried yet


def deterministic_tensorflow() -> bool:
    """Call before TensorFlow runs its first op (the thread pools are made
    then), as the commands do. False if TensorFlow ran ops already in this
    process (a library caller, a test): its ops are deterministic from now on,
    its thread pools stay as they are."""
    global _one_thread
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    if _one_thread is None:
        try:
            tf.config.threading.set_inter_op_parallelism_threads(1)
            tf.config.threading.set_intra_op_parallelism_threads(1)
            _one_thread = True
        except RuntimeError:  # "cannot be modified after initialization"
            _one_thread = False
    return _one_thread
