"""Files tinyhil cannot read, and Ctrl-C at any moment: a clear error naming
the file (and line), never a traceback (issue 28)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import tomllib
import yaml

from conftest import ROOT, ctrl_c_reaches_it
from test_impossible_tables import _space_lut_copy, cli, small_store
from tinyhil.lut.table import Lut, LutError, scan_rows

NOT_UTF8 = b"\xff\xfe"  # Latin-1 "ÿþ": no UTF-8 text holds these bytes


def _regress_files(tmp_path, inventory=None, suite=None):
    inventory_file, suite_file = tmp_path / "lab.yaml", tmp_path / "suite.yaml"
    inventory_file.write_bytes(inventory or yaml.safe_dump(
        {"boards": [{"name": "m4-a", "board": "qemu-m4"}]}).encode())
    suite_file.write_bytes(suite or yaml.safe_dump(
        {"name": "t", "lut_sample": 0, "deployments": "", "models": []}).encode())
    return ["regress", "--inventory", inventory_file, "--suite", suite_file, "--baseline", tmp_path,
            "--out", tmp_path / "out"], inventory_file, suite_file


def test_a_suite_not_in_utf8_is_named_with_its_line(tmp_path):
    args, _, suite = _regress_files(tmp_path, suite=b"name: t\nlut_sample: 0\n# caf" + NOT_UTF8 + b"\n")
    output = cli(args, 2)
    assert f"{suite}: line 3: byte 0xff (column 6) is not UTF-8; save it as UTF-8" in output


def test_an_inventory_not_in_utf8_is_named_with_its_line(tmp_path):
    args, inventory, _ = _regress_files(tmp_path, inventory=b"boards:\n  - name: m4-" + NOT_UTF8
                                        + b"\n    board: qemu-m4\n")
    output = cli(args, 2)
    assert f"{inventory}: line 2: byte 0xff (column 14) is not UTF-8" in output


def test_a_history_not_in_utf8_is_named_with_its_line(tmp_path):
    from tinyhil.regress.history import COLUMNS

    args, _, _ = _regress_files(tmp_path)
    history = tmp_path / "out" / "history.csv"
    history.parent.mkdir()
    history.write_bytes((",".join(COLUMNS) + "\n").encode() + b"r1,t,s,qemu-m4,m4-a,model/m" + NOT_UTF8
                        + b".tflite,model,cycles,,1000.0,0.0,new,no baseline yet\n")
    before = history.read_bytes()
    output = cli(args, 2)
    assert f"{history}: line 2: byte 0xff (column 28) is not UTF-8" in output
    assert history.read_bytes() == before  # nothing appended, nothing rewritten


def test_a_deployment_record_not_in_utf8_is_named(tmp_path):
    from tinyhil.regress.suite import SuiteError, deployment_cases, parse_suite

    manifest = tmp_path / "runs" / "d1" / "deployment.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(b'{"board": "qemu-m4",\n "note": "' + NOT_UTF8 + b'"}\n')
    with pytest.raises(SuiteError, match=rf"{manifest}: line 2: byte 0xff \(column 11\) is not UTF-8"):
        deployment_cases(parse_suite({"deployments": "runs"}, "s"), "qemu-m4", tmp_path)


@pytest.mark.parametrize("key", ["repeats", "per_image", "lut_sample", "seed"])
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_infinite_or_nan_integer_suite_keys_are_named(tmp_path, key, value):
    args, _, suite = _regress_files(tmp_path, suite=f"name: t\n{key}: {value}\n".encode())
    output = cli(args, 2)
    assert f"{suite}: {key} must be a int in" in output


def test_a_damaged_run_state_is_named(tmp_path):
    """last-run.json says which run a `tinyhil regress` resumes: one that is
    not tinyhil's is an error naming it, never a traceback."""
    import json

    from tinyhil.execute.inventory import load_inventory
    from tinyhil.regress.nightly import fingerprint
    from tinyhil.regress.suite import load_suite

    args, inventory, suite = _regress_files(tmp_path)
    ours = fingerprint(load_suite(str(suite)), load_inventory(inventory), tmp_path)
    state = tmp_path / "out" / "last-run.json"
    state.parent.mkdir()
    for text, why in (
            ("[]", "not the state of a run (a JSON object with run_id, fingerprint and finished) but a list"),
            ('{\n  "run_id": ', "line 2: not JSON"),
            (json.dumps({"run_id": 7, "fingerprint": ours, "finished": False}), "run_id is 7, not the name of a run")):
        state.write_text(text)
        output = cli(args, 2)
        assert f"{state}: {why}" in output and "delete it" in output
    state.write_text(json.dumps({"run_id": "r1", "fingerprint": ours, "finished": False}))
    cli(args, 0)  # a run state of tinyhil's: that run resumed (nothing to measure)


