"""A .tflite file, checked for what the firmware can run, and its host reference.

The host reference is the TFLite interpreter with its *reference* kernels
(OpResolverType.BUILTIN_REF): TFLM's CMSIS-NN kernels are bit-exact with
those, whereas the default optimized (XNNPACK) kernels may round differently.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyhil.errors import InvalidModel

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TFLITE_IDENTIFIER = b"TFL3"
INTEGER_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "bool"}
MODEL_DTYPES = {"int8", "int32"}  # int8 activations and weights, int32 biases and shapes
INT8_RECIPE = ("int8 activations and weights, int32 biases: convert with a representative dataset "
               "and int8 inference types, see tinyhil.models.convert.to_int8_tflite")


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
        """A model from a file the user gave: checked in a child process
        first, because some malformed models abort the interpreter (C++
        CHECK failures) and would take tinyhil down with them."""
        path = Path(path)
        if not path.is_file():
            raise InvalidModel(f"{path}: no such file")
        flatbuffer = path.read_bytes()
        _prepare_in_child(flatbuffer, path.stem)
        return cls.from_bytes(flatbuffer, name=path.stem)

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
                    "see tinyhil.models.convert.to_int8_tflite)"
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
        # Refused here, not after a build and a boot: the firmware and the output check
        # take int8 activations (int32 only for biases and shapes), not 16x8 or uint8 models.
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            for tensor in tensors:
                if tensor.dtype != "int8":
                    raise InvalidModel(f"{self.name}: {kind} tensor {tensor.name!r} is {tensor.dtype}; "
                                       f"tinyhil measures int8 models ({INT8_RECIPE})")
        for op in interpreter._get_ops_details():
            for index in [*op["inputs"], *op["outputs"]]:
                if index < 0:
                    continue
                detail = interpreter._get_tensor_details(index, 0)
                dtype = np.dtype(detail["dtype"]).name
                if dtype not in MODEL_DTYPES:
                    raise InvalidModel(f"{self.name}: op {op['op_name']} has the {dtype} tensor "
                                       f"{detail['name']!r}; tinyhil measures int8 models ({INT8_RECIPE})")

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

    def quantize(self, x: np.ndarray) -> bytes:
        """Float values of the (only) input -> the int8 bytes the model takes, by
        its input quantization; any shape of as many values as the input has."""
        if len(self.inputs) != 1:
            raise InvalidModel(f"{self.name}: {len(self.inputs)} inputs; one float window quantizes one")
        spec = self.inputs[0]
        x = np.asarray(x, dtype=np.float64)
        if x.size != int(np.prod(spec.shape)):
            raise InvalidModel(f"{self.name}: {x.size} values for an input of shape {spec.shape}")
        if spec.scale <= 0:
            raise InvalidModel(f"{self.name}: input {spec.name!r} has no quantization scale")
        info = np.iinfo(spec.dtype)
        q = np.clip(np.round(x / spec.scale) + spec.zero_point, info.min, info.max)
        return q.astype(spec.dtype).tobytes()

    def reference_output(self, input_bytes: bytes) -> bytes:
        """The host interpreter's outputs (concatenated) for the same input bytes."""
        interpreter = self._invoked(input_bytes)
        return b"".join(
            np.ascontiguousarray(interpreter.get_tensor(d["index"])).tobytes()
            for d in interpreter.get_output_details()
        )

    def reference_tensors(self, input_bytes: bytes) -> dict[int, bytes]:
        """Every tensor the host interpreter computed for these input bytes
        (graph inputs and each op's outputs; it keeps them all), by tensor index."""
        interpreter = self._invoked(input_bytes, preserve_all_tensors=True)
        graph = model_graph(self)
        wanted = {*graph.inputs, *(t for op in graph.ops for t in op.outputs)}
        return {t: np.ascontiguousarray(interpreter.get_tensor(t)).tobytes() for t in sorted(wanted)}

    def _invoked(self, input_bytes: bytes, preserve_all_tensors: bool = False):
        if len(input_bytes) != self.input_bytes:
            raise ValueError(f"input of {len(input_bytes)} bytes, model wants {self.input_bytes}")
        interpreter = _interpreter(self.flatbuffer, preserve_all_tensors)
        interpreter.allocate_tensors()
        offset = 0
        for detail, spec in zip(interpreter.get_input_details(), self.inputs):
            data = np.frombuffer(input_bytes, dtype=spec.dtype, count=int(np.prod(spec.shape)),
                                 offset=offset).reshape(spec.shape)
            interpreter.set_tensor(detail["index"], data)
            offset += spec.nbytes
        interpreter.invoke()
        return interpreter


@dataclass(frozen=True)
class GraphOp:
    name: str  # builtin op name
    inputs: tuple[int, ...]  # tensor indices
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Graph:
    """The tensors and ops of a model as the runtime sees them: what TFLM's
    memory planner plans (activation tensors in tensor-index order)."""

    ops: tuple[GraphOp, ...]
    tensor_bytes: dict[int, int]
    tensor_shapes: dict[int, tuple[int, ...]]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    tensor_dtypes: dict[int, str] = field(default_factory=dict)  # numpy names: "int8", "int32"

    def activations(self) -> list[int]:
        """Tensors the arena holds: graph inputs and op outputs (not constants)."""
        produced = {t for op in self.ops for t in op.outputs}
        return sorted(produced | set(self.inputs))


def model_graph(model: TfliteModel) -> Graph:
    interpreter = _interpreter(model.flatbuffer)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = tuple(GraphOp(o["op_name"], tuple(i for i in o["inputs"] if i >= 0), tuple(o["outputs"]))
                for o in interpreter._get_ops_details())
    return Graph(
        ops=ops,
        tensor_bytes={i: int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize for i, d in details.items()},
        tensor_shapes={i: tuple(int(x) for x in d["shape"]) for i, d in details.items()},
        inputs=tuple(d["index"] for d in interpreter.get_input_details()),
        outputs=tuple(d["index"] for d in interpreter.get_output_details()),
        tensor_dtypes={i: np.dtype(d["dtype"]).name for i, d in details.items()},
    )


def _prepare(flatbuffer: bytes) -> None:
    import faulthandler

    faulthandler.disable()  # the parent explains a crash; no dump from here
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    try:
        _interpreter(flatbuffer).allocate_tensors()
    except Exception:  # reported by the parent, which tries again in-process
        pass


def _prepare_in_child(flatbuffer: bytes, name: str) -> None:
    import multiprocessing

    # forkserver, not fork: a child forked from a process that has loaded gRPC
    # (labgrid) or TensorFlow's threads can crash in their fork handlers, which
    # would read as a crash of the interpreter on this model.
    child = multiprocessing.get_context("forkserver").Process(target=_prepare, args=(flatbuffer,))
    child.start()
    child.join()
    if child.exitcode and child.exitcode < 0:
        raise InvalidModel(
            f"{name}: the TFLite interpreter crashed preparing it (signal {-child.exitcode}): "
            "a malformed model or degenerate quantization (e.g. a softmax input scale of 0)")


def _spec(detail: dict) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        name=detail["name"],
        shape=tuple(int(s) for s in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero_point),
    )


def _interpreter(flatbuffer: bytes, preserve_all_tensors: bool = False):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # older stacks: the interpreter inside TensorFlow
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    return Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=preserve_all_tensors,
    )
