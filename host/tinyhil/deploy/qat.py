"""Retraining a found architecture from scratch, quantization-aware
(tensorflow-model-optimization), and converting it to a full-integer int8 .tflite.

tfmot builds on Keras 2 (tf_keras); the rest of tinyhil uses Keras 3. The
architecture is therefore built here with tf_keras explicitly, and importing
tfmot is kept from switching the process's `tf.keras` over.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinyhil.errors import TinyhilError
from tinyhil.models.convert import to_int8_tflite
from tinyhil.models.op_order import in_runtime_order
from tinyhil.models.whole_model import keras_model
from tinyhil.nas.data import Splits
from tinyhil.spaces.arch import Architecture

CALIBRATION_SAMPLES = 100  # the int8 input/output ranges, on top of QAT's own
# QAT goes on learning at the float rate: on BasicMotions (48 training
# windows), fine-tuning at 1e-4 for 10 epochs lost up to 25 points of test
# accuracy over three seeds, at 1e-3 it kept or gained them.
LEARNING_RATE = 1e-3
QAT_RECIPE = "float then QAT, Adam 1e-3"  # part of the cache key of a trained model


@dataclass(frozen=True)
class Scores:
    """Classification: accuracy and macro F1; regression: MAE and RMSE (the other pair None)."""

    accuracy: float | None = None
    f1: float | None = None  # macro F1 over the classes
    mae: float | None = None
    rmse: float | None = None

    @classmethod
    def of(cls, predicted: np.ndarray, labels: np.ndarray, classes: int) -> Scores:
        return cls(float(np.mean(predicted == labels)), macro_f1(predicted, labels, classes))

    @classmethod
    def regression(cls, predicted: np.ndarray, targets: np.ndarray) -> Scores:
        error = np.asarray(predicted, float).ravel() - np.asarray(targets, float).ravel()
        return cls(mae=float(np.mean(np.abs(error))), rmse=float(np.sqrt(np.mean(error ** 2))))

    @property
    def is_regression(self) -> bool:
        return self.mae is not None

    def text(self) -> str:
        if self.is_regression:
            return f"MAE {self.mae:.4g} / RMSE {self.rmse:.4g}"
        return f"{self.accuracy:.3f}/{self.f1:.3f}"


def score(predictions: np.ndarray, data: Splits) -> Scores:
    """The test windows' scores: model outputs (N, classes) or (N, 1) against data.y_test."""
    if data.task == "regression":
        return Scores.regression(predictions[:, 0], data.y_test)
    return Scores.of(predictions.argmax(-1), data.y_test, data.classes)


def macro_f1(predicted: np.ndarray, labels: np.ndarray, classes: int) -> float:
    """Mean over classes of 2TP / (2TP + FP + FN); a class absent from both counts as 1."""
    scores = []
    for c in range(classes):
        tp = np.sum((predicted == c) & (labels == c))
        wrong = np.sum((predicted == c) != (labels == c))
        scores.append(1.0 if tp + wrong == 0 else 2 * tp / (2 * tp + wrong))
    return float(np.mean(scores))


@dataclass(frozen=True)
class TrainedModel:
    flatbuffer: bytes  # full-integer int8 .tflite of the QAT model
    float_scores: Scores  # test set, float model after `epochs`
    qat_scores: Scores  # test set, QAT model (fake-quantized, float arithmetic)
    epochs: int
    qat_epochs: int
    seconds: float


def quantization_toolkit():
    """(tf_keras, tfmot), imported without changing what `tf.keras` means."""
    saved = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tensorflow as tf

        tf.keras.layers  # noqa: B018 -- settle tf.keras (Keras 3) before tfmot sets its variable
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except ImportError as error:
        raise TinyhilError(f"quantization-aware training needs {error.name}: run `make setup`") from error
    finally:
        if saved is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = saved
    return tf_keras, tfmot


