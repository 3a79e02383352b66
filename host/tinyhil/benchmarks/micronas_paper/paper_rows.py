"""The MicroNAS paper's own rows on UCI-HAR: Table 2 at its targets and
boards, and Fig. 8 (latency targets, memory loss off) on both boards.

Each (method, row, seed) is searched with the board's calibrated LUT priced
at its p95 bound (the verdict is that bound: a network the search took as
just under the target by the point estimate could be over it at the bound),
retrained (float, QAT, int8) on the whole training split, scored on the
official test subjects (int8 by the host interpreter), run on the emulated
twin of the board's core (qemu-m4 for the F446RE, qemu-m33 for the L552ZE-Q:
latency in instructions at 25 MHz, the TFLM arena), and its board latency
predicted from the calibrated LUT for the int8 model's own ops, with the
bound (estimate/predict.py, `--predict`). The verdicts: latency by the
predicted bound, memory by the arena the emulated board measured.

DARTS-Softmax and DARTS-Gumbel have no hardware loss: their search is the
same for every row (the paper lists them once, "independent"), so it is
done once per seed and its network measured and predicted per row's board.
Every piece is kept in the ledger as it finishes (ledger.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from tinyhil.benchmarks.micronas_paper import (
    PaperOptions,
    find,
    int8_predictions,
    measure_on_device,
)
from tinyhil.benchmarks.micronas_paper.ledger import Ledger
from tinyhil.errors import TinyhilError
from tinyhil.estimate import appendix_a_peak, arena_estimate, lut_latency
from tinyhil.lut.calibration.board_lut import priced_at
from tinyhil.lut.table import Lut
from tinyhil.nas.data import Splits
from tinyhil.nas.micronas.search import SearchConfig, check_targets
from tinyhil.spaces.arch import Architecture
from tinyhil.spaces.micronas import MicroNasSpace

BOUND = "p95"
METHODS = ("micronas", "darts-softmax", "darts-gumbel", "random")
INDEPENDENT = ("darts-softmax", "darts-gumbel")  # no hardware loss: one search for every row
FIG8_BOARDS = ("nucleo_f446re", "nucleo_l552ze_q")


@dataclass(frozen=True)
class PaperRow:
    name: str
    board: str
    lat_target_ms: float
    mem_target_bytes: float
    paper: tuple[float, float, float, float]  # the paper's accuracy, int8 accuracy, F1, int8 F1 (%)


TABLE2 = (
    PaperRow("MicroNAS 1", "nucleo_f446re", 14.45, 11520, (90.21, 91.85, 92.66, 92.07)),
    PaperRow("MicroNAS 2", "nucleo_f446re", 123.84, 15360, (94.59, 93.93, 94.71, 94.13)),
    PaperRow("MicroNAS 3", "nucleo_l552ze_q", 213.57, 15360, (94.63, 92.78, 94.67, 92.94)),
)
# the paper's baselines (device independent), same columns
PAPER_BASELINES = {"darts-softmax": (94.08, 92.01, 94.28, 92.35), "darts-gumbel": (95.40, 92.97, 95.59, 93.24)}


@dataclass(frozen=True)
class Planned:
    """One (method, row, seed) to run."""

    experiment: str  # "table2" or "fig8"
    row: str  # "MicroNAS 1", or "F446RE 20.1 ms" for Fig. 8
    board: str  # the physical board the targets are for
    method: str
    seed: int
    lat_target_ms: float | None
    mem_target_bytes: float | None

    @property
    def name(self) -> str:
        return f"{self.experiment}-{self.row}-{self.method}-seed{self.seed}"

    @property
    def search_name(self) -> str:
        """The search this run takes its network from (shared by every row for the DARTS baselines)."""
        return f"{self.method}-seed{self.seed}" if self.method in INDEPENDENT else self.name


@dataclass(frozen=True)
class BoardOutcome:
    """One found network: searched for a physical board, measured on its emulated twin."""

    experiment: str
    row: str
    board: str
    twin: str
    method: str
    seed: int
    lat_target_ms: float | None
    mem_target_bytes: float | None
    architecture: str
    latency_ms: float  # the board's calibrated LUT, point estimate
    latency_bound_ms: float  # ... at its bound (BOUND)
    arena_bytes: int  # the board LUT's arena estimate
    appendix_a_bytes: int
    accuracy: float  # float model, test subjects
    f1: float
    accuracy_int8: float  # int8 model, host interpreter, test subjects
    f1_int8: float
    search_seconds: float
    train_seconds: float
    lut_digest: str  # the board LUT the search was priced on
    predicted_ms: float | None = None  # the int8 model's ops on the board's LUT
    predicted_bound_ms: float | None = None
    predict_error: str = ""
    measured_latency_ms: float | None = None  # on the twin, at its clock
    measured_arena_bytes: int | None = None
    device_output: str = ""
    device_error: str = ""
    measure_seconds: float = 0.0

    @property
    def measured(self) -> bool:
        return self.measured_latency_ms is not None

    @property
    def within_latency(self) -> bool | None:
        """The predicted board latency at its bound under the target (None: no target or no prediction)."""
        if self.lat_target_ms is None or self.predicted_bound_ms is None:
            return None
        return self.predicted_bound_ms <= self.lat_target_ms

    @property
    def within_memory(self) -> bool | None:
        """The arena the emulated board measured under the target (None: no target, not measured)."""
        if self.mem_target_bytes is None or self.measured_arena_bytes is None:
            return None
        return self.measured_arena_bytes <= self.mem_target_bytes

    @property
    def seconds(self) -> float:
        return self.search_seconds + self.train_seconds + self.measure_seconds


def fig8_targets(space: MicroNasSpace, lut: Lut, n: int) -> list[float]:
    """Latency targets (ms) from just above the smallest network to well below the
    largest, at the board LUT's bound (geometric; as `plan` spreads Fig. 8's)."""
    from tinyhil.benchmarks.micronas_paper import target_range

    (low, high), _ = target_range(space, priced_at(lut, BOUND))
    return [round(float(t), 2) for t in np.geomspace(1.5 * low, 0.5 * high, n)]


def plan(seeds: int, fig8: dict[str, list[float]], experiments=("table2", "fig8")) -> list[Planned]:
    """Seed by seed (a run stopped early has every row of the first seeds), Table 2's
    rows first, each with MicroNAS and its baselines, then Fig. 8's targets."""
    from tinyhil.benchmarks.calibrate import board_label

    runs = []
    for seed in range(seeds):
        if "table2" in experiments:
            runs += [Planned("table2", row.name, row.board, method, seed, row.lat_target_ms, row.mem_target_bytes)
                     for row in TABLE2 for method in METHODS]
        if "fig8" in experiments:
            runs += [Planned("fig8", f"{board_label(board)} {target:g} ms", board, "micronas", seed, target, None)
                     for board, targets in fig8.items() for target in targets]
    return runs


