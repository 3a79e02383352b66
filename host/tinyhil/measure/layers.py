"""`--compare-layers`: where the board and the host interpreter part ways.

One untimed inference on the board streams every intermediate tensor back op
by op (LAYERS; the board keeps none of them), the host TFLite interpreter
computes the same inference keeping all of its tensors, and each op's outputs
are compared: equal, or how many elements differ and by how many int8 steps.
The first op whose output differs is then run alone (cut out of the model
with its constants, models/op_alone.py) on the board and on the host, on the
very tensors it read inside the whole model: if it still differs, the op's
kernel computes differently from TFLite's reference kernel (named by its
kernel path); if alone it agrees, the difference comes from the context (the
model in the image, the runner, a tensor overwritten), not the arithmetic.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from tinyhil.board_catalog import BoardConfig
from tinyhil.device.boards import Board, open_board
from tinyhil.device.recovery import boot_with_recovery, with_recovery
from tinyhil.errors import TinyhilError
from tinyhil.image.firmware import build_image
from tinyhil.measure.model import measure, model_image
from tinyhil.models.kernel_path import kernel_paths
from tinyhil.models.op_alone import op_alone
from tinyhil.models.tflite_model import Graph, TfliteModel, model_graph
from tinyhil.models.tflite_ops import op_configs
from tinyhil.protocol import LAYERS_HEADER, MAX_PAYLOAD, LayerCapture

INPUT = "input"  # the op name of unit 0: the graph's inputs as the board wrote them


@dataclass(frozen=True)
class LayerDiff:
    """One unit's tensors on the board against the host's: unit 0 is the
    graph's input, unit i + 1 op i's outputs."""

    unit: int
    op: str
    lut_key: str  # "" where no LUT row applies
    kernel: str  # the function the board runs ("" for the input)
    tensors: tuple[int, ...]
    shape: tuple[int, ...]  # of the first tensor
    elements: int
    differing: int
    max_steps: int  # largest |board - host| in steps of the tensor's integer type; -1: sizes differ

    @property
    def index(self) -> int:
        """The op's index in the model (-1: the input)."""
        return self.unit - 1

    @property
    def equal(self) -> bool:
        return self.differing == 0

    @property
    def share(self) -> float:
        return self.differing / self.elements if self.elements else 0.0

    def verdict(self) -> str:
        if self.equal:
            return "equal"
        if self.max_steps < 0:
            return "sizes differ"
        return f"{self.max_steps} step(s), {self.differing}/{self.elements} ({self.share:.1%}) differ"


@dataclass(frozen=True)
class OpAlone:
    """The first diverging op run alone on the tensors it read in the model."""

    index: int
    op: str
    kernel: str
    elements: int
    differing: int  # board alone against host alone
    max_steps: int
    same_as_in_model: bool  # the board alone computed what it computed inside the model

    @property
    def reproduced(self) -> bool:
        return self.differing > 0

    def cause(self) -> str:
        what = f"op {self.index} {self.op}"
        if self.reproduced:
            again = ("the same output as inside the model" if self.same_as_in_model
                     else "a different output again from inside the model")
            return (f"kernel difference: {what} alone, on the tensors it read in the model, differs from "
                    f"the host as well ({self.differing}/{self.elements} elements, up to {self.max_steps} "
                    f"step(s); the board gives {again}): the board's {self.kernel} rounds differently from "
                    "TFLite's reference kernel on the host")
        return (f"only in context: {what} alone, on the tensors it read in the model, gives the host's output "
                f"on the board ({self.kernel}); inside the model it did not, so the difference comes from "
                "the model or the runner (another model in the image, input handling, a tensor overwritten), "
                "not from the kernel's arithmetic")


