"""The MicroNAS paper's evaluation on the data given (section 7-8):

- Tables 1-2: MicroNAS under a latency and a memory target, beside the
  DARTS-Softmax and DARTS-Gumbel baselines (the same space, no hardware loss)
  and random search under the same targets and the same training budget;
  latency (LUT estimate), peak memory (Appendix A and the TFLM arena estimate),
  accuracy and macro F1 of the retrained network, float and int8.
- Fig. 8: several latency targets with the memory loss off;
  Fig. 10: several memory targets with the latency loss off.
Every row over several seeds: mean and spread (standard deviation).

Budget: every method gets the same number of passes over the training set
for its search (`epochs`); random search spends them training
`epochs // RANDOM_EPOCHS` sampled networks within the targets for
RANDOM_EPOCHS each and keeps the most accurate on the validation split.
Each found network is then retrained the same way (float, QAT, int8:
deploy/qat.py) and scored on the test split; int8 scores come from the
host's TFLite interpreter running the int8 model the board would run.

Then that int8 model is run on the benchmark's board (`tinyhil run`'s path:
measure/model.py), so every network is judged against its targets by the LUT
estimate and, deployed, by the device: latency (median cycles / clock) and
the TFLM arena it used. A network the board fails to measure keeps its row,
with the reason, and the benchmark goes on to the next.
"""
from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyhil.benchmarks.micronas_sweep import largest_architecture
from tinyhil.board_catalog import BoardConfig
from tinyhil.errors import TinyhilError
from tinyhil.estimate import appendix_a_peak, arena_estimate, lut_latency
from tinyhil.files import atomic_write, writable_dir
from tinyhil.lut.table import Lut
from tinyhil.nas.data import Splits
from tinyhil.nas.micronas.search import (
    SearchConfig,
    broken_targets,
    check_targets,
    search,
    smallest_architecture,
    violations,
)
from tinyhil.spaces.arch import Architecture
from tinyhil.spaces.micronas import MicroNasSpace, sample_architecture

METHODS = ("micronas", "darts-gumbel", "darts-softmax", "random")
RANDOM_EPOCHS = 5  # training epochs per random-search candidate


@dataclass(frozen=True)
class PaperOptions:
    seeds: int = 3
    epochs: int = 30  # search epochs (every method's budget)
    warmup_epochs: int = 10
    batch_size: int = 32
    retrain_epochs: int = 40
    qat_epochs: int = 10
    targets: int = 3  # points of each trade-off figure
    experiments: tuple[str, ...] = ("table", "fig8", "fig10")


@dataclass(frozen=True)
class Outcome:
    """One found and retrained network."""

    experiment: str  # "table", "fig8" (latency targets) or "fig10" (memory targets)
    method: str
    seed: int
    lat_target_ms: float | None
    mem_target_bytes: float | None
    latency_ms: float  # LUT estimate
    arena_bytes: int  # TFLM arena estimate
    appendix_a_bytes: int  # the paper's peak memory (Appendix A)
    within_targets: bool
    accuracy: float  # test split, float model
    f1: float
    accuracy_int8: float  # test split, the int8 model on the host interpreter
    f1_int8: float
    search_seconds: float
    architecture: str
    # The int8 model run on the board (None: not measured, --no-device or device_error)
    measured_latency_ms: float | None = None  # median cycles of the timed runs / the board's clock
    measured_arena_bytes: int | None = None  # TFLM arena the board used
    within_targets_device: bool | None = None  # the measured figures under the targets
    device_output: str = ""  # the board's int8 output against the host interpreter's (verdict status)
    device_error: str = ""  # why the board did not measure it

    @property
    def measured(self) -> bool:
        return self.measured_latency_ms is not None


@dataclass(frozen=True)
class OnDevice:
    """The board found networks are measured on (`port`: a physical board's)."""

    board: BoardConfig
    port: str = ""
    log: Callable[[str], None] | None = None  # the firmware builds' messages
    open_device: Callable | None = None  # supplies the board instead of open_board (tests)

    def check(self) -> None:
        """Before any search: the firmware can be built and the board reached
        (a physical board needs its port), each refused with the usual error."""
        from tinyhil.device.boards import open_board
        from tinyhil.image.firmware import check_toolchain, pio_executable, tflm_dir

        tflm_dir()
        pio_executable()
        check_toolchain(self.board)
        if self.open_device is None:
            open_board(self.board, port=self.port)  # the connection is made later, per network


@dataclass(frozen=True)
class Measured:
    latency_ms: float | None = None
    arena_bytes: int | None = None
    output: str = ""
    error: str = ""


def measure_on_device(flatbuffer: bytes, name: str, device: OnDevice, models_dir: Path) -> Measured:
    """The int8 model built into an image and run on the board, as `tinyhil run`
    does: the board's default runs (one timed run on exact counts). A board that
    fails (stops answering, image too large) gives the reason, not an exception."""
    from tinyhil.measure.model import run_model

    path = models_dir / f"{name}.tflite"  # kept: `tinyhil run` measures it again
    atomic_write(path, flatbuffer)
    warmup, repeats = device.board.default_runs()
    try:
        report = run_model(path, device.board, repeats=repeats, warmup=warmup, port=device.port,
                           log=device.log, open_device=device.open_device)
    except TinyhilError as error:
        return Measured(error=f"{type(error).__name__}: {error}")
    return Measured(report.ms(report.cycles_median), report.arena_used, report.output_status)