@dataclass
class Bench:
    """What every run shares."""

    data: Splits  # searches, retraining and the test subjects (--quick: a stride of the training and
    # validation windows, every test window)
    space: MicroNasSpace
    luts: dict[str, Lut]  # physical board -> its calibrated LUT (point)
    digests: dict[str, str]  # physical board -> its LUT's checksum
    twins: dict[str, str]  # physical board -> its emulated twin
    options: PaperOptions
    ledger: Ledger
    models_dir: Path
    luts_dir: Path
    devices: dict | None = None  # twin -> OnDevice (None: --no-device)


def evaluate(p: Planned, bench: Bench, run: bool = True) -> tuple[BoardOutcome | None, bool]:
    """(the outcome, whether it came from the ledger); `run` False: (None, False)
    unless the ledger has it."""
    kept = bench.ledger.get("runs", p.name)
    if kept is not None:
        return BoardOutcome(**kept), True
    if not run:
        return None, False
    arch, search_seconds = search(p, bench)
    flatbuffer, scores, train_seconds = trained(arch, p.seed, bench)
    lut = bench.luts[p.board]
    to_ms = 1e3 / lut.meta.clock_hz
    outcome = BoardOutcome(
        p.experiment, p.row, p.board, bench.twins[p.board], p.method, p.seed, p.lat_target_ms,
        p.mem_target_bytes, arch.id, lut_latency(arch, lut) * to_ms, lut_latency(arch, lut, BOUND) * to_ms,
        arena_estimate(arch, lut), appendix_a_peak(arch), *scores, search_seconds, train_seconds,
        bench.digests[p.board])
    outcome = replace(outcome, **predicted(flatbuffer, p.board, bench), **measured(flatbuffer, arch, p, bench))
    bench.ledger.put("runs", p.name, asdict(outcome))
    return outcome, False


