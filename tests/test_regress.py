"""tinyhil regress: inventory and suite files, verdicts, JUnit XML, history,
and (device) a nightly run on a farm of three emulated boards."""
import json
import shutil
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import ROOT, make_int8_model
from tinyhil.benchmarks.faults import regress_killed_after
from tinyhil.cli import app
from tinyhil.execute.inventory import InventoryError, parse_inventory
from tinyhil.measure.runner import Item, Measurement
from tinyhil.regress.history import History, Row
from tinyhil.regress.nightly import judge
from tinyhil.regress.suite import Baseline, Case, SuiteError, parse_suite
from tinyhil.report.junit import JunitError, validate_junit


# ---- files a user writes ------------------------------------------------------
@pytest.mark.parametrize("data, message", [
    ({}, "non-empty list `boards:`"),
    ({"boards": [{"name": "a", "board": "qemu-m7"}]}, "unknown board 'qemu-m7'"),
    ({"boards": [{"name": "a", "board": "qemu-m4"}, {"name": "a", "board": "qemu-m4"}]}, "appears twice"),
    ({"boards": [{"name": "a;rm -rf", "board": "qemu-m4"}]}, "name 'a;rm -rf'"),
    ({"boards": [{"name": "a", "board": "nucleo_f446re"}]}, "needs `port:`"),
    ({"boards": [{"name": "a", "board": "nucleo_f446re", "port": "/dev/x", "reset": "kick"}]},
     "reset 'kick'"),
    ({"boards": [{"name": "a", "board": "qemu-m4", "labgrid": {"place": "p"}}]}, "coordinator"),
    ({"boards": [{"name": "a", "board": "qemu-m4", "colour": "red"}]}, "unknown key"),
])
def test_inventory_errors_name_the_problem(data, message):
    with pytest.raises(InventoryError, match=message.replace("(", r"\(").replace("`", ".")):
        parse_inventory(data, "lab.yaml")


def test_inventory_kinds():
    boards = parse_inventory({"boards": [
        {"name": "m4-a", "board": "qemu-m4"},
        {"name": "f446", "board": "nucleo_f446re", "port": "/dev/ttyACM0", "reset": "dtr"},
        {"name": "remote", "board": "qemu-m4",
         "labgrid": {"coordinator": "127.0.0.1:20408", "place": "tinyhil-m4"}}]})
    assert [(b.name, b.kind, b.environment) for b in boards] == [
        ("m4-a", "qemu", "qemu-m4"), ("f446", "serial", "nucleo_f446re"), ("remote", "labgrid", "qemu-m4")]
    assert boards[1].reset == "dtr" and boards[2].labgrid.place == "tinyhil-m4"


def test_shipped_inventory_and_suite_load():
    from tinyhil.execute.inventory import load_inventory
    from tinyhil.regress.suite import load_suite

    assert len(load_inventory(ROOT / "boards/lab.yaml")) >= 2
    assert load_suite("nightly").tolerance.emulated == 0.0


@pytest.mark.parametrize("data, message", [
    ({"repeats": 0}, "repeats must be a int in"),
    ({"repeats": "3; DROP"}, "repeats must be"),
    ({"tolerance": {"emulated": -1}}, "emulated must be"),
    ({"tolerance": {"cpu": 1}}, "tolerance takes"),
    ({"models": "a.tflite"}, "models must be a list"),
    ({"name": "../etc"}, "name '../etc'"),
    ({"extra": 1}, "unknown key"),
])
def test_suite_errors_name_the_problem(data, message):
    with pytest.raises(SuiteError, match=message.replace("(", r"\(")):
        parse_suite(data, "nightly.yaml")


def test_suite_file_that_is_not_yaml(tmp_path):
    from tinyhil.regress.suite import load_suite

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(str(bad))
    with pytest.raises(SuiteError, match="no such suite"):
        load_suite("no-such-suite")


# ---- verdicts ------------------------------------------------------------------
def _case(cycles, arena=1000, kind="lut"):
    return Case("lut/t/op", kind, "qemu-m4", Item("case-1", None, 0),
                None if cycles is None else Baseline(cycles, arena, "t.csv"))


def _measured(cycles, arena=1000, status="ok"):
    return Measurement(Item("case-1", None, 0), status, cycles=(cycles,) * 3, arena_used=arena)


