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
  qemu_killed_idle                 the emulator killed between two requests
  qemu_killed_at_boot              the emulator killed before/while it opens its pty
  image_corrupted                  a cached firmware image damaged before a round
  ops_csv_truncated                a line in the middle of ops.csv cut short, then
                                   characterize run again over it

The baselines are the LUT's own rows and emulated counts are exact, so any
figure that differs from its baseline would be a wrong number recorded.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tinyhil.device.fault_proxy import FaultPlan, FaultProxy
from tinyhil.execute.inventory import FarmBoard
from tinyhil.regress.history import History
from tinyhil.regress.nightly import regress
from tinyhil.regress.suite import Suite, Tolerance

WRONG = ("regression", "improved", "error")
DEFAULT_PLAN = FaultPlan(board_faults=0.1, idle_faults=0.03, boot_faults=0.1, noise=0.2)


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
             log=print, impossible_baselines: int = 4, truncations: int = 1,
             corrupt_images: bool = True) -> FaultReport:
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
    for n in range(truncations):
        _guarded(report, log, "ops_csv_truncated", _truncated_store_round, boards[0].config,
                 Path(baseline_dir), work_dir / f"truncated-{n}", report, rng, log)
    while report.total < target_faults and report.rounds < max_rounds:
        corrupted = corrupt_images and _guarded(report, log, "image_corrupted", _corrupt_cached_image,
                                                boards, suite, Path(baseline_dir), report, rng)
        before = (report.rows_lost, report.rows_duplicated, report.wrong)
        _faulty_round(boards, suite, baseline_dir, work_dir / f"round-{report.rounds}", report,
                      rng, timeout, plan or DEFAULT_PLAN, log)
        if corrupted:
            _check_rebuilt(corrupted, before == (report.rows_lost, report.rows_duplicated,
                                                 report.wrong), report, log)
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

    return {"board_reset": reset, "qemu_killed": kill, "qemu_killed_idle": kill}


def _faulty_round(boards, suite, baseline_dir, out, report, rng, timeout, plan, log):
    proxies: list[FaultProxy] = []

    def open_device(farm_board: FarmBoard):
        device = farm_board.open(timeout)
        proxy = FaultProxy(FaultPlan(**{**plan.__dict__, "seed": rng.getrandbits(32)}))
        if farm_board.kind == "qemu":
            proxy.board_actions = board_actions(device)
            kill_at_boot(device, proxy, random.Random(proxy.plan.seed))
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
    args = ["--inventory", str(inventory), "--suite", str(suite_file), "--baseline", str(baseline_dir),
            "--out", str(out)]
    if not regress_killed_after(args, out / "history.csv"):
        report.problems.append(f"host-kill round {out.name}: the run ended before it could be killed")
        return
    from tinyhil.execute.inventory import load_inventory
    from tinyhil.regress.suite import load_suite

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

    from tinyhil.errors import TinyhilError
    from tinyhil.lut.table import read_rows

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
        from tinyhil.regress.history import COLUMNS

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


# ---- kills at boot, corrupted caches, truncated stores ---------------------------

def kill_at_boot(device, proxy: FaultProxy, rng: random.Random) -> None:
    """Each power-on of this emulated board is, with the plan's `boot_faults`
    chance, cut short: QEMU is killed a few milliseconds after it started,
    before or while it opens its pty (counted as qemu_killed_at_boot)."""
    power_on = device._power_on

    def killing_power_on() -> str:
        if rng.random() < proxy.plan.boot_faults:
            threading.Thread(target=_kill_when_started, args=(device, proxy, rng.uniform(0, 0.05)),
                             daemon=True).start()
        return power_on()

    device._power_on = killing_power_on


def _kill_when_started(device, proxy: FaultProxy, delay: float) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        qemu = device.qemu
        if qemu is not None and qemu.process is not None:
            time.sleep(delay)
            try:
                os.kill(qemu.process.pid, signal.SIGKILL)
            except (ProcessLookupError, AttributeError):  # already gone: no fault made
                return
            proxy.count("qemu_killed_at_boot")
            return
        time.sleep(0.001)


def _guarded(report: FaultReport, log, kind: str, step, *args):
    """A campaign step that must not end the campaign: anything it raises is a problem."""
    try:
        return step(*args)
    except Exception as error:  # noqa: BLE001 - a traceback is what the campaign looks for
        report.problems.append(f"{kind}: {type(error).__name__}: {error}")
        log(f"{kind}: {type(error).__name__}: {error}\n{traceback.format_exc()}")


