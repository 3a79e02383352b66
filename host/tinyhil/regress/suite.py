"""A regression suite: what to re-measure on each board, and its baselines.

    name: nightly
    repeats: 3
    per_image: 8            # cases per firmware image (one job of the work queue)
    lut_sample: 6           # rows re-measured per space LUT of each board
    seed: 0                 # which rows (same seed, same rows: a trend per row)
    deployments: runs       # every <dir>/**/deployment.json (its `measured` is the baseline)
    models: []              # more .tflite files; baseline: their last good figure in the history
    tolerance:              # allowed relative change of cycles, per kind of board
      emulated: 0.0         # instruction counts are exact
      physical: 0.03
      arena_bytes: 0        # allowed change in bytes
      deploy: 0.005         # cycles of deployments (baseline measured on a data-set input)

Suites live in `suites/<name>.yaml` of the project, or are given as a path.
"""
from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyhil.board_catalog import load_boards
from tinyhil.errors import TinyhilError
from tinyhil.execute.inventory import read_yaml
from tinyhil.files import read_text
from tinyhil.lut.numbers import problem
from tinyhil.lut.table import Lut, LutError
from tinyhil.measure.runner import Item
from tinyhil.measure.verify import staleness
from tinyhil.models.single_op import generate_models, op_seed
from tinyhil.models.tflite_model import TfliteModel
from tinyhil.project import project_dir
from tinyhil.spaces import make_space
from tinyhil.verdict import usable

SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SuiteError(TinyhilError):
    """A suite file that is missing or malformed, or a baseline that cannot be read."""


@dataclass(frozen=True)
class Tolerance:
    emulated: float = 0.0
    physical: float = 0.03
    arena_bytes: int = 0
    # Deployments were measured on a data-set input, the suite feeds a seeded
    # one: a few data-dependent instructions may differ even on an emulator.
    deploy: float | None = None

    def cycles(self, emulated: bool, kind: str = "lut") -> float:
        if kind == "deploy" and self.deploy is not None:
            return self.deploy
        return self.emulated if emulated else self.physical


@dataclass(frozen=True)
class Suite:
    name: str
    repeats: int = 3
    per_image: int = 8
    lut_sample: int = 6
    seed: int = 0
    deployments: str = "runs"
    models: tuple[str, ...] = ()
    tolerance: Tolerance = field(default_factory=Tolerance)
    source: str = ""


@dataclass(frozen=True)
class Baseline:
    cycles: float
    arena_bytes: int | None
    source: str  # where the figure comes from (a LUT, a deployment, the history)


@dataclass(frozen=True)
class Case:
    """One benchmark of the suite on one board environment."""

    case_id: str  # lut/<table>/<op key> | deploy/<run dir> | model/<file>
    kind: str  # lut | deploy | model
    environment: str
    item: Item
    baseline: Baseline | None
    lane: str = ""  # the boards that measure it (see FarmBoard.lane); environment by default

    @property
    def key(self) -> str:
        return f"{self.case_id}@{self.lane or self.environment}"


def _number(data: dict, key: str, default, kind, low, high, where: str):
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
            (kind is int and value != int(value)) or not low <= value <= high:
        raise SuiteError(f"{where}: {key} must be a {kind.__name__} in [{low}, {high}], got {value!r}")
    return kind(value)


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not path.suffix:
        if not SUITE_NAME.match(name_or_path):
            raise SuiteError(f"suite name {name_or_path!r} must be letters, digits, '.', '_', '-'")
        path = project_dir() / "suites" / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (project_dir() / "suites").glob("*.yaml"))
        raise SuiteError(f"{path}: no such suite (known: {', '.join(known) or 'none'})")
    return parse_suite(read_yaml(path, SuiteError), str(path))