def test_judge():
    suite = parse_suite({"tolerance": {"emulated": 0.0, "physical": 0.05, "deploy": 0.01}}, "s")
    verdicts = lambda rows: [(r[0], r[4]) for r in rows]  # noqa: E731
    assert verdicts(judge(_case(100), _measured(100), suite, True)) == [
        ("cycles", "pass"), ("arena_bytes", "pass")]
    assert verdicts(judge(_case(100), _measured(101), suite, True))[0] == ("cycles", "regression")
    assert verdicts(judge(_case(100), _measured(99), suite, True))[0] == ("cycles", "improved")
    assert verdicts(judge(_case(100), _measured(104), suite, False))[0] == ("cycles", "pass")
    assert verdicts(judge(_case(100, kind="deploy"), _measured(100.5), suite, True))[0] == ("cycles", "pass")
    assert verdicts(judge(_case(100), _measured(100, 1001), suite, True))[1] == ("arena_bytes", "regression")
    assert verdicts(judge(_case(None), _measured(100), suite, True)) == [
        ("cycles", "new"), ("arena_bytes", "new")]
    wrong = Measurement(Item("case-1", None, 0), "mismatch: outputs differ")
    assert verdicts(judge(_case(100), wrong, suite, True)) == [("output", "error")]
    gave_up = Measurement(Item("case-1", None, 0), "skipped: board gave up")
    assert verdicts(judge(_case(100), gave_up, suite, True)) == [("cycles", "skipped")]


def test_history_survives_a_torn_append(tmp_path):
    history = History(tmp_path)
    row = Row("r1", "t", "s", "qemu-m4", "m4-a", "lut/x", "lut", "cycles", 1.0, 1.0, 0.0, "pass", "d")
    with history.exclusive():
        history.append([row])
    with open(history.path, "a") as f:
        f.write("r1,t,s,qemu-m4,m4-a,lut/y,lut,cyc")  # killed mid-write
    assert len(history.frame()) == 1
    with history.exclusive():
        history.append([Row(**{**row.__dict__, "case": "lut/z"})])
    assert list(history.frame()["case"]) == ["lut/x", "lut/z"]


def test_junit_schema_rejects_what_ci_would(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite name="s" tests="x" failures="0" errors="0"/></testsuites>')
    with pytest.raises(JunitError, match="not valid JUnit XML"):
        validate_junit(bad)


# ---- on the emulated farm ------------------------------------------------------------
@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    """Two of the project's LUTs (one per board) as the baselines."""
    out = tmp_path_factory.mktemp("luts")
    for board, table in (("qemu-m4", "micronas-128x9-c6"), ("qemu-m33", "tinytnas-187x1-c5")):
        (out / board).mkdir()
        for suffix in (".csv", ".meta.json"):
            shutil.copy(ROOT / "luts" / board / f"{table}{suffix}", out / board / f"{table}{suffix}")
    return out


@pytest.fixture(scope="module")
def tiny_model(models_dir):
    import tensorflow as tf

    L = tf.keras.layers
    return make_int8_model(models_dir / "regress_tiny.tflite",
                           [L.Conv1D(4, 3, activation="relu"), L.Flatten(), L.Dense(3)], (16, 2))


def write_farm(tmp_path, baseline_dir, tiny_model, boards):
    runs = tmp_path / "runs" / "bad-deploy"
    runs.mkdir(parents=True)
    shutil.copy(tiny_model, runs / "model_int8.tflite")
    # a deployment whose recorded figures are far better than the truth: a regression
    (runs / "deployment.json").write_text(json.dumps(
        {"board": "qemu-m4", "measured": {"cycles": 10.0, "arena_bytes": 10, "flash_bytes": 1}}))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "nightly-test", "repeats": 2, "per_image": 2,
                                     "lut_sample": 3, "deployments": ""}))
    inventory = tmp_path / "lab.yaml"
    inventory.write_text(yaml.safe_dump({"boards": boards}))
    # outside the project: given on the command line, as a suite file may not name them
    paths = ["--deployments", str(tmp_path / "runs"), "--model", str(tiny_model)]
    return inventory, suite, paths


FARM = [{"name": "m4-a", "board": "qemu-m4"}, {"name": "m4-b", "board": "qemu-m4"},
        {"name": "m33-a", "board": "qemu-m33"}]


