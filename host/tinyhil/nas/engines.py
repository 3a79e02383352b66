"""`tinyhil search ...`: the three engines behind one record of what they found.

data + LUT -> engine (MicroNAS, TinyTNAS, Tiny-TimeNAS) -> SearchRun, written
as RUN_DIR/run.json. Deployment reads nothing else, so every engine states
the same things: the data (to retrain on the same split), the architecture,
the targets it searched under, and the estimate it made with the LUT.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tinyhil import __version__
from tinyhil.errors import TinyhilError
from tinyhil.files import atomic_write, output_dir
from tinyhil.lut.table import Lut
from tinyhil.nas.constraints import Profile, profile
from tinyhil.nas.data import Splits, load
from tinyhil.spaces.arch import Architecture
from tinyhil.units import parse_count, parse_latency_ms, parse_memory_bytes

RUN_FORMAT = 1  # bumped whenever run.json changes meaning
ENGINES = ("micronas", "tinytnas", "timenas")


class RunDirError(TinyhilError):
    """A run directory that is missing, incomplete or from another tinyhil."""


@dataclass(frozen=True)
class DataSpec:
    """What `nas.data.load` needs to give the same train/validation/test split again."""

    spec: str  # an aeon name (basic_motions) or a .npz / .csv path
    window: int | None = None
    seed: int = 0
    task: str = "classification"  # decides what the targets are (never their dtype)

    def load(self) -> Splits:
        return load(self.spec, self.window, self.seed, task=self.task)


@dataclass(frozen=True)
class Targets:
    latency_ms: float | None = None
    ram_bytes: float | None = None  # peak memory: the TFLM arena
    flash_bytes: float | None = None  # the int8 model
    macs: float | None = None

    @classmethod
    def parse(cls, latency: str | None = None, memory: str | None = None, flash: str | None = None,
              macs: str | None = None) -> Targets:
        """Targets as the command line gives them (`--latency 40ms --memory 32KB --flash 64KB
        --macs 60k`), each with a unit of its kind (a MACs count may be bare)."""
        return cls(latency_ms=parse_latency_ms(latency, "--latency") if latency else None,
                   ram_bytes=parse_memory_bytes(memory, "--memory") if memory else None,
                   flash_bytes=parse_memory_bytes(flash, "--flash") if flash else None,
                   macs=parse_count(macs, "--macs") if macs else None)


def data_name(spec: str) -> str:
    """A data spec as a file-name part: basic_motions, the stem of a .npz/.csv
    path, uci_har or skodar for their folder/file forms."""
    prefix, colon, _ = spec.partition(":")
    name = prefix.lower() if colon and prefix.lower() in ("uci_har", "skodar", "skodar-no-null") else \
        (Path(spec).stem or spec)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "data"


def default_run_dir(engine: str, data: str, board: str, shape: tuple[int, int] | None = None) -> Path:
    """runs/ENGINE-DATA-BOARD[-WINDOWxCHANNELS]: what distinguishes one run from another."""
    parts = [engine, data_name(data), board] + ([f"{shape[0]}x{shape[1]}"] if shape else [])
    return Path("runs") / "-".join(parts)


@dataclass(frozen=True)
class SearchRun:
    engine: str
    board: str
    data: DataSpec
    classes: int
    input: tuple[int, int]  # window, channels
    architecture: Architecture
    targets: Targets
    estimate: Profile  # of `architecture`, with `lut`
    lut: str
    details: dict = field(default_factory=dict)  # the engine's own record

    def to_dict(self) -> dict:
        return {"run_format": RUN_FORMAT, "tinyhil": __version__, "engine": self.engine,
                "board": self.board, "data": asdict(self.data), "classes": self.classes,
                "input": list(self.input), "architecture": self.architecture.to_dict(),
                "targets": asdict(self.targets), "estimate": self.estimate.to_dict(),
                "lut": self.lut, "details": self.details}

    def write(self, out: Path) -> Path:
        """RUN_DIR/run.json, atomically (a run directory never holds half a record)."""
        return atomic_write(Path(out) / "run.json", json.dumps(self.to_dict(), indent=2, default=float))

    @classmethod
    def load(cls, run_dir: Path) -> SearchRun:
        path = Path(run_dir) / "run.json"
        if not path.is_file():
            raise RunDirError(f"{run_dir} is not a search run: no run.json (make one with "
                              "`tinyhil search micronas|tinytnas|timenas ... --out DIR`)")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RunDirError(f"{path} is not valid JSON ({error}): a damaged run directory") from error
        if not isinstance(data, dict) or data.get("run_format") != RUN_FORMAT:
            found = data.get("tinyhil", "an older version") if isinstance(data, dict) else "?"
            raise RunDirError(f"{path} was written by tinyhil {found} (run format "
                              f"{data.get('run_format') if isinstance(data, dict) else '?'}); this is "
                              f"tinyhil {__version__} (run format {RUN_FORMAT}): search again")
        missing = [k for k in ("engine", "board", "data", "classes", "input", "architecture",
                               "targets", "estimate", "lut") if k not in data]
        if missing:
            raise RunDirError(f"{path} is incomplete: no {', '.join(missing)}")
        if data["engine"] not in ENGINES:
            raise RunDirError(f"{path}: unknown engine {data['engine']!r} (known: {', '.join(ENGINES)})")
        shape = data["input"]
        if not (isinstance(shape, list) and len(shape) == 2 and all(_positive_int(v) for v in shape)):
            raise RunDirError(f"{path}: input is {shape!r}, not [window, channels] (two positive "
                              "whole numbers): a damaged run directory, search again")
        if not _positive_int(data["classes"]):
            raise RunDirError(f"{path}: classes is {data['classes']!r}, not a positive whole number")
        if not isinstance(data["board"], str):
            raise RunDirError(f"{path}: board is {data['board']!r}, not a board name")
        try:
            run = cls(data["engine"], data["board"], DataSpec(**data["data"]), data["classes"],
                      tuple(shape), Architecture.from_dict(data["architecture"]),
                      Targets(**data["targets"]), Profile(**data["estimate"]), data["lut"],
                      data.get("details", {}))
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            raise RunDirError(f"{path}: a malformed record ({error})") from error
        spec = run.data
        if not isinstance(spec.spec, str) or not (spec.window is None or _positive_int(spec.window)) \
                or not isinstance(spec.seed, int):
            raise RunDirError(f"{path}: data is {data['data']!r}, not {{spec: text, window: a positive "
                              "whole number or null, seed: a whole number}")
        for part, record, optional in (("targets", run.targets, True), ("estimate", run.estimate, False)):
            for name, value in asdict(record).items():
                if not (optional and value is None) and (
                        isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise RunDirError(f"{path}: {part}.{name} is {value!r}, not a number")
        return run


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def searched(engine: str, board: str, data: DataSpec, splits: Splits, classes: int,
             arch: Architecture, targets: Targets, lut: Lut, details: dict) -> SearchRun:
    return SearchRun(engine, board, data, classes, (splits.window, splits.channels), arch, targets,
                     profile(arch, lut), str(lut.path), details)


def micronas(data: DataSpec, splits: Splits, lut: Lut, board: str, targets: Targets, epochs: int,
             batch_size: int, out: Path, on_epoch=None) -> SearchRun:
    """Differentiable search; also writes the curves and the trained supernet's choice."""
    from tinyhil.nas.micronas.search import SearchConfig, search, write_curves
    from tinyhil.spaces import make_space

    space = make_space("micronas", splits.window, splits.channels, splits.classes)
    with output_dir(out, "the search run"):  # before the search, not after it; a refused search leaves none
        config = SearchConfig(lat_target_ms=targets.latency_ms, mem_target_bytes=targets.ram_bytes,
                              epochs=epochs, batch_size=batch_size, seed=data.seed)
        result = search(splits, space, lut, config, on_epoch=on_epoch)
        write_curves(result, out)
        details = {**asdict(config), "seconds": result.seconds, "val_accuracy": result.val_accuracy,
                   "appendix_a_bytes": result.appendix_a_bytes, "note": result.note,
                   "chosen_epoch": result.chosen_epoch, "warmup": result.warmup_epochs}
        run = searched("micronas", board, data, splits, splits.classes, result.architecture, targets,
                       lut, details)
        run.write(out)
        return run