@dataclass(frozen=True)
class LayerComparison:
    model: str
    board: str
    input: str  # where the input came from
    layers: tuple[LayerDiff, ...]
    arena_used: int
    frames: int  # TENSOR frames received (asked for again or duplicated ones included)
    requests: int  # LAYERS requests it took (over 1: frames were lost and asked for again)
    alone: OpAlone | None = None

    @property
    def first_diverging(self) -> LayerDiff | None:
        return next((d for d in self.layers if not d.equal), None)

    @property
    def equal(self) -> bool:
        return self.first_diverging is None

    def summary(self) -> str:
        first = self.first_diverging
        if first is None:
            return (f"every layer equal: all {len(self.layers) - 1} ops' outputs on {self.board} are the host "
                    f"interpreter's, byte for byte ({self.input})")
        if first.unit == 0:
            return (f"the input differs already: the board's input tensor is not the bytes sent "
                    f"({first.verdict()}): the runner's input handling")
        text = (f"first diverging op: {first.index} {first.op}"
                + (f" ({first.lut_key})" if first.lut_key else "") + f", {first.verdict()}; "
                f"{sum(not d.equal for d in self.layers)} of {len(self.layers) - 1} ops differ ({self.input})")
        if self.alone is not None:
            text += f". Cause: {self.alone.cause()}"
        return text

    def to_dict(self) -> dict:
        data = asdict(self)
        first = self.first_diverging
        data.update(first_diverging=None if first is None else first.index, summary=self.summary())
        return data


def units_of(graph: Graph) -> list[int]:
    """Tensors per unit: the graph's inputs, then each op's outputs."""
    return [len(graph.inputs)] + [len(op.outputs) for op in graph.ops]


def stream_tensors(board: Board, model: TfliteModel, input_bytes: bytes,
                   benchmark: int = 0) -> tuple[dict[int, bytes], LayerCapture, int]:
    """Every tensor of one inference on the booted board, by tensor index; the
    capture and the requests it took. Tensors already brought survive a
    recovery step (the inference is deterministic)."""
    if LAYERS_HEADER.size + len(input_bytes) > MAX_PAYLOAD:
        raise TinyhilError(f"{model.name}: an input of {len(input_bytes):,} bytes does not fit one "
                           f"LAYERS request ({MAX_PAYLOAD - LAYERS_HEADER.size:,} bytes)")
    graph = model_graph(model)
    capture = LayerCapture(units_of(graph))
    requests = 0

    def stream() -> LayerCapture:
        nonlocal requests
        driver = board.driver  # a recovery step brings a new one
        before = driver.resends
        try:
            return driver.layers(benchmark, input_bytes, capture)
        finally:
            requests += 1 + driver.resends - before

    with_recovery(board, stream, f"LAYERS of benchmark {benchmark}")
    if capture.reply.units != len(capture.slots):
        raise TinyhilError(f"{model.name}: the board ran {capture.reply.units - 1} ops, the model has "
                           f"{len(capture.slots) - 1}")
    expected = [graph.inputs, *(op.outputs for op in graph.ops)]
    tensors = {}
    for unit, indices in enumerate(expected):
        for slot, streamed in enumerate(capture.unit(unit)):
            if streamed.tensor != indices[slot]:
                raise TinyhilError(f"{model.name}: the board sent tensor {streamed.tensor} as unit {unit}, "
                                   f"the model's is {indices[slot]}")
            tensors[streamed.tensor] = streamed.data
    return tensors, capture, requests


def _steps(device: bytes, host: bytes, dtype: str) -> tuple[int, int]:
    """(elements that differ, largest difference; -1: the sizes differ) of two tensors' bytes."""
    if len(device) != len(host):
        return max(len(device), len(host)) // np.dtype(dtype).itemsize or 1, -1
    a = np.frombuffer(device, dtype).astype(np.int64)
    b = np.frombuffer(host, dtype).astype(np.int64)
    diff = np.abs(a - b)
    return int((diff > 0).sum()), int(diff.max()) if diff.size else 0


def _compare(graph: Graph, tensors, device: dict[int, bytes], host: dict[int, bytes]) -> tuple[int, int, int]:
    """(elements, elements that differ, largest difference; -1: a size differs) over some tensors."""
    elements = differing = worst = 0
    for t in tensors:
        d, w = _steps(device[t], host[t], graph.tensor_dtypes[t])
        differing, worst = differing + d, (-1 if -1 in (w, worst) else max(worst, w))
        elements += int(np.prod(graph.tensor_shapes[t]))
    return elements, differing, worst