@pytest.mark.device
@pytest.mark.slow
def test_nightly_on_three_emulated_boards(tmp_path, baseline_dir, tiny_model):
    inventory, suite, paths = write_farm(tmp_path, baseline_dir, tiny_model, FARM)
    out = tmp_path / "out"
    args = ["regress", "--inventory", str(inventory), "--suite", str(suite), *paths,
            "--baseline", str(baseline_dir), "--out", str(out), "--junit", str(out / "junit.xml")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 1, first.output  # the bad deployment is a regression
    history = History(out).frame()
    # every case once per metric: 3 LUT rows per board, the model on both, the deployment on m4
    cases = history.groupby(["environment", "case", "metric"]).size()
    assert (cases == 1).all()
    per_env = history.groupby("environment")["case"].nunique().to_dict()
    assert per_env == {"qemu-m4": 3 + 1 + 1, "qemu-m33": 3 + 1}
    lut_rows = history[history["kind"] == "lut"]
    assert set(lut_rows["verdict"]) == {"pass"}  # exact counts equal the LUT's
    assert set(history[history["kind"] == "model"]["verdict"]) == {"new"}
    bad = history[(history["kind"] == "deploy") & (history["metric"] == "cycles")].iloc[0]
    assert bad["verdict"] == "regression" and bad["measured"] > 100 * bad["baseline"]
    # both qemu-m4 boards took work from the shared queue
    assert {"m4-a", "m4-b", "m33-a"} == set(history["farm_board"])

    validate_junit(out / "junit.xml")
    root = ET.parse(out / "junit.xml").getroot()
    assert root.get("tests") == "9" and root.get("failures") == "1" and root.get("errors") == "0"
    (failure,) = root.iter("failure")
    assert "deploy/bad-deploy" in failure.get("message") or "cycles" in failure.get("message")

    # the next night: the model has a baseline now (its first figures), still exact
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 1
    history = History(out).frame()
    assert history["run_id"].nunique() == 2
    latest = history[history["run_id"] == history["run_id"].iloc[-1]]
    assert set(latest[latest["kind"] == "model"]["verdict"]) == {"pass"}
    page = (out / "trend.html").read_text()
    assert page.count('<div class="trend') == 4  # cycles and arena, per board environment
    # the bad deployment's cycles and arena, both on qemu-m4
    assert page.count("has-regression") == 2 and "deploy/bad-deploy" in page


@pytest.mark.device
def test_host_killed_mid_run_then_resumed(tmp_path, baseline_dir, tiny_model):
    inventory, suite, paths = write_farm(tmp_path, baseline_dir, tiny_model, FARM[:1])
    out = tmp_path / "out"
    args = ["--inventory", str(inventory), "--suite", str(suite), *paths, "--baseline", str(baseline_dir),
            "--out", str(out)]
    assert regress_killed_after(args, out / "history.csv", timeout=300), \
        "the run ended before it could be killed"
    before = History(out).frame()
    assert 0 < before["case"].nunique() < 5

    resumed = CliRunner().invoke(app, ["regress", *args])
    assert "(resumed)" in resumed.output and resumed.exit_code == 1
    after = History(out).frame()
    assert after["run_id"].nunique() == 1
    assert (after.groupby(["case", "metric"]).size() == 1).all()  # nothing twice
    assert after["case"].nunique() == 5  # nothing lost
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)  # history only grows


def test_one_writer_per_history(tmp_path):
    from tinyhil.regress.history import HistoryError

    with History(tmp_path).exclusive():
        with pytest.raises(HistoryError, match="being written by another"):
            with History(tmp_path).exclusive():
                pass


@pytest.mark.device
def test_a_worker_that_breaks_loses_nothing(tmp_path, baseline_dir, tiny_model):
    """A board whose opening raises something unforeseen: its job is skipped
    and reported, the others go on, and the next run measures the rest."""
    from tinyhil.execute.inventory import load_inventory
    from tinyhil.regress.nightly import regress
    from tinyhil.regress.suite import load_suite

    inventory, suite_file, _ = write_farm(tmp_path, baseline_dir, tiny_model, FARM[:2])
    boards, suite = load_inventory(inventory), load_suite(str(suite_file))
    broken = []

    def flaky(board):
        if board.name == "m4-b" and not broken:
            broken.append(board.name)
            raise RuntimeError("USB hub reset")
        return board.open(10.0)

    first = regress(boards, suite, baseline_dir, tmp_path / "out", open_device=flaky, trend=False)
    assert broken and first.failed and first.missing
    assert any("RuntimeError: USB hub reset" in e for e in first.stats.errors)
    assert set(first.rows.loc[first.rows["verdict"] == "skipped", "farm_board"]) == {"m4-b"}
    second = regress(boards, suite, baseline_dir, tmp_path / "out", trend=False)
    assert second.resumed and second.run_id == first.run_id and not second.missing
    assert second.measured_now == len(first.missing) and not second.failed
    assert set(second.rows["verdict"]) == {"pass"}