def test_a_lut_not_in_utf8_is_named_with_its_line(tmp_path):
    lut = _space_lut_copy(tmp_path)
    lines = lut.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b",ok\n", b",ok" + NOT_UTF8 + b"\n")
    lut.write_bytes(b"".join(lines))
    output = cli(["lut", "show", lut], 2)
    assert f"{lut}: line 4: byte 0xff" in output and "is not UTF-8" in output
    sidecar = lut.with_suffix(".meta.json")
    sidecar.write_bytes(sidecar.read_bytes().replace(b'"board"', b'"b' + NOT_UTF8 + b'oard"', 1))
    with pytest.raises(LutError, match=rf"{sidecar}: line \d+: byte 0xff .* is not UTF-8"):
        Lut.load(lut)


def test_a_store_line_not_in_utf8_is_set_aside(tmp_path):
    luts = small_store(tmp_path)
    store = luts / "qemu-m4" / "ops.csv"
    lines = store.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:20] + NOT_UTF8 + lines[2][22:]
    store.write_bytes(b"".join(lines))
    scanned = scan_rows(store, allow_torn_tail=True)
    (bad,) = scanned.malformed
    assert bad.line == 3 and "byte 0xff (column 21) is not UTF-8" in bad.why
    assert len(scanned.frame) == len(lines) - 2


# ---- Ctrl-C ----------------------------------------------------------------------------------------

def _console_entry() -> list[str]:
    """The `tinyhil` command as pip installs it from pyproject.toml's console entry."""
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["tinyhil"]
    module, function = entry.split("#")[0].strip().split(":")
    # as pip's script: sys.argv[0] is the script's path, .../bin/tinyhil
    return [sys.executable, "-c", f"import sys; sys.argv[0] = 'bin/tinyhil'; from {module} import {function}; "
            f"sys.exit({function}())"]


def test_ctrl_c_while_starting_is_one_line_and_status_130(tmp_path):
    """SIGINT while the command is still importing (about a second: typer, rich,
    pandas and the stages): exit 130 and one line, never a traceback."""
    import tinyhil

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(os.path.dirname(os.path.dirname(tinyhil.__file__))), os.environ.get("PYTHONPATH")]))}
    command = [*_console_entry(), "lut", "show", str(ROOT / "luts" / "qemu-m4" / "ops.csv")]
    interrupted = 0
    for delay in (0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=env, cwd=tmp_path, preexec_fn=ctrl_c_reaches_it)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, (delay, err)
        if process.returncode == 0:  # it had finished: nothing to interrupt
            continue
        # killed by the signal itself: before Python set up its handler, or once it had shut down
        if process.returncode == -signal.SIGINT:
            assert err == "", (delay, err)
            continue
        assert process.returncode == 130 and err == "tinyhil: interrupted (Ctrl-C)\n", (delay, err)
        interrupted += 1
    assert interrupted >= 3, "the signals should land while the command starts"


@pytest.mark.parametrize("where", ["in a command", "before any command"])
def test_ctrl_c_later_is_one_line_and_status_130(capfd, monkeypatch, where):
    import typer

    import tinyhil.lut.table
    from tinyhil.__main__ import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tinyhil.lut.table.Lut, "load", interrupted)
    if where == "before any command":
        monkeypatch.setattr(typer.main, "get_command", interrupted)
    monkeypatch.setattr(sys, "argv", ["tinyhil", "lut", "show", "t.csv"])
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 130
    assert capfd.readouterr().err == "tinyhil: interrupted (Ctrl-C)\n"
    assert signal.getsignal(signal.SIGINT) is before
