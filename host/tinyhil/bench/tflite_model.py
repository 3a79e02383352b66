"""A .tflite file, checked for what the firmware can run, and its host reference.

The host reference is the TFLite interpreter with its *reference* kernels
(OpResolverType.BUILTIN_REF): TFLM's CMSIS-NN kernels are bit-exact with
those, whereas the default optimized (XNNPACK) kernels may round differently.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidModel

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TFLITE_IDENTIFIER = b"TFL3"
INTEGER_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "bool"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class TfliteModel:
    name: str
    flatbuffer: bytes
    ops: tuple[str, ...]  # builtin op names in execution order, e.g. "CONV_2D"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def load(cls, path: str | Path) -> TfliteModel:
        path = Path(path)
        if not path.is_file():
            raise InvalidModel(f"{path}: no such file")
        return cls.from_bytes(path.read_bytes(), name=path.stem)

    @classmethod
    def from_bytes(cls, flatbuffer: bytes, name: str) -> TfliteModel:
        if len(flatbuffer) < 8 or flatbuffer[4:8] != TFLITE_IDENTIFIER:
            found = flatbuffer[4:8] if len(flatbuffer) >= 8 else f"{len(flatbuffer)} bytes"
            raise InvalidModel(
                f"{name}: not a TFLite model (file identifier {found!r}, expected {TFLITE_IDENTIFIER!r})"
            )
        try:
            interpreter = _interpreter(flatbuffer)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise InvalidModel(f"{name}: the TFLite interpreter rejects it: {error}") from error
        ops = tuple(op["op_name"] for op in interpreter._get_ops_details())
        model = cls(
            name=name,
            flatbuffer=bytes(flatbuffer),
            ops=ops,
            inputs=tuple(_spec(d) for d in interpreter.get_input_details()),
            outputs=tuple(_spec(d) for d in interpreter.get_output_details()),
        )
        model._check_integer(interpreter)
        return model

    def _check_integer(self, interpreter) -> None:
        for tensor in (*self.inputs, *self.outputs):
            if tensor.dtype not in INTEGER_DTYPES:
                raise InvalidModel(
                    f"{self.name}: tensor {tensor.name!r} is {tensor.dtype}; tinyhil measures "
                    "full-integer int8 models (convert with a representative dataset, "
                    "see tinyhil.bench.convert.to_int8_tflite)"
                )
        for op in interpreter._get_ops_details():
            for index in [*op["inputs"], *op["outputs"]]:
                if index < 0:
                    continue
                dtype = np.dtype(interpreter._get_tensor_details(index, 0)["dtype"]).name
                if dtype.startswith("float"):
                    raise InvalidModel(
                        f"{self.name}: op {op['op_name']} computes in {dtype}; tinyhil measures "
                        "full-integer int8 models"
                    )

    @property
    def input_bytes(self) -> int:
        return sum(t.nbytes for t in self.inputs)

    def random_input(self, seed: int = 0) -> bytes:
        """Deterministic input covering the whole integer range of each input."""
        rng = np.random.default_rng(seed)
        parts = []
        for t in self.inputs:
            info = np.iinfo(t.dtype) if t.dtype != "bool" else None
            if info is None:
                parts.append(rng.integers(0, 2, t.shape).astype(bool).tobytes())
            else:
                parts.append(rng.integers(info.min, info.max, t.shape, endpoint=True,
                                          dtype=t.dtype).tobytes())
        return b"".join(parts)

    def reference_output(self, input_bytes: bytes) -> bytes:
        """The host interpreter's outputs (concatenated) for the same input bytes."""
        if len(input_bytes) != self.input_bytes:
            raise ValueError(f"input of {len(input_bytes)} bytes, model wants {self.input_bytes}")
        interpreter = _interpreter(self.flatbuffer)
        interpreter.allocate_tensors()
        offset = 0
        for detail, spec in zip(interpreter.get_input_details(), self.inputs):
            data = np.frombuffer(input_bytes, dtype=spec.dtype, count=int(np.prod(spec.shape)),
                                 offset=offset).reshape(spec.shape)
            interpreter.set_tensor(detail["index"], data)
            offset += spec.nbytes
        interpreter.invoke()
        return b"".join(
            np.ascontiguousarray(interpreter.get_tensor(d["index"])).tobytes()
            for d in interpreter.get_output_details()
        )


def _spec(detail: dict) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        name=detail["name"],
        shape=tuple(int(s) for s in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero_point),
    )


def _interpreter(flatbuffer: bytes):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # older stacks: the interpreter inside TensorFlow
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    return Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
    )