def tinytnas(data: DataSpec, splits: Splits, lut: Lut, board: str, targets: Targets,
             budget_s: float, epochs: int, learning_rate: float, out: Path,
             luts: Path | None = None) -> SearchRun:
    """Time-bound search: the best feasible candidate the budget reached."""
    from tinyhil.nas.tinytnas import Found, TinyTNAS

    with output_dir(out, "the search run"):  # before the search, not after it; a refused search leaves none
        specs = {"ram": targets.ram_bytes, "flash": targets.flash_bytes, "macc": targets.macs,
                 "latency": targets.latency_ms}
        engine = TinyTNAS((splits.x_train, splits.y_train), (splits.x_val, splits.y_val),
                          (splits.window, splits.channels), splits.classes, learning_rate, specs,
                          board=board, lut=lut, luts=luts, log=lambda _m: None)
        best = Found(*engine.search(epochs, 1, budget_s / 60))
        if best.accuracy < 0:
            raise TinyhilError(f"TinyTNAS: no feasible candidate among {len(engine.explored_model_configs) + len(engine.infeasible_configarations)} "
                               f"explored; infeasible [k, c, -1, ram, flash, macs]: {engine.infeasible_configarations[:3]}")
        details = {"best": best, "latency_ms": engine.LATENCY, "seconds": engine.elapsed_seconds,
                   "budget_s": budget_s, "explored": engine.explored_model_configs,
                   "search_path": engine.feasible_solutions, "infeasible": engine.infeasible_configarations,
                   "measured_ops": engine.pricer.measured_ops, "val_accuracy": best.accuracy}
        arch = engine.architecture(best.k, best.c)
        run = searched("tinytnas", board, data, splits, splits.classes, arch, targets, engine.pricer.lut, details)
        run.write(out)
        return run


