"""Tables you can trust (issue 28): no impossible number is kept, no board's
table is taken for another's, and a table's text does not depend on the
history of its store."""
import csv
import io
import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from conftest import ROOT
from tinyhil.cli import app
from tinyhil.lut.table import COLUMNS, COLUMNS_WITHOUT_BOARD, Lut, LutError, read_meta, read_rows, row_op
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


def without_board(line: str) -> str:
    """A row as tinyhil wrote it before rows named their board (the second field gone)."""
    fields = next(csv.reader([line]))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields[:1] + fields[2:])
    return buffer.getvalue()


def committed_lines(board="qemu-m4") -> dict[str, str]:
    """Line of each op of the committed store, in the format before rows named their board."""
    lines = (ROOT / "luts" / board / "ops.csv").read_text().splitlines(keepends=True)
    assert lines[0].rstrip("\n").split(",") == COLUMNS
    return {line.split(",", 1)[0]: without_board(line) for line in lines[1:]}


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
        edit(dict(zip(COLUMNS_WITHOUT_BOARD, range(len(cells)))), cells)
        rows[1] = ",".join(cells) + "\n"
    (luts / board / "ops.csv").write_text(",".join(COLUMNS_WITHOUT_BOARD) + "\n" + "".join(rows))
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


def _space_lut_copy(tmp_path, name="micronas-128x9-c6", board="qemu-m4", old_format=False):
    target = tmp_path / "luts" / board
    target.mkdir(parents=True)
    for suffix in (".csv", ".meta.json"):
        shutil.copy(ROOT / "luts" / board / f"{name}{suffix}", target / f"{name}{suffix}")
    table = target / f"{name}.csv"
    if old_format:
        table.write_text("".join(map(without_board, table.read_text().splitlines(keepends=True))))
    return table


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
    return ["regress", "--inventory", inventory, "--suite", suite_file, "--baseline", baseline,
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


# ---- 2. boards mixed up --------------------------------------------------------------------------

def test_regress_refuses_another_board_s_lut_naming_both_boards(tmp_path, monkeypatch):
    import tinyhil.regress.suite as suite

    monkeypatch.setattr(suite, "generate_models", never("models were made"))
    misplaced = tmp_path / "luts" / "qemu-m4" / "micronas-128x9-c6.csv"
    misplaced.parent.mkdir(parents=True)
    for suffix in (".csv", ".meta.json"):  # the qemu-m33 table, placed under qemu-m4/
        shutil.copy(ROOT / "luts" / "qemu-m33" / f"micronas-128x9-c6{suffix}", misplaced.with_suffix(suffix))
    output = cli(_regress(tmp_path, tmp_path / "luts"), 2)
    assert f"{misplaced} is a LUT of board qemu-m33" in output and "not of qemu-m4" in output


def test_characterize_refuses_a_store_of_another_board(tmp_path, board):
    luts = small_store(tmp_path, board="qemu-m33")
    (luts / "qemu-m33").rename(luts / "qemu-m4")  # nothing left to measure, but not qemu-m4's
    output = characterize(luts, 2)
    assert f"{luts / 'qemu-m4' / 'ops.csv'} is a LUT of board qemu-m33" in output and "not of qemu-m4" in output
    assert board == [] and not (luts / "qemu-m4" / "micronas-128x9-c6.csv").exists()


def test_a_row_of_another_board_is_refused_naming_its_line(tmp_path, board):
    luts = small_store(tmp_path, keys=first_keys(FIRST - 1))
    characterize(luts)  # one op measured: the store now names its board on every row
    store = luts / "qemu-m4" / "ops.csv"
    assert store.read_text().splitlines()[0] == ",".join(COLUMNS)
    _set_cell(store, 3, "board", "qemu-m33")
    output = characterize(luts, 2)
    assert f"{store}: line 3: a row of board qemu-m33 in a LUT of board qemu-m4" in output


def test_old_store_is_read_and_written_in_the_new_format_without_changing_a_figure(tmp_path, board):
    luts = small_store(tmp_path, keys=first_keys(FIRST - 1))  # the last op is measured
    store = luts / "qemu-m4" / "ops.csv"
    before = read_rows(store)
    assert set(before["board"]) == {"qemu-m4"}  # from the metadata
    characterize(luts)
    assert board == [first_keys()[-1]]
    lines = store.read_text().splitlines(keepends=True)
    assert lines[0] == ",".join(COLUMNS) + "\n"
    old = committed_lines()
    for key, line in zip(first_keys(FIRST - 1), lines[1:]):  # each old line, with its board, nothing else changed
        assert line == old[key].replace(",", ",qemu-m4,", 1)
    after = read_rows(store)
    assert after.loc[before.index].drop(columns="board").equals(before.drop(columns="board"))


def test_show_diff_and_estimates_read_both_formats(tmp_path):
    from tinyhil.estimate.predict import predict

    old = _space_lut_copy(tmp_path, old_format=True)
    new = tmp_path / "new" / "qemu-m4" / old.name
    Lut.load(old).write(new)
    assert new.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert old.read_text().splitlines()[0] == ",".join(COLUMNS_WITHOUT_BOARD)
    a, b = Lut.load(old), Lut.load(new)
    assert a.rows.equals(b.rows) and a.meta == b.meta
    shown = [cli(["lut", "show", path], 0).replace(str(path), "") for path in (old, new)]
    assert shown[0] == shown[1] and "on qemu-m4" in shown[0]
    assert f"{len(a.rows)} ops in both; 0 only in A, 0 only in B" in cli(["lut", "diff", old, new], 0)
    ops = [row_op(r) for _, r in a.rows.head(20).iterrows()]
    assert predict(ops, "qemu-m4", old.parent.parent, "point").total == \
        predict(ops, "qemu-m4", new.parent.parent, "point").total


def test_an_estimator_given_another_board_s_lut_refuses_it():
    from tinyhil.nas.hardware import BoardPricer

    lut = Lut.load(ROOT / "luts" / "qemu-m33" / "micronas-128x9-c6.csv")
    with pytest.raises(LutError, match="is a LUT of board qemu-m33, not of qemu-m4"):
        BoardPricer("qemu-m4", lut)
    with pytest.raises(LutError, match="is a LUT of board qemu-m33.*not of qemu-m4"):
        Lut.load(lut.path, board="qemu-m4")


def test_calibrate_gives_the_same_table_from_either_format(tmp_path):
    from tinyhil.measure.calibrate_board import calibrate

    reference = ROOT.parent / "shared" / "data" / "nucleo_f446re-reference.csv"
    if not reference.is_file():
        pytest.skip(f"no {reference}")
    tables = []
    for name in ("old", "new"):
        luts = tmp_path / name
        shutil.copytree(ROOT / "luts" / "qemu-m4", luts / "qemu-m4")
        if name == "new":
            for table in (luts / "qemu-m4").glob("*.csv"):
                Lut.load(table).write(table)
        result = calibrate(luts / "qemu-m4" / "micronas-128x9-c6.csv", reference, "nucleo_f446re",
                           luts / "nucleo_f446re" / "micronas-128x9-c6.csv")
        assert result.measured_now == 0
        tables.append(Lut.load(result.out, board="nucleo_f446re"))
    assert tables[0].text() == tables[1].text()
    assert set(tables[0].rows["board"]) == {"nucleo_f446re"}  # a calibrated table's rows are its board's


# ---- 3. integer columns stay integer ------------------------------------------------------------

def test_a_space_lut_written_after_a_retry_is_byte_identical_to_a_clean_run(tmp_path):
    from tinyhil.board_catalog import get_board
    from tinyhil.measure.characterize import Characterizer

    retried = first_keys()[2]
    texts = []
    for name, error_first in (("clean", False), ("retried", True)):
        luts = small_store(tmp_path / name)
        store = luts / "qemu-m4" / "ops.csv"
        lines = store.read_text().splitlines(keepends=True)
        if error_first:  # a transient failure of one op, then its good row
            cells = lines[3].rstrip("\n").split(",")
            failed = cells[:9] + [""] * 6 + ["", "", cells[17], cells[18], "error: board qemu-m4 timed out"]
            lines.insert(3, ",".join(failed) + "\n")
            assert lines[3].split(",", 1)[0] == retried
        store.write_text("".join(lines))
        ops = make_space(*SPACE).op_configs()[:FIRST]
        path = Characterizer(get_board("qemu-m4"), luts).write_space_lut(SPACE[0], SPACE[1:3], SPACE[3], ops)
        texts.append(path.read_bytes())
    assert texts[0] == texts[1]
    header, first = texts[0].decode().splitlines()[:2]
    cells = dict(zip(header.split(","), first.split(",")))
    assert cells["arena_bytes"].isdigit() and cells["n"].isdigit() and "." in cells["cycles"]