def parse_suite(data, source: str) -> Suite:
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: expected a mapping")
    known = {"name", "repeats", "per_image", "lut_sample", "seed", "deployments", "models", "tolerance"}
    if set(data) - known:
        raise SuiteError(f"{source}: unknown key(s) {', '.join(sorted(set(data) - known))}")
    name = str(data.get("name", Path(source).stem))
    if not SUITE_NAME.match(name):
        raise SuiteError(f"{source}: name {name!r} must be letters, digits, '.', '_', '-'")
    tol = data.get("tolerance", {}) or {}
    if not isinstance(tol, dict) or set(tol) - {"emulated", "physical", "arena_bytes", "deploy"}:
        raise SuiteError(f"{source}: tolerance takes emulated, physical, arena_bytes and deploy")
    models = data.get("models", []) or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise SuiteError(f"{source}: models must be a list of .tflite paths")
    deployments = str(data.get("deployments", "runs") or "")
    if deployments:
        inside_project(deployments, f"{source}: deployments")
    for model in models:
        inside_project(model, f"{source}: models")
    return Suite(
        name=name,
        repeats=_number(data, "repeats", 3, int, 1, 1000, source),
        per_image=_number(data, "per_image", 8, int, 1, 100, source),
        lut_sample=_number(data, "lut_sample", 6, int, 0, 100000, source),
        seed=_number(data, "seed", 0, int, 0, 2**32 - 1, source),
        deployments=deployments,
        models=tuple(models),
        tolerance=Tolerance(
            emulated=_number(tol, "emulated", 0.0, float, 0.0, 10.0, f"{source}: tolerance"),
            physical=_number(tol, "physical", 0.03, float, 0.0, 10.0, f"{source}: tolerance"),
            arena_bytes=_number(tol, "arena_bytes", 0, int, 0, 2**31, f"{source}: tolerance"),
            deploy=None if tol.get("deploy") is None else
            _number(tol, "deploy", 0.0, float, 0.0, 10.0, f"{source}: tolerance")),
        source=source,
    )