def diff_layers(model: TfliteModel, device: dict[int, bytes], host: dict[int, bytes]) -> tuple[LayerDiff, ...]:
    """Each unit's tensors, board against host (both by tensor index)."""
    graph = model_graph(model)
    configs = op_configs(model.flatbuffer)
    kernels = kernel_paths(model.flatbuffer)
    units = [(INPUT, "", "", graph.inputs)] + [
        (op.name, configs[i].key if configs[i] is not None else "", kernels[i], op.outputs)
        for i, op in enumerate(graph.ops)]
    return tuple(LayerDiff(unit, name, key, kernel, tuple(int(t) for t in tensors), graph.tensor_shapes[tensors[0]],
                           *_compare(graph, tensors, device, host))
                 for unit, (name, key, kernel, tensors) in enumerate(units))


def run_alone(config: BoardConfig, model: TfliteModel, index: int, device: dict[int, bytes],
              open_device: Callable[[], Board], log=None, on_stage=None) -> OpAlone:
    """Op `index` alone on the board and on the host, on the tensors the board's
    whole-model inference gave it (`device`, by tensor index)."""
    flatbuffer, inputs = op_alone(model.flatbuffer, index)
    alone = TfliteModel.from_bytes(flatbuffer, f"{model.name}-op{index}")
    captured = b"".join(device[t] for t in inputs)
    image = build_image(model_image(alone, config), config, log=log, on_stage=on_stage)
    with open_device() as board:
        boot_with_recovery(board, image)
        board_alone, _, _ = stream_tensors(board, alone, captured)
    host_alone = alone.reference_tensors(captured)
    graph = model_graph(alone)
    outputs = graph.ops[0].outputs
    in_model = b"".join(device[t] for t in model_graph(model).ops[index].outputs)
    return OpAlone(index, alone.ops[0], kernel_paths(model.flatbuffer)[index],
                   *_compare(graph, outputs, board_alone, host_alone),
                   b"".join(board_alone[t] for t in outputs) == in_model)


def compare_on_board(board: Board, model: TfliteModel, input_bytes: bytes, input_name: str,
                     benchmark: int = 0) -> tuple[LayerComparison, dict[int, bytes]]:
    """Streams benchmark `benchmark` of the booted board and compares it with
    `model` on the host (normally the benchmark's own model); no attribution yet."""
    device, capture, requests = stream_tensors(board, model, input_bytes, benchmark)
    host = model.reference_tensors(input_bytes)
    comparison = LayerComparison(model.name, board.config.name, input_name, diff_layers(model, device, host),
                                 capture.reply.arena_used, capture.received, requests)
    return comparison, device


def attribute(comparison: LayerComparison, config: BoardConfig, model: TfliteModel, device: dict[int, bytes],
              open_device: Callable[[], Board], log=None, on_stage=None) -> LayerComparison:
    """The comparison with its first diverging op run alone (unchanged when
    every op is equal or the input already differs)."""
    from dataclasses import replace

    first = comparison.first_diverging
    if first is None or first.unit == 0:
        return comparison
    return replace(comparison, alone=run_alone(config, model, first.index, device, open_device, log, on_stage))


def run_and_compare(path, config: BoardConfig, input_bytes: bytes, input_name: str, repeats: int = 20,
                    warmup: int = 1, port: str = "", timeout: float = 30.0,
                    open_device: Callable[[], Board] | None = None, log=None,
                    on_stage=None):
    """`tinyhil run --compare-layers`: the model measured as `tinyhil run` measures
    it, on `input_bytes`, then every layer compared on the same boot; the
    first diverging op is run alone after. Returns (RunReport, LayerComparison)."""
    model = TfliteModel.load(path)
    opener = open_device or (lambda: open_board(config, port=port, timeout=timeout))
    image = build_image(model_image(model, config), config, log=log, on_stage=on_stage)
    with opener() as board:
        info = boot_with_recovery(board, image)
        report = measure(image, info, board, model, input_bytes, repeats, warmup)
        comparison, device = compare_on_board(board, model, input_bytes, input_name)
    return report, attribute(comparison, config, model, device, opener, log, on_stage)
