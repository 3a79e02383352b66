"""The fault campaign: regression runs over links and boards that fail on
purpose, counting every fault injected and checking that none of them cost
or corrupted a measured row.

Faults, by kind:
  garble, drop, duplicate, stall   frames on the serial line (FaultProxy)
  board_reset                      the board's reset pressed mid-benchmark (QMP)
  qemu_killed                      the emulator killed mid-run (SIGKILL)
  host_killed                      tinyhil itself killed mid-run, then resumed
  noise                            bytes into the board's input while it measures (FaultProxy)
  impossible_baseline              inf, 0, negative or NaN baselines, a stray comma in the
                                   history: refused naming file and line, nothing measured

The baselines are the LUT's own rows and emulated counts are exact, so any
figure that differs from its baseline would be a wrong number recorded.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..device.fault_proxy import FaultPlan, FaultProxy
from .history import History
from .inventory import FarmBoard
from .nightly import regress
from .suite import Suite, Tolerance

WRONG = ("regression", "improved", "error")


@dataclass
class FaultReport:
    injected: Counter = field(default_factory=Counter)
    survived: Counter = field(default_factory=Counter)
    rounds: int = 0
    resumes: int = 0
    cases: int = 0  # cases expected over all rounds
    rows_lost: int = 0
    rows_duplicated: int = 0
    wrong: int = 0
    recoveries: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.injected.values())

    @property
    def ok(self) -> bool:
        return not (self.rows_lost or self.rows_duplicated or self.wrong or self.problems)


def check_rows(history: History, run_id: str, expected: set[str]) -> tuple[int, int, int]:
    """(lost, duplicated, wrong) of one run: each expected case has exactly one
    row per metric that is not a skip, and its figures equal the baseline."""
    frame = history.frame()
    rows = frame[(frame["run_id"] == run_id) & (frame["verdict"] != "skipped")]
    keys = rows["case"] + "@" + rows["environment"]
    per_metric = rows.assign(key=keys).groupby(["key", "metric"]).size()
    lost = len(expected - set(keys))
    duplicated = int((per_metric > 1).sum())
    wrong = int(rows["verdict"].isin(WRONG).sum())
    return lost, duplicated, wrong


def campaign(boards: list[FarmBoard], suite: Suite, baseline_dir: Path, work_dir: Path,
             target_faults: int = 200, host_kills: int = 2, seed: int = 0, timeout: float = 1.0,
             plan: FaultPlan | None = None, max_rounds: int = 100,
             log=print, impossible_baselines: int = 4) -> FaultReport:
    """Regression rounds over faulty links until `target_faults` faults were
    injected (host kills included), each round resumed until complete."""
    suite = Suite(**{**suite.__dict__, "tolerance": Tolerance(0.0, 0.0, 0)})
    report = FaultReport()
    rng = random.Random(seed)
    started = time.monotonic()
    for n in range(host_kills):
        _host_kill_round(boards, suite, baseline_dir, work_dir / f"host-kill-{n}", report, log)
    for n in range(impossible_baselines):
        _impossible_baseline_round(boards, suite, Path(baseline_dir), work_dir / f"baseline-{n}",
                                   report, rng, log)
    while report.total < target_faults and report.rounds < max_rounds:
        _faulty_round(boards, suite, baseline_dir, work_dir / f"round-{report.rounds}", report,
                      rng, timeout, plan or FaultPlan(board_faults=0.1, noise=0.2), log)
    report.wall_s = time.monotonic() - started
    return report


def board_actions(device) -> dict:
    """Reset button and plug of an emulated board, for the proxy to use mid-benchmark."""
    def reset() -> None:
        if device.qemu is None:
            raise OSError("no QEMU")
        device.qemu.system_reset()

    def kill() -> None:
        if device.qemu is None or device.qemu.process is None:
            raise OSError("no QEMU")
        os.kill(device.qemu.process.pid, signal.SIGKILL)

    return {"board_reset": reset, "qemu_killed": kill}


def _faulty_round(boards, suite, baseline_dir, out, report, rng, timeout, plan, log):
    proxies: list[FaultProxy] = []

    def open_device(farm_board: FarmBoard):
        device = farm_board.open(timeout)
        proxy = FaultProxy(FaultPlan(**{**plan.__dict__, "seed": rng.getrandbits(32)}))
        if farm_board.kind == "qemu":
            proxy.board_actions = board_actions(device)
        proxies.append(proxy)
        device.link = proxy
        return device

    injected = Counter()
    result = regress(boards, suite, baseline_dir, out, None, timeout,
                     open_device=open_device, trend=False)
    expected = _expected(result)
    resumes = 0
    while (result.rows["verdict"] == "skipped").any() and resumes < 5:
        resumes += 1  # a case the board gave up on is measured by the resumed run
        result = regress(boards, suite, baseline_dir, out, None, timeout,
                         open_device=open_device, trend=False)
    for proxy in proxies:
        proxy.close()
        injected.update(proxy.faults)
    lost, duplicated, wrong = check_rows(History(out), result.run_id, expected)
    _account(report, injected, expected, lost, duplicated, wrong, resumes)
    report.recoveries.update({step: n for (_, step), n in result.stats.recoveries.items()})
    log(f"round {report.rounds}: {sum(injected.values())} faults {dict(injected)}; "
        f"{len(expected)} cases, lost {lost}, duplicated {duplicated}, wrong {wrong}, "
        f"resumed {resumes}x")


def _expected(result) -> set[str]:
    return set(result.expected)


def _account(report, injected, expected, lost, duplicated, wrong, resumes) -> None:
    report.rounds += 1
    report.resumes += resumes
    report.cases += len(expected)
    report.injected.update(injected)
    report.rows_lost += lost
    report.rows_duplicated += duplicated
    report.wrong += wrong
    if not (lost or duplicated or wrong):
        report.survived.update(injected)


def regress_killed_after(args: list[str], history: Path, rows: int = 2, timeout: float = 600) -> bool:
    """`tinyhil regress ARGS` in a process group of its own, killed (SIGKILL, its
    QEMUs with it) once `rows` results are in its history; False if it ended first."""
    child = subprocess.Popen([sys.executable, "-m", "tinyhil", "regress", *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    killed = False
    while child.poll() is None and time.monotonic() < deadline:
        if history.is_file() and history.read_text().count("\n") >= rows + 1:  # header + rows
            os.killpg(child.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    child.wait()
    return killed


def _host_kill_round(boards, suite, baseline_dir, out, report, log) -> None:
    """`tinyhil regress` in a process of its own, killed (SIGKILL) once rows
    have arrived; the run is then resumed here and must finish the rest."""
    out.mkdir(parents=True, exist_ok=True)
    inventory = out / "boards.yaml"
    inventory.write_text(yaml.safe_dump({"boards": [
        {"name": b.name, "board": b.environment} for b in boards if b.kind == "qemu"]}))
    suite_file = out / "suite.yaml"
    suite_file.write_text(yaml.safe_dump({
        "name": suite.name, "repeats": suite.repeats, "per_image": suite.per_image,
        "lut_sample": suite.lut_sample, "seed": suite.seed, "deployments": "", "models": [],
        "tolerance": {"emulated": 0.0, "physical": 0.0, "arena_bytes": 0}}))
    args = ["--boards", str(inventory), "--suite", str(suite_file), "--baseline", str(baseline_dir),
            "--out", str(out)]
    if not regress_killed_after(args, out / "history.csv"):
        report.problems.append(f"host-kill round {out.name}: the run ended before it could be killed")
        return
    from .inventory import load_inventory
    from .suite import load_suite

    result = regress(load_inventory(inventory), load_suite(str(suite_file)), baseline_dir, out,
                     None, trend=False)
    if not result.resumed or result.already == 0:
        report.problems.append(f"host-kill round {out.name}: the next run did not resume "
                               f"(resumed={result.resumed}, already={result.already})")
    lost, duplicated, wrong = check_rows(History(out), result.run_id, _expected(result))
    _account(report, Counter(host_killed=1), _expected(result), lost, duplicated, wrong, 1)
    log(f"host killed after {result.already} cases, resumed: {result.measured_now} more; "
        f"lost {lost}, duplicated {duplicated}, wrong {wrong}")


# ---- impossible baselines ---------------------------------------------------------
IMPOSSIBLE = ("inf", "0", "-1", "nan")


def _impossible_baseline_round(boards, suite, baseline_dir: Path, out: Path, report, rng, log) -> None:
    """A baseline no measurement can have, in one of the files a verdict is taken
    against (an ok LUT row, a deployment's measured cycles, a history row with a
    stray comma): `tinyhil regress` must refuse it naming file and line, and
    neither measure nor append anything. A verdict taken instead is a wrong one."""
    import shutil

    from ..errors import TinyhilError
    from ..lut.table import read_rows

    out.mkdir(parents=True, exist_ok=True)
    baselines = out / "luts"
    shutil.copytree(baseline_dir, baselines, dirs_exist_ok=True)
    where = rng.choice(("lut", "deployment", "history"))
    value = rng.choice(IMPOSSIBLE)
    history = out / "regress"
    if where == "lut":
        env = boards[0].environment
        tables = sorted(p for p in (baselines / env).glob("*.csv") if p.name != "ops.csv")
        if not tables:
            report.problems.append(f"impossible-baseline round {out.name}: no LUT of {env} to spoil")
            return
        table = rng.choice(tables)
        rows = read_rows(table)
        keys = [k for k, s in zip(rows["key"], rows["status"]) if s == "ok"]
        key = rng.choice(keys)
        lines = table.read_text().splitlines(keepends=True)
        header = lines[0].rstrip("\n").split(",")
        line = next(n for n, text in enumerate(lines, start=1) if text.split(",", 1)[0] == key)
        cells = lines[line - 1].rstrip("\n").split(",")
        cells[header.index("cycles")] = value
        lines[line - 1] = ",".join(cells) + "\n"
        table.write_text("".join(lines))
        spoiled, expect = table, f"{table}: line {line}"
    elif where == "deployment":
        manifest = out / "runs" / "spoiled" / "deployment.json"
        manifest.parent.mkdir(parents=True)
        number = {"inf": "Infinity", "nan": "NaN"}.get(value, value)
        manifest.write_text(f'{{\n  "board": "{boards[0].environment}",\n  "measured": {{\n'
                            f'    "cycles": {number},\n    "arena_bytes": 1000\n  }}\n}}\n')
        suite = Suite(**{**suite.__dict__, "deployments": str(manifest.parent.parent)})
        spoiled, expect = manifest, f"{manifest}: line 4"
    else:
        history.mkdir(parents=True)
        spoiled = history / "history.csv"
        from .history import COLUMNS

        spoiled.write_text(",".join(COLUMNS) + "\n" + "r0,t,s,qemu-m4,m4-a,model/m.tflite,model,cycles,,"
                           "1000.0,0.0,new,,no baseline yet\n")  # one comma too many
        value, expect = "a stray comma", f"{spoiled}: line 2"
    before = spoiled.read_bytes()
    try:
        result = regress(boards, suite, baselines, history, None, trend=False)
    except TinyhilError as error:
        refused = expect in str(error) and spoiled.read_bytes() == before
        if not refused:
            report.problems.append(f"impossible-baseline round {out.name}: {where} {value} refused "
                                   f"without naming {expect}: {error}")
        _account(report, Counter(impossible_baseline=1), set(), 0, 0, 0 if refused else 1, 0)
        log(f"impossible baseline ({where}: {value}) refused: {error}")
        return
    taken = int(result.rows["verdict"].isin(["pass", "improved", "regression", "new"]).sum())
    _account(report, Counter(impossible_baseline=1), set(), 0, 0, max(taken, 1), 0)
    report.problems.append(f"impossible-baseline round {out.name}: {where} {value} was taken "
                           f"({dict(result.verdicts)})")
    log(f"impossible baseline ({where}: {value}) NOT refused: {dict(result.verdicts)}")
