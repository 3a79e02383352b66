"""`tinyhil deploy RUN_DIR`: a found architecture, retrained, on the device.

search run -> QAT retraining -> int8 .tflite -> C array -> firmware (build)
-> board: latency, arena, per-layer profile, and every held-out test window
run on the device and compared with the host int8 interpreter -> Deployment
(deployment.json, predictions.csv; the report is the next stage).

The trained int8 model is kept in the run directory: a deployment that is
interrupted (or re-run on another board) does not train again.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tinyhil import __version__
from tinyhil.board_catalog import BoardConfig
from tinyhil.deploy.qat import QAT_RECIPE, Scores, TrainedModel, train_int8, windows
from tinyhil.device.boards import open_board
from tinyhil.device.recovery import boot_with_recovery, run_with_recovery
from tinyhil.errors import ImageTooLarge, TinyhilError
from tinyhil.estimate.predict import BoardLatency
from tinyhil.files import atomic_write, writable_dir
from tinyhil.image.c_array import write_c_array
from tinyhil.image.elf import compiler_of
from tinyhil.image.firmware import build_image
from tinyhil.image.sources import Benchmark, ImageSpec
from tinyhil.lut.table import Lut
from tinyhil.measure.layers import LayerComparison, attribute, compare_on_board
from tinyhil.measure.model import RunReport, measure
from tinyhil.models.op_order import architecture_ops
from tinyhil.models.tflite_model import TfliteModel, model_graph
from tinyhil.nas.constraints import Profile, profile
from tinyhil.nas.engines import SearchRun, Targets
from tinyhil.protocol import RunRequest
from tinyhil.provenance import Provenance, collect
from tinyhil.verdict import EXACT, compare_output, largest_steps

MODEL_FILE = "model_int8.tflite"
TRAINING_FILE = "training.json"
DEPLOYMENT_FILE = "deployment.json"
PREDICTIONS_FILE = "predictions.csv"
ARRAY_NAME = "g_model"


@dataclass(frozen=True)
class DeployOptions:
    epochs: int = 50  # float training from scratch
    qat_epochs: int = 20  # quantization-aware fine-tuning
    batch_size: int = 16  # small sets (BasicMotions: 48 training windows) need the steps
    repeats: int = 10  # timed inferences for the latency
    seed: int = 0
    port: str = ""  # physical boards
    compare_layers: bool = False  # also compare one test window layer by layer
    compare_window: int | None = None  # that window (default: the first whose output differs, else 0)
    # None: every test window runs on the device; N: N of them, evenly spaced over the
    # test split (a slow emulated board's smoke runs); the host interpreter scores all
    device_windows: int | None = None


@dataclass(frozen=True)
class LayerRow:
    """One op as the device ran it, beside the LUT row the estimate used."""

    index: int
    op: str
    device_cycles: float
    lut_key: str = ""  # "" for an op the architecture does not have (e.g. a QUANTIZE QAT added)
    lut_cycles: float | None = None


@dataclass(frozen=True)
class DifferingWindow:
    """A test window whose device output is not the host interpreter's."""

    window: int  # index among the held-out test windows
    label: float  # its class (regression: its target)
    host: float  # the host int8 interpreter's class (value)
    device: float  # the device's
    max_steps: int  # largest output difference, int8 steps (255: none came back)
    differing: int  # outputs that differ


