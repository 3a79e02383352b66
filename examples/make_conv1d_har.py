"""Makes examples/conv1d_har.tflite: a small 1-D CNN for human-activity
recognition on 128x9 windows (UCI-HAR's shape: 128 samples of 9 IMU channels),
trained briefly on synthetic six-class signals and converted to full-integer
int8 with a representative dataset.

    python examples/make_conv1d_har.py [OUT.tflite]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from tinyhil.models.convert import to_int8_tflite

WINDOW, CHANNELS, CLASSES = 128, 9, 6


def synthetic_har(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each class is a different mix of frequencies over the channels, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    t = np.arange(WINDOW)[None, :, None]
    freq = (1 + labels)[:, None, None] * (1 + np.arange(CHANNELS))[None, None, :] / 64.0
    phase = rng.uniform(0, 2 * np.pi, (n, 1, CHANNELS))
    x = np.sin(2 * np.pi * freq * t + phase) + 0.3 * rng.standard_normal((n, WINDOW, CHANNELS))
    return x.astype(np.float32), labels


def build_model():
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential([
        layers.Input((WINDOW, CHANNELS)),
        layers.Conv1D(16, 5, activation="relu"),
        layers.MaxPooling1D(2),
        layers.Conv1D(32, 3, activation="relu"),
        # Average over the whole remaining time axis: AVERAGE_POOL_2D has a
        # CMSIS-NN kernel, where GlobalAveragePooling1D becomes TFLM's slow
        # reference MEAN (which also rounds differently from TFLite 2.21's).
        layers.AveragePooling1D(60),
        layers.Flatten(),
        layers.Dense(CLASSES),
        layers.Softmax(),
    ])


def main(out: Path) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    x, y = synthetic_har(1200)
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    flatbuffer = to_int8_tflite(model, x[:100])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(flatbuffer)
    print(f"wrote {out} ({len(flatbuffer)} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("conv1d_har.tflite"))