def within_measured(measured: Measured, config: SearchConfig) -> bool | None:
    if measured.latency_ms is None:
        return None
    return not broken_targets(measured.latency_ms, measured.arena_bytes, config)


def int8_predictions(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    """Class indices the int8 model gives for windows x (float, model layout)."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = inp["quantization"]
    predicted = []
    for window in x:
        q = np.clip(np.round(window / scale) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q.reshape(inp["shape"]))
        interpreter.invoke()
        predicted.append(int(np.argmax(interpreter.get_tensor(out["index"]))))
    return np.array(predicted)


def random_search(data: Splits, space: MicroNasSpace, lut: Lut, config: SearchConfig
                  ) -> tuple[Architecture, float]:
    """Sampled networks within the targets (LUT estimates), each trained
    RANDOM_EPOCHS; the most accurate on the validation split."""
    from tinyhil.benchmarks.micronas_sweep import held_out_accuracy

    rng = np.random.default_rng(config.seed)
    started = time.monotonic()
    best: tuple[float, Architecture] | None = None
    for index in range(max(1, config.epochs // RANDOM_EPOCHS)):
        for _ in range(1000):  # rejection sampling: targets can exclude most of the space
            arch = sample_architecture(space, rng)
            if within(arch, lut, config):
                break
        else:
            arch = smallest_architecture(space)
        args = (arch, _validation_as_test(data), RANDOM_EPOCHS, config.seed + index)
        accuracy = held_out_accuracy(*args)
        if best is None or accuracy > best[0]:
            best = (accuracy, arch)
    return best[1], time.monotonic() - started


def _validation_as_test(data: Splits) -> Splits:
    return Splits(data.x_train, data.y_train, data.x_val, data.y_val, data.x_val, data.y_val, data.classes,
                  data.name)


def within(arch: Architecture, lut: Lut, config: SearchConfig) -> bool:
    return not violations(arch, lut, config)


def find(method: str, data: Splits, space: MicroNasSpace, lut: Lut, config: SearchConfig
         ) -> tuple[Architecture, float]:
    if method == "random":
        return random_search(data, space, lut, config)
    variant = {"micronas": {}, "darts-gumbel": {"hardware": False},
               "darts-softmax": {"gumbel": False, "hardware": False}}[method]
    result = search(data, space, lut, SearchConfig(**{**asdict(config), **variant}))
    return result.architecture, result.seconds


def retrain(arch: Architecture, data: Splits, options: PaperOptions, seed: int):
    """(float scores, int8 scores, int8 flatbuffer) of the architecture retrained from scratch (QAT, int8)."""
    from tinyhil.deploy.qat import Scores, train_int8, windows

    trained = train_int8(arch, data, options.retrain_epochs, options.qat_epochs, options.batch_size, seed)
    int8 = Scores.of(int8_predictions(trained.flatbuffer, windows(data.x_test, arch)), data.y_test, data.classes)
    return trained.float_scores, int8, trained.flatbuffer


def evaluate(experiment: str, method: str, data: Splits, space: MicroNasSpace, lut: Lut,
             config: SearchConfig, options: PaperOptions, device: OnDevice | None = None,
             models_dir: Path | None = None) -> Outcome:
    """One network found, retrained and, given a device, measured on it (its
    int8 model kept in `models_dir`)."""
    arch, seconds = find(method, data, space, lut, config)
    floats, int8, flatbuffer = retrain(arch, data, options, config.seed)
    measured = Measured()
    if device is not None:
        name = f"{experiment}-{method}-seed{config.seed}-{arch.id}"
        measured = measure_on_device(flatbuffer, name, device, models_dir or Path("."))
    return Outcome(experiment, method, config.seed, config.lat_target_ms, config.mem_target_bytes,
                   lut_latency(arch, lut) / lut.meta.clock_hz * 1e3, arena_estimate(arch, lut),
                   appendix_a_peak(arch), within(arch, lut, config), floats.accuracy, floats.f1,
                   int8.accuracy, int8.f1, seconds, arch.id, measured.latency_ms, measured.arena_bytes,
                   within_measured(measured, config), measured.output, measured.error)


def target_range(space: MicroNasSpace, lut: Lut) -> tuple[tuple[float, float], tuple[float, float]]:
    """(latency ms, arena bytes) of the smallest and the largest network."""
    small, large = smallest_architecture(space), largest_architecture(space)
    ms = lambda a: lut_latency(a, lut) / lut.meta.clock_hz * 1e3  # noqa: E731
    return (ms(small), ms(large)), (arena_estimate(small, lut), arena_estimate(large, lut))


def plan(space: MicroNasSpace, lut: Lut, options: PaperOptions) -> list[tuple[str, str, float | None, float | None]]:
    """(experiment, method, latency target, memory target) of every run, seeds aside."""
    (lat_low, lat_high), (mem_low, mem_high) = target_range(space, lut)
    # from just above the smallest network to well below the largest (geometric)
    lat_targets = np.geomspace(1.5 * lat_low, 0.5 * lat_high, options.targets)
    mem_targets = np.geomspace(1.2 * mem_low, 0.7 * mem_high, options.targets)
    table_lat, table_mem = float(lat_targets[len(lat_targets) // 2]), float(mem_targets[-1])
    runs = [("table", method, table_lat, table_mem) for method in METHODS]
    runs += [("fig8", "micronas", float(t), None) for t in lat_targets]
    runs += [("fig10", "micronas", None, float(t)) for t in mem_targets]
    return [run for run in runs if run[0] in options.experiments]


def run_paper(data: Splits, space: MicroNasSpace, lut: Lut, options: PaperOptions, out: Path,
              progress=None, device: OnDevice | None = None) -> list[Outcome]:
    """Every run of the plan; `device`: each found network measured on it too."""
    writable_dir(out, "the benchmark's table and plots")
    if device is not None:
        device.check()
    outcomes = []
    runs = plan(space, lut, options)
    for index, (experiment, method, lat, mem) in enumerate(runs):
        for seed in range(options.seeds):
            config = SearchConfig(lat, mem, epochs=options.epochs, batch_size=options.batch_size,
                                  warmup_epochs=options.warmup_epochs, seed=seed)
            if method == "micronas":
                check_targets(space, lut, config)
            outcomes.append(evaluate(experiment, method, data, space, lut, config, options, device,
                                     out / "models"))
            if progress:
                progress(f"{index + 1}/{len(runs)} {experiment} {method} seed {seed}", outcomes[-1])
            write_outcomes(outcomes, out / "paper.csv")
    if any(o.experiment != "table" for o in outcomes):
        plot(outcomes, out / "tradeoffs.png")
    return outcomes


def write_outcomes(outcomes: list[Outcome], path: Path) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, list(asdict(outcomes[0])))
    writer.writeheader()
    writer.writerows(asdict(o) for o in outcomes)
    atomic_write(path, text.getvalue())


@dataclass(frozen=True)
class Summary:
    """Mean and spread over seeds of one (experiment, method, targets)."""

    experiment: str
    method: str
    lat_target_ms: float | None
    mem_target_bytes: float | None
    seeds: int
    within: int  # seeds whose network met the targets (LUT estimate)
    mean: dict  # field -> mean (measured fields: over the measured seeds; NaN if none)
    spread: dict  # field -> standard deviation
    measured: int = 0  # seeds whose network the device measured
    within_device: int = 0  # of them, those whose measured figures met the targets


FIELDS = ("latency_ms", "arena_bytes", "appendix_a_bytes", "accuracy", "accuracy_int8", "f1", "f1_int8",
          "measured_latency_ms", "measured_arena_bytes")


def summarize(outcomes: list[Outcome]) -> list[Summary]:
    groups: dict[tuple, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.experiment, o.method, o.lat_target_ms, o.mem_target_bytes), []).append(o)

    def values(rows, field):
        return [getattr(o, field) for o in rows if getattr(o, field) is not None]

    def stat(reduce, rows, field):
        found = values(rows, field)
        return float(reduce(found)) if found else float("nan")

    return [Summary(*key, len(rows), sum(o.within_targets for o in rows),
                    {f: stat(np.mean, rows, f) for f in FIELDS}, {f: stat(np.std, rows, f) for f in FIELDS},
                    sum(o.measured for o in rows), sum(bool(o.within_targets_device) for o in rows))
            for key, rows in groups.items()]


def estimate_errors_pct(outcomes: list[Outcome], estimate: str = "latency_ms",
                        measured: str = "measured_latency_ms") -> list[float]:
    """An estimate against the device, per measured network (+: the estimate is higher)."""
    return [(getattr(o, estimate) / getattr(o, measured) - 1) * 100 for o in outcomes if o.measured]


def plot(outcomes: list[Outcome], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = summarize(outcomes)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, experiment, x_field, label in ((axes[0], "fig8", "lat_target_ms", "latency target (ms)"),
                                           (axes[1], "fig10", "mem_target_bytes", "memory target (B)")):
        rows = sorted((s for s in summaries if s.experiment == experiment), key=lambda s: getattr(s, x_field))
        x = [getattr(s, x_field) for s in rows]
        for field, name in (("accuracy", "accuracy"), ("f1", "F1 (macro)"), ("accuracy_int8", "accuracy int8"),
                            ("f1_int8", "F1 int8")):
            ax.errorbar(x, [s.mean[field] for s in rows], yerr=[s.spread[field] for s in rows], marker="o",
                        capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_title({"fig8": "Fig. 8: latency target, memory loss off",
                      "fig10": "Fig. 10: memory target, latency loss off"}[experiment])
        ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