def test_jobs_cut_the_work_evenly_longest_first():
    from tinyhil.regress.farm import make_jobs

    costs = [1000, 10, 10, 10, 10, 10, 10, 10, 10, 10, 400, 300, 5, None]
    cases = [Case(f"lut/t/{n}", "lut", "qemu-m4", Item(f"case-{n}", None, 0),
                  None if c is None else Baseline(c, 0, "t.csv")) for n, c in enumerate(costs)]
    jobs = make_jobs({"qemu-m4": cases}, per_image=4)["qemu-m4"]
    flat = [c.case_id for job in jobs for c in job.cases]
    assert sorted(flat) == sorted(c.case_id for c in cases)  # each case exactly once
    assert all(len(job.cases) <= 4 for job in jobs)
    assert [c.case_id for c in jobs[0].cases] == ["lut/t/0"]  # the heaviest alone, first
    assert jobs[1].cases[0].case_id == "lut/t/10"
    pinned = make_jobs({"qemu-m4@r": cases}, per_image=4, pinned={"qemu-m4@r": 1})
    assert len(pinned["qemu-m4@r"]) == 1  # one place: its whole suite in one job
    shared = make_jobs({"qemu-m4@board=qemu-m4": cases}, per_image=4, pinned={"qemu-m4@board=qemu-m4": 2})
    assert len(shared["qemu-m4@board=qemu-m4"]) == len(jobs)  # two places of one reservation share the work


# ---- impossible baselines and corrupt histories: errors naming file and line ------
def _lut_baseline(tmp_path, line: int, column: str, value: str):
    """The project's timenas qemu-m4 table as a baseline, one cell of `line` replaced."""
    board = tmp_path / "luts" / "qemu-m4"
    board.mkdir(parents=True)
    table = "timenas-100x6-c4"
    shutil.copy(ROOT / "luts" / "qemu-m4" / f"{table}.meta.json", board / f"{table}.meta.json")
    lines = (ROOT / "luts" / "qemu-m4" / f"{table}.csv").read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[line - 1].rstrip("\n").split(",")
    assert cells[header.index("status")] == "ok"
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells) + "\n"
    (board / f"{table}.csv").write_text("".join(lines))
    return tmp_path / "luts", board / f"{table}.csv", cells[0]


@pytest.mark.parametrize("column, value, message", [
    ("cycles", "inf", "cycles inf"), ("cycles", "0", "cycles 0"), ("cycles", "-5.0", "cycles -5"),
    ("cycles", "nan", "cycles is not a number"), ("arena_bytes", "-1", "arena_bytes -1"),
    ("arena_bytes", "inf", "arena_bytes inf"),
])
def test_impossible_lut_baseline_is_an_error_naming_file_and_line(tmp_path, column, value, message):
    from tinyhil.regress.suite import lut_cases

    luts, table, key = _lut_baseline(tmp_path, 5, column, value)
    with pytest.raises(SuiteError, match=message) as error:
        lut_cases(parse_suite({"lut_sample": 2}, "s"), "qemu-m4", luts)
    assert f"{table}: line 5" in str(error.value)


@pytest.mark.parametrize("cycles", ["NaN", "Infinity", "-Infinity", "0", "-12.5", '"fast"', "true"])
def test_impossible_deployment_baseline_is_an_error_naming_file_and_line(tmp_path, cycles):
    from tinyhil.regress.suite import deployment_cases

    run = tmp_path / "runs" / "d1"
    run.mkdir(parents=True)
    manifest = run / "deployment.json"
    manifest.write_text('{\n  "board": "qemu-m4",\n  "measured": {\n    "ms": 1.0,\n'
                        f'    "cycles": {cycles},\n    "arena_bytes": 100\n  }}\n}}\n')
    with pytest.raises(SuiteError, match=rf"{manifest}: line 5: impossible baseline: cycles"):
        deployment_cases(parse_suite({"deployments": "runs"}, "s"), "qemu-m4", tmp_path)


def _history_with(tmp_path, rows: list[Row], extra: str = "") -> History:
    history = History(tmp_path)
    with history.exclusive():
        history.append(rows)
    if extra:
        with open(history.path, "a") as f:
            f.write(extra)
    return history