@dataclass(frozen=True)
class Deployment:
    run_dir: str
    engine: str
    board: str
    data: str
    architecture_id: str
    targets: Targets
    estimate: Profile  # the board's LUT, as the engines estimate
    estimated_cycles: float
    measured_cycles: tuple[float, ...]
    clock_hz: int
    counter: str
    arena_used: int
    model_bytes: int
    image_flash_bytes: int
    image_ram_bytes: int
    scores: dict[str, Scores]  # float, qat, int8_host, int8_device (held-out test windows)
    test_windows: int  # run on the device and compared with the host (all, unless DeployOptions.device_windows)
    outputs_equal: int  # windows whose device output bytes equal the host interpreter's
    max_output_steps: int  # largest |device - host| over all outputs, in int8 steps (CMSIS-NN
    # fully connected layers may round one step off TFLite's reference kernels)
    predictions_equal: int  # windows whose device class (regression: value) equals the host's
    layers: tuple[LayerRow, ...]
    warnings: tuple[str, ...]
    seconds: dict[str, float] = field(default_factory=dict)
    provenance: Provenance | None = None  # tinyhil, commit, command, date; TFLM, compiler, firmware, image
    differing_windows: tuple[DifferingWindow, ...] = ()
    layers_compared: LayerComparison | None = None  # --compare-layers: one window, op by op
    # the model's latency predicted on a physical board (deploy --predict): the latency verdict is its bound's
    predicted: BoardLatency | None = None
    host_windows: int | None = None  # test windows the host interpreter scored (None: test_windows)

    @property
    def cycles(self) -> float:
        return float(np.median(self.measured_cycles))

    @property
    def measured_ms(self) -> float:
        return self.cycles / self.clock_hz * 1e3

    @property
    def latency_error_pct(self) -> float:
        return (self.estimated_cycles / self.cycles - 1) * 100

    @property
    def judged_latency_ms(self) -> float:
        """The latency the target judges: the predicted board's at its bound
        (the target is that board's), else the one measured here."""
        return self.predicted.ms_bound if self.predicted is not None else self.measured_ms

    def checks(self) -> dict[str, bool | None]:
        """Figure under its target (None: no target): measured here, the latency
        predicted on the board at its bound when there is a prediction."""
        t = self.targets
        return {"latency": None if t.latency_ms is None else self.judged_latency_ms <= t.latency_ms,
                "ram": None if t.ram_bytes is None else self.arena_used <= t.ram_bytes,
                "flash": None if t.flash_bytes is None else self.model_bytes <= t.flash_bytes}

    @property
    def under_targets(self) -> bool:
        """Every measured figure that has a target is under it."""
        return all(ok for ok in self.checks().values() if ok is not None)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(tinyhil=__version__,
                    measured={"cycles": self.cycles, "ms": self.measured_ms, "arena_bytes": self.arena_used,
                              "flash_bytes": self.image_flash_bytes, "model_bytes": self.model_bytes},
                    latency_error_pct=self.latency_error_pct, under_targets=self.checks())
        if self.layers_compared is not None:
            data["layers_compared"] = self.layers_compared.to_dict()
        return data


class DeployError(TinyhilError):
    pass


def trained_model(found: SearchRun, run_dir: Path, options: DeployOptions, splits, log) -> TrainedModel:
    """The run's QAT int8 model: trained now, or the one an earlier deploy left
    (same architecture and options), so an interrupted deployment resumes."""
    model_path, record_path = run_dir / MODEL_FILE, run_dir / TRAINING_FILE
    key = {"architecture": found.architecture.id, "recipe": QAT_RECIPE, "epochs": options.epochs,
           "qat_epochs": options.qat_epochs, "batch_size": options.batch_size, "seed": options.seed}
    if model_path.is_file() and record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except json.JSONDecodeError:
            record = {}
        if record.get("key") == key:
            log(f"reusing the QAT model of an earlier deployment ({model_path})")
            return TrainedModel(model_path.read_bytes(), Scores(**record["float"]), Scores(**record["qat"]),
                                options.epochs, options.qat_epochs, record["seconds"])
    log(f"training {found.architecture.id}: {options.epochs} float + {options.qat_epochs} QAT epochs")
    trained = train_int8(found.architecture, splits, options.epochs, options.qat_epochs,
                         options.batch_size, options.seed)
    atomic_write(model_path, trained.flatbuffer)
    atomic_write(record_path, json.dumps({"key": key, "float": asdict(trained.float_scores),
                                           "qat": asdict(trained.qat_scores),
                                           "seconds": trained.seconds}, indent=2).encode())
    return trained


def quantize(x: np.ndarray, model: TfliteModel) -> list[bytes]:
    """Float windows -> the int8 input bytes the model takes (its input quantization)."""
    spec = model.inputs[0]
    if spec.scale <= 0:
        raise DeployError(f"{model.name}: input has no quantization scale; not a full-integer model")
    q = np.clip(np.round(x / spec.scale) + spec.zero_point, -128, 127).astype(np.int8)
    return [row.tobytes() for row in q.reshape(len(x), -1)]


def layer_rows(report: RunReport, model: TfliteModel, found: SearchRun, lut: Lut) -> tuple[LayerRow, ...]:
    """Pairs each op the device ran with the architecture op it computes."""
    rows = []
    for p, op in zip(report.ops, architecture_ops(model_graph(model), found.architecture)):
        if op is None:  # an op the converter added
            rows.append(LayerRow(p.index, p.op, p.cycles))
            continue
        lut_cycles = float(lut.row(op)["kernel_cycles"]) if op in lut else None
        rows.append(LayerRow(p.index, p.op, p.cycles, op.key, lut_cycles))
    return tuple(rows)