def baseline_problem(metric: str, value, clock_hz: int | None) -> str:
    """What makes a baseline figure impossible ('' if nothing), by the rule of
    the LUT column it is (lut/numbers.py): cycles a finite count above 0 and
    below a minute of the board's clock, an arena a whole count of 0 or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return f"{metric} {value!r} is not a number"
    return problem(metric, value, clock_hz)


def check_baseline(cycles, arena_bytes, where, clock_hz: int | None) -> None:
    """A baseline no measurement can have would turn every verdict into a pass
    or an 'improvement': refused, `where(metric)` naming its file and line."""
    for metric, value in (("cycles", cycles), ("arena_bytes", arena_bytes)):
        why = baseline_problem(metric, value, clock_hz)
        if why:
            raise SuiteError(f"{where(metric)}: impossible baseline: {why}; fix the file or measure it again")


def _json_line(text: str, *keys: str) -> int:
    """The line where the last of `keys` (nested, in order) appears in a JSON text."""
    position = 0
    for key in keys:
        found = text.find(f'"{key}"', position)
        if found < 0:
            return 0
        position = found
    return text.count("\n", 0, position) + 1


def inside_project(path: str, where: str) -> Path:
    """A path a suite file names, relative to the project and inside it once resolved
    (symlinks too): a suite from a repository reads nothing else of the machine. Paths
    elsewhere are given on the command line (`tinyhil regress --deployments/--model`)."""
    root = project_dir().resolve()
    if Path(path).is_absolute():
        raise SuiteError(f"{where}: {path!r} is an absolute path; suite files name paths inside the "
                         f"project {root} (pass others with --deployments / --model)")
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise SuiteError(f"{where}: {path!r} leads outside the project {root} (to {resolved}); "
                         "suite files name paths inside it (pass others with --deployments / --model)")
    return resolved


def item_name(case_id: str) -> str:
    # Benchmark names end up in C sources: only [a-z0-9-] from a hash
    return f"case-{zlib.crc32(case_id.encode()):08x}"


def lut_cases(suite: Suite, environment: str, baseline_dir: Path) -> list[Case]:
    """A seeded sample of the good rows of each space LUT of this board."""
    board_dir = Path(baseline_dir) / environment
    if suite.lut_sample == 0 or not board_dir.is_dir():
        return []
    chosen = {}  # op key -> (table, op, row)
    for path in sorted(board_dir.glob("*.csv")):
        if path.name == "ops.csv":
            continue
        try:
            lut = Lut.load(path, board=environment)
        except LutError as error:
            raise SuiteError(f"baseline {error}") from error
        meta = lut.meta
        stale = staleness(path, meta)
        if stale:  # a verdict against another firmware's counts would be a false regression
            raise SuiteError(f"baseline {stale}")
        if not meta.space or not meta.input or "classes" not in meta.extra:
            raise SuiteError(f"baseline {path}: metadata lacks space/input/classes; "
                             "rewrite it with `tinyhil characterize`")
        window, channels = (int(x) for x in meta.input.split("x"))
        ops = {op.key: op for op in make_space(meta.space, window, channels,
                                               int(meta.extra["classes"])).op_configs()}
        # every number of the table was checked as it was read (lut/numbers.py)
        good = sorted(k for k, s in zip(lut.rows["key"], lut.rows["status"])
                      if usable(s) and k in ops and k not in chosen)
        rng = np.random.default_rng([suite.seed, zlib.crc32(path.name.encode())])
        for key in rng.choice(good, size=min(suite.lut_sample, len(good)), replace=False):
            chosen[str(key)] = (path.stem, ops[str(key)], lut.rows.loc[str(key)])
    if not chosen:
        return []
    models = generate_models([op for _, op, _ in chosen.values()])
    cases = []
    for key, (table, op, row) in chosen.items():
        case_id = f"lut/{table}/{key}"
        model = TfliteModel.from_bytes(models[key].read_bytes(), key)
        baseline = Baseline(float(row["cycles"]), int(row["arena_bytes"]), f"{table}.csv")
        cases.append(Case(case_id, "lut", environment, Item(item_name(case_id), model,
                                                            op_seed(op), case_id), baseline))
    return cases


def deployment_cases(suite: Suite, environment: str, root: Path) -> list[Case]:
    """Every deployed run for this board: `deployment.json` + `model_int8.tflite`."""
    if not suite.deployments:
        return []
    base = (root / suite.deployments) if not Path(suite.deployments).is_absolute() \
        else Path(suite.deployments)
    cases = []
    clocks = {name: config.clock_hz for name, config in load_boards().items()}
    for manifest in sorted(base.glob("**/deployment.json")) if base.is_dir() else []:
        try:
            text = read_text(manifest, SuiteError)
            data = json.loads(text)
            board = data["board"]
            measured = data["measured"]
            cycles, arena = measured["cycles"], measured["arena_bytes"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise SuiteError(f"{manifest}: not a deployment record ({error!r}); it needs "
                             '{"board", "measured": {"cycles", "arena_bytes", ...}}') from error
        check_baseline(cycles, arena, lambda metric: f"{manifest}: line {_json_line(text, 'measured', metric)}",
                       clocks.get(board) if isinstance(board, str) else None)
        cycles, arena = float(cycles), int(arena)
        if board != environment:
            continue
        model_path = manifest.parent / "model_int8.tflite"
        run_dir = manifest.parent.relative_to(base) if manifest.parent != base else Path(".")
        case_id = f"deploy/{run_dir.as_posix()}"
        model = TfliteModel.load(model_path)
        seed = int(data.get("seed", 0))
        cases.append(Case(case_id, "deploy", environment,
                          Item(item_name(case_id), model, seed, case_id),
                          Baseline(cycles, arena, str(manifest))))
    return cases


def model_cases(suite: Suite, environment: str, root: Path, history_baseline) -> list[Case]:
    cases = []
    for name in suite.models:
        path = Path(name) if Path(name).is_absolute() else root / name
        case_id = f"model/{Path(name).as_posix()}"
        model = TfliteModel.load(path)
        cases.append(Case(case_id, "model", environment, Item(item_name(case_id), model, 0, case_id),
                          history_baseline(environment, case_id)))
    return cases


def collect_cases(suite: Suite, environments: list[str], baseline_dir: Path,
                  history_baseline=lambda env, case_id: None, root: Path | None = None
                  ) -> dict[str, list[Case]]:
    root = root or project_dir()
    return {env: lut_cases(suite, env, baseline_dir) + deployment_cases(suite, env, root)
            + model_cases(suite, env, root, history_baseline) for env in environments}