MODEL_ROW = Row("r1", "t", "s", "qemu-m4", "m4-a", "model/m.tflite", "model", "cycles", None, 1000.0,
                0.0, "new", "no baseline yet")


@pytest.mark.parametrize("measured", [float("nan"), float("inf"), 0.0, -3.0])
def test_impossible_history_baseline_is_an_error_naming_the_line(tmp_path, measured):
    from tinyhil.regress.history import HistoryError

    other = Row(**{**MODEL_ROW.__dict__, "case": "model/other.tflite"})
    bad = Row(**{**MODEL_ROW.__dict__, "measured": measured})
    history = _history_with(tmp_path, [other, bad])
    with pytest.raises(HistoryError, match=r"history.csv: line 3: impossible baseline: cycles "):
        history.last_good("qemu-m4", "model/m.tflite", before_run="r2")
    assert history.last_good("qemu-m4", "model/other.tflite", before_run="r2")[0] == 1000.0


def test_judge_never_passes_an_impossible_baseline():
    suite = parse_suite({}, "s")
    for cycles in (0.0, float("inf"), float("nan"), -100.0):
        rows = judge(_case(cycles), _measured(100), suite, True)
        assert [r[4] for r in rows] == ["error"], (cycles, rows)
        assert "impossible baseline in t.csv" in rows[0][5]


@pytest.mark.parametrize("where", [0, 1])
def test_history_row_with_an_extra_comma_is_an_error_naming_the_line(tmp_path, where):
    from tinyhil.regress.history import HistoryError

    rows = [Row(**{**MODEL_ROW.__dict__, "case": f"model/m{i}.tflite"}) for i in range(3)]
    history = _history_with(tmp_path, rows)
    lines = history.path.read_text().splitlines(keepends=True)
    lines[2 + where] = lines[2 + where].replace(",model,", ",model,,", 1)  # an old row, edited by hand
    history.path.write_text("".join(lines))
    with pytest.raises(HistoryError, match=rf"history.csv: line {3 + where}: 17 fields, expected 16"):
        history.frame()


def test_detail_with_newlines_keeps_line_numbers(tmp_path):
    rows = [Row(**{**MODEL_ROW.__dict__, "case": "model/a.tflite", "detail": "refused:\nlog\nmore"}),
            Row(**{**MODEL_ROW.__dict__, "case": "model/b.tflite"})]
    frame = _history_with(tmp_path, rows).frame()
    assert list(frame.index) == [2, 5] and list(frame["case"]) == ["model/a.tflite", "model/b.tflite"]


def test_regress_refuses_a_corrupt_history_before_measuring_and_appends_nothing(tmp_path):
    out = tmp_path / "out"
    _history_with(out, [Row(**{**MODEL_ROW.__dict__, "case": f"model/m{i}.tflite"}) for i in range(2)])
    lines = (out / "history.csv").read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(",model,", ",model,,", 1)  # the first data row: pandas would shift it
    (out / "history.csv").write_text("".join(lines))
    before = (out / "history.csv").read_bytes()
    inventory, suite = tmp_path / "lab.yaml", tmp_path / "suite.yaml"
    inventory.write_text(yaml.safe_dump({"boards": [{"name": "m4-a", "board": "qemu-m4"}]}))
    suite.write_text(yaml.safe_dump({"name": "t", "lut_sample": 0, "deployments": "", "models": []}))
    for _retry in range(2):
        result = CliRunner().invoke(app, ["regress", "--inventory", str(inventory), "--suite", str(suite),
                                          "--baseline", str(tmp_path), "--out", str(out)],
                                    env={"COLUMNS": "400"})  # a long tmp path would wrap mid-word
        assert result.exit_code == 2, result.output
        assert "history.csv: line 2: 17 fields, expected 16" in " ".join(result.output.split())
        assert (out / "history.csv").read_bytes() == before  # nothing appended, nothing rewritten


def test_a_baseline_another_firmware_measured_is_refused_naming_lut_verify(tmp_path):
    from tinyhil.regress.suite import lut_cases

    luts, table, _ = _lut_baseline(tmp_path, 5, "status", "ok")
    meta = table.with_suffix(".meta.json")
    meta.write_text(meta.read_text().replace(json.loads(meta.read_text())["firmware"], "0123456789abcdef"))
    with pytest.raises(SuiteError, match=r"measured by firmware 0123456789abcdef, not today's .*tinyhil lut verify"):
        lut_cases(parse_suite({"lut_sample": 2}, "s"), "qemu-m4", luts)