def search(p: Planned, bench: Bench) -> tuple[Architecture, float]:
    kept = bench.ledger.get("search", p.search_name)
    if kept is not None:
        return Architecture.from_dict(kept["architecture"]), kept["seconds"]
    o = bench.options
    lut = priced_at(bench.luts[p.board], BOUND)
    config = SearchConfig(p.lat_target_ms, p.mem_target_bytes, epochs=o.epochs, batch_size=o.batch_size,
                          warmup_epochs=o.warmup_epochs, seed=p.seed)
    if p.method == "micronas":
        check_targets(bench.space, lut, config)
    arch, seconds = find(p.method, bench.data, bench.space, lut, config)
    bench.ledger.put("search", p.search_name, {"architecture": arch.to_dict(), "seconds": seconds,
                                               "board_lut": bench.digests[p.board]})
    return arch, seconds


def trained(arch: Architecture, seed: int, bench: Bench) -> tuple[bytes, tuple[float, ...], float]:
    """The int8 model of `arch` retrained with `seed` (kept: DARTS' networks serve every
    row), with its (accuracy, F1, int8 accuracy, int8 F1) on the test subjects."""
    import time

    from tinyhil.deploy.qat import Scores, train_int8, windows
    from tinyhil.files import atomic_write

    name = f"{arch.id}-seed{seed}"
    model = bench.models_dir / f"{name}.tflite"
    kept = bench.ledger.get("trained", name)
    if kept is not None and model.is_file():
        return model.read_bytes(), tuple(kept["scores"]), kept["seconds"]
    o, data = bench.options, bench.data
    started = time.monotonic()
    t = train_int8(arch, data, o.retrain_epochs, o.qat_epochs, o.batch_size, seed)
    int8 = Scores.of(int8_predictions(t.flatbuffer, windows(data.x_test, arch)), data.y_test, data.classes)
    scores = (t.float_scores.accuracy, t.float_scores.f1, int8.accuracy, int8.f1)
    seconds = time.monotonic() - started
    atomic_write(model, t.flatbuffer)
    bench.ledger.put("trained", name, {"scores": scores, "seconds": seconds})
    return t.flatbuffer, scores, seconds


def predicted(flatbuffer: bytes, board: str, bench: Bench) -> dict:
    """The board latency of the int8 model's own ops, from the board's LUT, with its bound."""
    from tinyhil.estimate.predict import predict
    from tinyhil.models.tflite_ops import op_configs

    try:
        p = predict(op_configs(flatbuffer), board, bench.luts_dir, BOUND, lut=bench.luts[board])
    except TinyhilError as error:
        return {"predict_error": f"{type(error).__name__}: {error}"}
    return {"predicted_ms": p.ms(p.total), "predicted_bound_ms": p.ms(p.total_bound)}


def measured(flatbuffer: bytes, arch: Architecture, p: Planned, bench: Bench) -> dict:
    """The int8 model run on the board's emulated twin (once per model and twin)."""
    import time

    twin = bench.twins[p.board]
    if bench.devices is None:
        return {}
    name = f"{arch.id}-seed{p.seed}-{twin}"
    kept = bench.ledger.get("measured", name)
    if kept is not None:
        return kept
    started = time.monotonic()
    m = measure_on_device(flatbuffer, name, bench.devices[twin], bench.models_dir)
    record = {"measured_latency_ms": m.latency_ms, "measured_arena_bytes": m.arena_bytes,
              "device_output": m.output, "device_error": m.error, "measure_seconds": time.monotonic() - started}
    if not m.error:  # a board that failed is tried again on the next run
        bench.ledger.put("measured", name, record)
    return record
