"""Training made deterministic (tinyhil/reproducible.py): the same seed gives
the same weights bit for bit, on one thread; a call after TensorFlow ran
says so."""
import subprocess
import sys

SCRIPT = """
import numpy as np
import tensorflow as tf
from tinyhil.reproducible import deterministic_tensorflow
deterministic_tensorflow()
assert tf.config.threading.get_intra_op_parallelism_threads() == 1
assert tf.config.threading.get_inter_op_parallelism_threads() == 1

def train():
    tf.keras.utils.set_random_seed(3)
    x = np.random.default_rng(0).standard_normal((256, 29, 12)).astype("float32")
    y = (x.sum(axis=(1, 2)) > 0).astype("int64")
    model = tf.keras.Sequential([tf.keras.layers.Input((29, 12)), tf.keras.layers.Conv1D(8, 3, activation="relu"),
                                 tf.keras.layers.GlobalAveragePooling1D(), tf.keras.layers.Dense(2)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    return b"".join(w.tobytes() for w in model.get_weights())

print("same" if train() == train() else "different")
"""

LATE = """
import tensorflow as tf
tf.constant(1.0) + 1.0  # the thread pools are made
from tinyhil.reproducible import deterministic_tensorflow
from tensorflow.python.framework import config
print(deterministic_tensorflow(), config.is_op_determinism_enabled())
"""


def test_the_same_seed_trains_the_same_weights_on_one_thread():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "same"


def test_a_call_after_tensorflow_ran_says_so_and_still_makes_ops_deterministic():
    out = subprocess.run([sys.executable, "-c", LATE], capture_output=True, text=True, timeout=600)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]
