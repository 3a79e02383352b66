"""Keras model -> full-integer int8 .tflite, the only place that calls the converter."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tinyhil.quiet import converter_output


def to_int8_tflite(model, representative: Iterable, io: str = "int8") -> bytes:
    """Converts with full-integer quantization: int8 weights, activations, input and output
    (io="float32": float input and output, quantized and dequantized in the model).

    `representative` yields single samples (no batch axis) used to calibrate
    the activation ranges, as TFLite's post-training quantization needs; for
    a model with several inputs each sample is a tuple, one array per input.
    """
    import tensorflow as tf

    samples = [[np.asarray(x, dtype=np.float32) for x in (s if isinstance(s, (list, tuple)) else (s,))]
               for s in representative]
    if not samples:
        raise ValueError("the representative dataset is empty: int8 calibration needs samples")

    def dataset():
        for sample in samples:
            yield [x[np.newaxis, ...] for x in sample]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io not in ("int8", "float32"):
        raise ValueError(f"io must be int8 or float32, not {io!r}")
    converter.inference_input_type = converter.inference_output_type = tf.int8 if io == "int8" else tf.float32
    # Recent converters quantize Dense weights per channel; the TFLM tree we
    # build (2023) runs FULLY_CONNECTED per tensor only and would silently
    # compute something else. Per-tensor Dense is what that TFLM supports.
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    with converter_output():  # its printouts are TensorFlow's noise (--verbose shows them)
        return converter.convert()