def timenas(data: DataSpec, splits: Splits, lut: Lut, board: str, targets: Targets, task: str,
            n_archs: int, proxy: str, top_k: int, out: Path,
            luts: Path | None = None) -> tuple[SearchRun, list[dict]]:
    """Zero-cost proxies over sampled candidates within the limits; the best first.
    The targets are bytes of the int8 model (tinyhil's estimate), hence limits='int8'."""
    import time

    from tinyhil.nas.timenas import KB, Searcher

    started = time.monotonic()
    with output_dir(out, "the search run"):  # before the search, not after it; a refused search leaves none
        if task != splits.task:
            raise TinyhilError(f"task {task} but the data were loaded for {splits.task}")
        classes = splits.classes if task == "classification" else 1
        searcher = Searcher(targets.ram_bytes / KB if targets.ram_bytes else None,
                            targets.flash_bytes / KB if targets.flash_bytes else None, task,
                            splits.x_train, splits.y_train, max_latency=targets.latency_ms,
                            max_macs=targets.macs, limits="int8", board=board, lut=lut, luts=luts, seed=data.seed,
                            log=lambda _m: None)
        found = searcher.run_search(n_archs, top_k, proxy)
        details = {"task": task, "proxy": proxy, "limits": "int8", "rejected": len(searcher.rejected),
                   "seconds": time.monotonic() - started,
                   "measured_ops": searcher.pricer.measured_ops,
                   "candidates": [{"architecture": f["architecture"].to_dict(), "score": f["score"],
                                   "profile": f["profile"]} for f in found]}
        run = searched("timenas", board, data, splits, classes, found[0]["architecture"], targets,
                       searcher.lut, details)
        run.write(out)
        return run, found
