"""Tables you can trust (issue 28): no impossible number is kept."""
import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from conftest import ROOT
from tinyhil.cli import app
from tinyhil.lut.table import COLUMNS, Lut, LutError, read_meta, read_rows, row_op
from tinyhil.measure.runner import ImageRunner, Measurement
from tinyhil.spaces import make_space
from tinyhil.verdict import OK


def cli(args, code):
    """`tinyhil ARGS`: exit `code`, no traceback; the output, whitespace folded."""
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    output = " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"traceback: {result.exception!r}\n{result.output}"
    assert result.exit_code == code, result.output
    return output


def never(what):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} before the bad input was refused")
    return refuse


SPACE = ("micronas", 128, 9, 6)  # the committed qemu-m4 space LUT micronas-128x9-c6
FIRST = 6  # characterize --limit FIRST: the space's first ops


def first_keys(n=FIRST) -> list[str]:
    return [op.key for op in make_space(*SPACE).op_configs()[:n]]


def committed_lines(board="qemu-m4") -> dict[str, str]:
    """Line of each op of the committed store (written before rows named their board)."""
    lines = (ROOT / "luts" / board / "ops.csv").read_text().splitlines(keepends=True)
    assert lines[0].rstrip("\n").split(",") == COLUMNS
    return {line.split(",", 1)[0]: line for line in lines[1:]}


def small_store(tmp_path, board="qemu-m4", keys=None, edit=None):
    """luts/BOARD/ops.csv of the committed store's rows for `keys` (the first
    ops of the space), in the committed (old) format; `edit(cells)` changes
    the cells of the second row (line 3)."""
    luts = tmp_path / "luts"
    (luts / board).mkdir(parents=True)
    shutil.copy(ROOT / "luts" / board / "ops.meta.json", luts / board / "ops.meta.json")
    lines = committed_lines(board)
    rows = [lines[k] for k in (keys or first_keys())]
    if edit:
        cells = rows[1].rstrip("\n").split(",")
        edit(dict(zip(COLUMNS, range(len(cells)))), cells)
        rows[1] = ",".join(cells) + "\n"
    (luts / board / "ops.csv").write_text(",".join(COLUMNS) + "\n" + "".join(rows))
    return luts


@pytest.fixture
def board(monkeypatch):
    """A stand-in for the emulated board: each op measures its figures of the
    committed store; the keys it measured are recorded."""
    import tinyhil.measure.characterize as characterize

    committed = read_rows(ROOT / "luts" / "qemu-m4" / "ops.csv")
    measured = []

    def run_stream(self, items, n_items=None):
        for item in items:
            row = committed.loc[item.subject.key]
            measured.append(item.subject.key)
            yield Measurement(item, OK, cycles=(float(row["cycles"]),),
                              profile=(("OP", float(row["kernel_cycles"])),), arena_used=int(row["arena_bytes"]))

    monkeypatch.setattr(ImageRunner, "run_stream", run_stream)
    # the set-up the board reports: the committed store's, which the tests' stores copy
    monkeypatch.setattr(characterize, "store_meta", lambda m, b: read_meta(ROOT / "luts" / b.name / "ops.csv"))
    return measured


def characterize(luts, code=0):
    return cli(["characterize", "--space", SPACE[0], "--input", f"{SPACE[1]}x{SPACE[2]}", "--classes", SPACE[3],
                "--limit", FIRST, "--luts", luts], code)


# ---- 1. impossible numbers -------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "0", "-5.0", "1e308", "nan"])
def test_an_impossible_store_row_is_set_aside_and_measured_again(tmp_path, board, value):
    luts = small_store(tmp_path, edit=lambda col, cells: cells.__setitem__(col["cycles"], value))
    store = luts / "qemu-m4" / "ops.csv"
    bad_key, bad_line = first_keys()[1], committed_lines()[first_keys()[1]]
    output = characterize(luts)
    assert f"malformed, left out and measured again: {store}: line 3: cycles" in output
    assert board == [bad_key]  # that op, and only that op, measured again
    lut = Lut.load(luts / "qemu-m4" / "micronas-128x9-c6.csv")
    assert list(lut.rows.index) == first_keys()
    assert lut.cycles(row_op(lut.rows.loc[bad_key])) == float(bad_line.split(",")[9])  # the measured figure
    assert bad_key in (store.parent / ".ops.csv.malformed").read_text()  # set aside, listed
    assert read_rows(store).loc[bad_key, "cycles"] == lut.rows.loc[bad_key, "cycles"]  # never kept


def _space_lut_copy(tmp_path, name="micronas-128x9-c6", board="qemu-m4"):
    target = tmp_path / "luts" / board
    target.mkdir(parents=True)
    for suffix in (".csv", ".meta.json"):
        shutil.copy(ROOT / "luts" / board / f"{name}{suffix}", target / f"{name}{suffix}")
    return target / f"{name}.csv"