def windows(x: np.ndarray, arch: Architecture) -> np.ndarray:
    """Data windows (N, T, S) in the architecture's input layout (e.g. T x S x 1)."""
    if int(np.prod(x.shape[1:])) != int(np.prod(arch.input_shape)):
        raise TinyhilError(f"data windows {x.shape[1:]} do not fit the architecture's input "
                           f"{arch.input_shape}")
    return x.reshape(-1, *arch.input_shape).astype(np.float32)


def quantization_aware(model, keras, tfmot):
    """tfmot's default 8-bit fake quantization, except that average pooling
    learns no output range of its own: TFLite's int8 AVERAGE_POOL_2D keeps
    its input's scale, so the converter turned such a range into an extra
    QUANTIZE op that no LUT row measured and no estimate counted (on the
    MicroNAS networks: 75-92 B of arena on qemu-m4, for its tensor, node and
    state, and its cycles)."""
    api = tfmot.quantization.keras

    class KeepInputScale(api.QuantizeConfig):
        """No weights, activations or output to quantize: the output keeps the input's scale."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    def annotate(layer):
        keep = isinstance(layer, keras.layers.AveragePooling2D)
        return api.quantize_annotate_layer(layer, KeepInputScale() if keep else None)

    # the layers themselves, annotated, so the trained weights go along
    annotated = keras.models.clone_model(model, clone_function=annotate)
    with api.quantize_scope({"KeepInputScale": KeepInputScale}):
        return api.quantize_apply(annotated)


def train_int8(arch: Architecture, data: Splits, epochs: int, qat_epochs: int, batch_size: int = 32,
               seed: int = 0, on_epoch: Callable[[str, int], None] | None = None) -> TrainedModel:
    """Float training from scratch, then quantization-aware fine-tuning, then int8.
    `on_epoch(phase, epoch)` reports progress ("float" or "qat")."""
    started = time.monotonic()
    keras, tfmot = quantization_toolkit()
    keras.utils.set_random_seed(seed)
    x_train, x_val, x_test = (windows(x, arch) for x in (data.x_train, data.x_val, data.x_test))
    callbacks = lambda phase: [keras.callbacks.LambdaCallback(  # noqa: E731
        on_epoch_end=lambda epoch, _logs: on_epoch and on_epoch(phase, epoch + 1))]

    loss, metrics = (("mse", ["mae"]) if data.task == "regression"
                     else ("sparse_categorical_crossentropy", ["accuracy"]))
    model = keras_model(arch, batch_size=None, keras=keras)
    model.compile(keras.optimizers.Adam(LEARNING_RATE), loss, metrics)
    model.fit(x_train, data.y_train, batch_size, epochs, verbose=0, validation_data=(x_val, data.y_val),
              callbacks=callbacks("float"))
    float_scores = score(model.predict(x_test, verbose=0), data)

    qat = quantization_aware(model, keras, tfmot)
    qat.compile(keras.optimizers.Adam(LEARNING_RATE), loss, metrics)
    if qat_epochs:
        qat.fit(x_train, data.y_train, batch_size, qat_epochs, verbose=0,
                validation_data=(x_val, data.y_val), callbacks=callbacks("qat"))
    qat_scores = score(qat.predict(x_test, verbose=0), data)

    # A batch-1 copy converts with static shapes: a RESHAPE stays one op, as
    # the LUT measured it, instead of SHAPE/STRIDED_SLICE/PACK/RESHAPE.
    static = quantization_aware(keras_model(arch, batch_size=1, keras=keras), keras, tfmot)
    static.set_weights(qat.get_weights())
    calibration = x_train[np.random.default_rng(seed).permutation(len(x_train))[:CALIBRATION_SAMPLES]]
    flatbuffer = in_runtime_order(to_int8_tflite(static, list(calibration)), arch)
    return TrainedModel(flatbuffer, float_scores, qat_scores, epochs, qat_epochs,
                        time.monotonic() - started)