def compare_window(asked: int | None, same_output: list[bool]) -> int:
    """The window --compare-layers looks at: the one asked for, else the first
    whose output differs, else the first."""
    if asked is not None:
        if not 0 <= asked < len(same_output):
            raise DeployError(f"--test-window {asked}: there are {len(same_output)} test windows")
        return asked
    return next((i for i, same in enumerate(same_output) if not same), 0)


def differing_windows(comparisons, labels, host, device, windows) -> tuple[DifferingWindow, ...]:
    """The device-run windows whose output differs; `windows` their test-window indices."""
    return tuple(DifferingWindow(int(w), float(labels[k]), float(host[k]), float(device[k]),
                                 255 if c.max_steps is None else c.max_steps, c.steps_off)
                 for k, (w, c) in enumerate(zip(windows, comparisons)) if c.kind != EXACT)


def device_sample(windows: int, wanted: int | None) -> np.ndarray:
    """Indices of the test windows the device runs: all, or `wanted` of them evenly spaced."""
    if wanted is None or wanted >= windows:
        return np.arange(windows)
    return np.unique(np.linspace(0, windows - 1, max(1, wanted)).round().astype(int))


def lut_differences(lut: Lut, board: BoardConfig, info, searched_on: str) -> list[str]:
    """What differs between where the LUT was measured and where we deploy."""
    m, out = lut.meta, []
    for what, lut_value, here in (("board", m.board, board.name), ("core", m.core, info.core),
                                  ("TFLM", m.tflm, info.tflm), ("counter", m.counter, info.counter)):
        if lut_value and here and lut_value != here:
            out.append(f"the LUT's {what} is {lut_value}, the device's is {here}: estimates may be off")
    if searched_on != board.name:
        out.append(f"searched with the {searched_on} LUT, deployed on {board.name}")
    return out