def _set_cell(path, line, column, value):
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[line - 1].rstrip("\n").split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells) + "\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize("column, value, why", [
    ("cycles", "inf", "is not a finite number"), ("cycles", "0", "is not above 0"),
    ("cycles", "-7", "is not above 0"), ("cycles", "1e308", "is more than 60 s at the board's 25 MHz"),
    ("cycles", "1.6e9", "is more than 60 s"), ("cycles_min", "-inf", "is not a finite number"),
    ("cycles_max", "1e308", "is more than 60 s"), ("kernel_cycles", "-1.0", "is below 0"),
    ("ms", "inf", "is not a finite number"), ("ms", "60001", "is more than 60 s"),
    ("n", "0", "is not above 0"), ("n", "2.5", "is not a whole number"),
    ("arena_bytes", "-1", "is below 0"), ("arena_bytes", "1060.5", "is not a whole number"),
    ("scratch_bytes", "1e20", "is more than a 32-bit microcontroller addresses"),
    ("weights_bytes", "inf", "is not a finite number"), ("macs", "-3", "is below 0"),
])
def test_an_impossible_number_in_a_space_lut_is_an_error_naming_file_and_line(tmp_path, column, value, why):
    lut = _space_lut_copy(tmp_path)
    _set_cell(lut, 4, column, value)
    output = cli(["lut", "show", lut], 2)
    assert f"{lut}: line 4: {column} {value} {why}" in output
    assert "fix that line, or make the table again with `tinyhil characterize`" in output


def test_the_bound_is_a_minute_of_the_board_s_clock(tmp_path):
    lut = _space_lut_copy(tmp_path)  # qemu-m4: 25 MHz, a minute is 1.5e9 cycles
    _set_cell(lut, 2, "cycles", "1.4e9")
    assert Lut.load(lut).rows["cycles"].max() == 1.4e9
    sidecar = lut.with_suffix(".meta.json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "clock_hz": 20_000_000}))
    with pytest.raises(LutError, match=r"line 2: cycles 1.4e9 is more than 60 s at the board's 20 MHz"):
        Lut.load(lut)


def _regress(tmp_path, baseline, suite=None):
    inventory, suite_file = tmp_path / "lab.yaml", tmp_path / "suite.yaml"
    inventory.write_text(yaml.safe_dump({"boards": [{"name": "m4-a", "board": "qemu-m4"}]}))
    suite_file.write_text(yaml.safe_dump(suite or {"name": "t", "lut_sample": 2, "deployments": "",
                                                   "models": []}))
    return ["regress", "--boards", inventory, "--suite", suite_file, "--baseline", baseline,
            "--out", tmp_path / "out"]


def test_a_baseline_of_1e308_is_refused_naming_file_and_line(tmp_path, monkeypatch):
    import tinyhil.regress.suite as suite

    monkeypatch.setattr(suite, "generate_models", never("models were made"))
    lut = _space_lut_copy(tmp_path)
    _set_cell(lut, 5, "cycles", "1e308")
    output = cli(_regress(tmp_path, tmp_path / "luts"), 2)
    assert f"baseline {lut}: line 5: cycles 1e308 is more than 60 s" in output


def test_a_deployment_or_history_baseline_of_1e308_is_refused(tmp_path):
    from tinyhil.regress.history import History, HistoryError, Row
    from tinyhil.regress.nightly import judge
    from tinyhil.regress.suite import Baseline, Case, SuiteError, deployment_cases, parse_suite

    manifest = tmp_path / "runs" / "d1" / "deployment.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{\n  "board": "qemu-m4",\n  "measured": {\n    "cycles": 1e308,\n'
                        '    "arena_bytes": 100\n  }\n}\n')
    with pytest.raises(SuiteError, match=rf"{manifest}: line 4: impossible baseline: cycles 1e\+308 is more "
                                         "than 60 s at the board's 25 MHz"):
        deployment_cases(parse_suite({"deployments": "runs"}, "s"), "qemu-m4", tmp_path)

    history = History(tmp_path / "out")
    with history.exclusive():
        history.append([Row("r1", "t", "s", "qemu-m4", "m4-a", "model/m.tflite", "model", "cycles", None,
                            1e308, 0.0, "new", "no baseline yet")])
    with pytest.raises(HistoryError, match=r"history.csv: line 2: impossible baseline: cycles 1e\+308 is more"):
        history.last_good("qemu-m4", "model/m.tflite", before_run="r2", clock_hz=25_000_000)

    from tinyhil.measure.runner import Item

    case = Case("model/m.tflite", "model", "qemu-m4", Item("case-1", None, 0), Baseline(1e308, 100, "history"))
    rows = judge(case, Measurement(Item("case-1", None, 0), OK, cycles=(1000.0,), arena_used=100),
                 parse_suite({}, "s"), True, 25_000_000)
    assert [r[4] for r in rows] == ["error"] and "impossible baseline in history" in rows[0][5]