def _round_images(boards, suite, baseline_dir: Path) -> list[Path]:
    """The cached ELFs of the images the next round runs (one per job)."""
    from tinyhil.image.firmware import build_image
    from tinyhil.measure.runner import ImageRunner
    from tinyhil.regress.farm import make_jobs
    from tinyhil.regress.nightly import lane_cases

    cases = lane_cases(boards, suite, baseline_dir)
    configs = {b.lane: b.config for b in boards}
    elfs = []
    for lane, jobs in make_jobs(cases, suite.per_image).items():
        for job in jobs:
            runner = ImageRunner(configs[lane], max_per_image=len(job.cases))
            image = build_image(runner.image_spec([c.item for c in job.cases]), configs[lane])
            elfs.append(image.elf)
    return elfs


def _corrupt_cached_image(boards, suite, baseline_dir: Path, report: FaultReport,
                          rng: random.Random) -> Path | None:
    """Damages one cached image the next round runs (64 random bytes in its
    middle): the round must notice it and build it again, never boot it."""
    from tinyhil.files import checksum_problem

    elf = rng.choice(_round_images(boards, suite, baseline_dir))
    data = bytearray(elf.read_bytes())
    at = rng.randrange(len(data) // 4, 3 * len(data) // 4)
    data[at:at + 64] = bytes(rng.getrandbits(8) for _ in range(64))
    elf.write_bytes(bytes(data))
    report.injected["image_corrupted"] += 1
    if checksum_problem(elf) is None:
        report.problems.append(f"image_corrupted: damage to {elf} not noticed")
    return elf


def _check_rebuilt(elf: Path, round_clean: bool, report: FaultReport, log) -> None:
    from tinyhil.files import checksum_problem

    rebuilt = elf.is_file() and checksum_problem(elf) is None
    if not rebuilt:
        report.problems.append(f"image_corrupted: {elf} was not built again")
    elif round_clean:
        report.survived["image_corrupted"] += 1
    log(f"corrupted cached image {elf}: {'built again' if rebuilt else 'NOT built again'}")


def _truncated_store_round(config, baseline_dir: Path, out: Path, report: FaultReport,
                           rng: random.Random, log, ops: int = 6) -> None:
    """A store of `ops` of the baseline's good rows, one of them cut short in
    the middle of the file; characterize then runs over it. The cut op must be
    named and measured again to the baseline's figures, the others kept as
    they were, none twice."""
    from tinyhil.lut.table import meta_path, read_rows, row_op, scan_rows
    from tinyhil.measure.characterize import Characterizer
    from tinyhil.verdict import usable

    source = Path(baseline_dir) / config.name / "ops.csv"
    baseline = read_rows(source)
    lines = {line.split(",", 1)[0]: line for line in source.read_text().splitlines(keepends=True)[1:]}
    good = sorted(k for k, status in zip(baseline["key"], baseline["status"]) if usable(status))
    keys = rng.sample(good, ops)
    store = out / config.name / "ops.csv"
    store.parent.mkdir(parents=True, exist_ok=True)
    meta_path(store).write_text(meta_path(source).read_text())
    victim = rng.randrange(1, ops - 1)  # never the first or last line
    cut = lines[keys[victim]]
    status_at = cut.rstrip("\n").rindex(",")
    cut = cut[:rng.randrange(len(keys[victim]) + 1, status_at)] + "\n"  # numbers cut short
    store.write_text(source.read_text().splitlines(keepends=True)[0]
                     + "".join(cut if i == victim else lines[k] for i, k in enumerate(keys)))
    report.injected["ops_csv_truncated"] += 1

    characterizer = Characterizer(config, out, repeats=2)
    named = [p for p in characterizer.store_problems([]) if f"line {victim + 2}:" in p]
    characterizer.measure_ops([row_op(baseline.loc[k]) for k in keys])
    scanned = scan_rows(store, allow_torn_tail=True)
    lost = sum(k not in scanned.frame.index or not usable(scanned.frame.at[k, "status"]) for k in keys)
    kept_lines = [line.split(",", 1)[0] for line in scanned.lines[1:]]
    duplicated = sum(kept_lines.count(k) > 1 for k in keys)
    measured = scanned.frame.loc[[k for k in keys if k in scanned.frame.index]]
    wrong = sum(measured.at[k, column] != baseline.at[k, column] for k in measured.index
                for column in ("cycles", "kernel_cycles", "arena_bytes"))
    if not named:
        report.problems.append(f"ops_csv_truncated: line {victim + 2} of {store} was not reported")
    if scanned.malformed:
        report.problems.append(f"ops_csv_truncated: {store} still has malformed lines")
    report.rows_lost += lost
    report.rows_duplicated += duplicated
    report.wrong += wrong
    report.cases += ops
    if not (lost or duplicated or wrong or not named):
        report.survived["ops_csv_truncated"] += 1
    log(f"ops.csv line {victim + 2} ({keys[victim]}) cut short: reported {bool(named)}, measured "
        f"again; lost {lost}, duplicated {duplicated}, wrong {wrong}")