def deploy(run_dir: Path, board: BoardConfig, lut: Lut, options: DeployOptions = DeployOptions(),
           log: Callable[[str], None] = lambda _m: None, on_stage=None,
           predicted: BoardLatency | None = None) -> Deployment:
    """`on_stage` hears of a long build (stage_progress.StageProgress);
    `predicted`: the model's latency on the physical board the targets are
    for (deploy --predict), which then judges the latency target."""
    run_dir = Path(run_dir)
    found = SearchRun.load(run_dir)
    writable_dir(run_dir, "the deployment")  # before training and measuring
    seconds = {}
    t0 = time.monotonic()
    splits = found.data.load()
    regression = splits.task == "regression"
    if (splits.window, splits.channels) != tuple(found.input) or (not regression and splits.classes != found.classes):
        raise DeployError(f"{run_dir}: data {found.data.spec} now gives {splits.window}x{splits.channels}, "
                          f"{splits.classes} classes; the run searched {found.input[0]}x{found.input[1]}, "
                          f"{found.classes} classes")
    trained = trained_model(found, run_dir, options, splits, log)
    seconds["train"] = time.monotonic() - t0
    model = TfliteModel.from_bytes(trained.flatbuffer, f"deploy-{found.architecture.id}")
    estimate = profile(found.architecture, lut)
    estimated_cycles = estimate.latency_ms * lut.meta.clock_hz / 1e3

    # Host int8 interpreter on every test window (the bytes the device gets too).
    inputs = quantize(windows(splits.x_test, found.architecture), model)
    if options.compare_window is not None:  # before any device time
        compare_window(options.compare_window, [True] * len(inputs))
    host_outputs = [model.reference_output(x) for x in inputs]
    on_device = device_sample(len(inputs), options.device_windows)

    t0 = time.monotonic()
    write_c_array(model, run_dir / "firmware", ARRAY_NAME)
    bench = Benchmark(model.name, model.flatbuffer, model.ops, model.input_bytes, array=ARRAY_NAME)
    try:
        image = build_image(ImageSpec(board.name, (bench,)), board, log=log, on_stage=on_stage)
    except ImageTooLarge as error:
        raise DeployError(f"after QAT the int8 model ({len(model.flatbuffer):,} B; estimate "
                          f"{estimate.flash:,} B) no longer fits {board.name}: {error}") from error
    seconds["build"] = time.monotonic() - t0

    t0 = time.monotonic()
    device_outputs = []
    with open_board(board, port=options.port) as device:
        info = boot_with_recovery(device, image)
        warnings = lut_differences(lut, board, info, found.board)
        for w in warnings:
            log(f"warning: {w}")
        report = measure(image, info, device, model, inputs[0], options.repeats, warmup=1)
        if report.arena_used > report.arena_bytes:
            raise DeployError(f"{model.name} needs {report.arena_used:,} B of arena, the board has "
                              f"{report.arena_bytes:,} B")
        for i in on_device:
            reply = run_with_recovery(device, RunRequest(0, inputs[i], warmup=0, repeats=1, profile=False))
            device_outputs.append(reply.output)
        comparisons = [compare_output(d, host_outputs[i]) for d, i in zip(device_outputs, on_device)]
        same_output = [c.kind == EXACT for c in comparisons]
        layers_compared = tensors = None
        if options.compare_layers:
            same_by_window = [True] * len(inputs)  # windows not run on the device count as equal
            for k, w in enumerate(on_device):
                same_by_window[w] = same_output[k]
            window = compare_window(options.compare_window, same_by_window)
            log(f"comparing test window {window} layer by layer")
            layers_compared, tensors = compare_on_board(device, model, inputs[window],
                                                        f"test window {window} of {found.data.spec}")
    if layers_compared is not None:  # the first diverging op alone: another image, another boot
        layers_compared = attribute(layers_compared, board, model, tensors,
                                    lambda: open_board(board, port=options.port), log, on_stage)
    seconds["device"] = time.monotonic() - t0

    labels = splits.y_test
    if regression:  # the int8 output, dequantized with the model's output scale
        out = model.outputs[0]
        value = lambda o: (float(np.frombuffer(o, np.int8)[0]) - out.zero_point) * out.scale if o else np.nan  # noqa: E731
        every_host = np.array([value(o) for o in host_outputs])
        device_classes = np.array([value(o) for o in device_outputs])
        scores = {"float": trained.float_scores, "qat": trained.qat_scores,
                  "int8_host": Scores.regression(every_host, labels),
                  "int8_device": Scores.regression(device_classes, labels[on_device])}
    else:
        every_host = np.array([np.argmax(np.frombuffer(o, np.int8)) for o in host_outputs])
        device_classes = np.array([np.argmax(np.frombuffer(o, np.int8)) if o else -1 for o in device_outputs])
        scores = {"float": trained.float_scores, "qat": trained.qat_scores,
                  "int8_host": Scores.of(every_host, labels, found.classes),
                  "int8_device": Scores.of(device_classes, labels[on_device], found.classes)}
    host_classes = every_host[on_device]
    deployment = Deployment(
        run_dir=str(run_dir), engine=found.engine, board=board.name, data=found.data.spec,
        architecture_id=found.architecture.id, targets=found.targets, estimate=estimate,
        estimated_cycles=estimated_cycles, measured_cycles=report.cycles, clock_hz=report.clock_hz,
        counter=report.counter, arena_used=report.arena_used, model_bytes=len(model.flatbuffer),
        image_flash_bytes=report.flash_bytes, image_ram_bytes=report.ram_bytes, scores=scores,
        test_windows=len(on_device),
        outputs_equal=sum(same_output),
        max_output_steps=largest_steps(comparisons),
        predictions_equal=int(np.sum(device_classes == host_classes)),
        layers=layer_rows(report, model, found, lut), warnings=tuple(warnings), seconds=seconds,
        provenance=collect(info.tflm, compiler_of(image.elf), image.firmware, image.image_id),
        differing_windows=differing_windows(comparisons, labels[on_device], host_classes, device_classes,
                                            on_device),
        layers_compared=layers_compared, predicted=predicted, host_windows=len(inputs))
    pd.DataFrame({"label": labels[on_device], "host_int8": host_classes, "device_int8": device_classes,
                  "outputs_equal": same_output,
                  "device_output": [o.hex() if o else "" for o in device_outputs]}, index=on_device
                 ).to_csv(run_dir / PREDICTIONS_FILE, index_label="window")
    atomic_write(run_dir / DEPLOYMENT_FILE, json.dumps(deployment.to_dict(), indent=2, default=float).encode())
    return deployment
