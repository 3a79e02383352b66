"""The command line as a newcomer meets it (issue 31): help on every option and
argument, `-h` and `--version`, flags and arguments shown plainly, help text
reflowed, tables that keep names whole at 80 columns, progress lines in a log,
TensorFlow's log lines hidden, errors that name the fix, outputs that do not
overwrite each other. (The old spellings: tests/test_units.py.)"""
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from tinyhil import __version__
from tinyhil.board_catalog import load_boards
from tinyhil.cli import app
from tinyhil.cli.commands import reflow
from tinyhil.quiet import LOG_LINE, converter_output, quiet, stderr_filtered
from tinyhil.stage_progress import progress_lines

ROOT = Path(__file__).resolve().parents[1]


def commands(command=None, path=()):
    """(path, click command) of every command and group, the root first."""
    command = command or typer.main.get_command(app)
    yield list(path), command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


def invoke(args, columns=80, **kwargs):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)}, **kwargs)
    return result, " ".join(result.output.split())


# ---- help ------------------------------------------------------------------------

@pytest.mark.parametrize("path, command", [pytest.param(p, c, id=" ".join(p) or "tinyhil") for p, c in commands()])
def test_every_option_and_argument_has_help(path, command):
    missing = [p.name for p in command.params if not getattr(p, "hidden", False) and not (p.help or "").strip()]
    assert not missing, f"tinyhil {' '.join(path)}: no help for {missing}"


@pytest.mark.parametrize("path", [pytest.param(p, id=" ".join(p) or "tinyhil") for p, _ in commands()])
def test_dash_h_is_help_showing_flags_and_arguments_plainly(path):
    result, text = invoke([*path, "-h"])
    assert result.exit_code == 0, text
    assert "Usage:" in text and "<bool>" not in text
    usage = result.output.split("Usage:")[1].splitlines()[0]
    assert "{" not in usage, usage  # RUN_DIR, not {run_dir}


def test_arguments_are_named_in_capitals():
    result, text = invoke(["deploy", "--help"])
    assert "deploy [OPTIONS] RUN_DIR" in text and "RUN_DIR" in text.split("Arguments")[1]
    _, text = invoke(["lut", "diff", "-h"])
    assert "lut diff [OPTIONS] A B" in text


def test_square_brackets_in_help_are_text():
    """`[default: ...]` in a help text is no rich markup (it used to vanish)."""
    _, text = invoke(["pipeline", "-h"], columns=200)
    assert "the run's directory [default: runs/ENGINE-DATA-BOARD]" in text
    _, text = invoke(["characterize", "-h"], columns=200)
    assert "[default: 1 on an emulated board" in text


def test_version():
    result, text = invoke(["--version"])
    assert result.exit_code == 0 and text == f"tinyhil {__version__}"


def test_a_flag_is_a_flag():
    result, text = invoke(["calibrate", "-h"])
    assert "--strict " in result.output and "<bool>" not in text
    result, _ = invoke(["calibrate", "--emulated", "a.csv", "--reference", "b.csv", "--board", "x", "--strict",
                        "true"])
    assert result.exit_code == 2 and "unexpected extra argument" in result.output.lower()


def test_docstrings_are_reflowed():
    assert reflow("""First line
        goes on here.

        Second paragraph
        too.""") == "First line goes on here.\n\nSecond paragraph too."
    assert reflow("\b\nkept\nas is") == "\b\nkept\nas is"
    result, _ = invoke(["--help"], columns=250)
    doctor = next(line for line in result.output.splitlines() if " doctor " in line)
    assert "per core, and a probe built" in doctor  # the docstring's second source line, on the same line


# ---- console ---------------------------------------------------------------------

def test_boards_keep_their_names_at_80_columns():
    result, _ = invoke(["boards"], columns=80)
    assert result.exit_code == 0
    assert all(len(line) <= 80 for line in result.output.splitlines())
    for name in load_boards():
        assert any(name in line.split() for line in result.output.splitlines()), name
    assert "…" not in result.output
    wide, _ = invoke(["boards"], columns=200)
    assert "transport" in wide.output  # every column when it fits


def test_doctor_wraps_paths_instead_of_cutting_them(monkeypatch):
    import tinyhil.doctor as doctor
    from tinyhil.doctor import Check

    path = "/a/rather/long/path/to/the/tflite-micro-arduino-examples/checkout/that/must/stay/whole"
    monkeypatch.setattr(doctor, "run_checks", lambda *a, **k: iter([Check("TFLite-Micro tree", True, path, "", True)]))
    result, _ = invoke(["doctor", "--no-probe", "--no-tflm"], columns=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "fix" not in result.output  # no fix column when all is well
    inside = "".join(line.split("│")[3].strip() for line in result.output.splitlines() if line.count("│") >= 4)
    assert path in inside


def test_progress_lines_in_a_log():
    out = io.StringIO()
    now = [0.0]
    progress = progress_lines(Console(file=out, width=80), every_s=30, clock=lambda: now[0])
    with progress:
        epochs = progress.add_task("search epochs", total=3)
        for epoch in range(1, 4):
            progress.update(epochs, advance=1, description=f"epoch {epoch} acc 0.{epoch}")
        ops = progress.add_task("measure ops", total=1000)
        for _ in range(1000):
            progress.advance(ops)
        slow = progress.add_task("slow", total=100)
        progress.advance(slow)
        now[0] += 31  # half a minute without a tenth: a line all the same
        progress.advance(slow)
        progress.advance(slow)  # moved, but not 30 s since: no line
    lines = out.getvalue().splitlines()
    assert lines[:4] == ["search epochs: 0/3", "epoch 1 acc 0.1: 1/3", "epoch 2 acc 0.2: 2/3", "epoch 3 acc 0.3: 3/3"]
    measured = [line for line in lines if line.startswith("measure ops")]
    assert measured == [f"measure ops: {n:,}/1,000" for n in range(0, 1001, 100)]
    assert [line for line in lines if line.startswith("slow")] == ["slow: 0/100", "slow: 2/100"]


def test_progress_bars_print_lines_when_not_a_terminal(monkeypatch):
    import tinyhil.cli as cli

    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=80))  # a file: not a terminal
    with cli.progress_bars() as progress:
        task = progress.add_task("convert models", total=2)
        progress.advance(task)
        progress.advance(task)
    assert out.getvalue().splitlines() == ["convert models: 0/2", "convert models: 1/2", "convert models: 2/2"]
    with cli.waiting("checking the toolchain ...") as on_stage:
        on_stage("compiling TFLM: {done}/{total}", 1, 4)
    assert out.getvalue().splitlines()[-2:] == ["checking the toolchain ...", "compiling TFLM: 1/4"]


# ---- TensorFlow's log lines --------------------------------------------------------

def test_log_format_lines_are_dropped_and_the_rest_kept(capfd):
    with stderr_filtered():
        os.write(2, b"I0000 00:00:1796677027.333077    9510 cudart_stub.cc:31] Could not find cuda drivers\n"
                    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"E0000 00:00:1796677031.649072    9510 cuda_platform.cc:52] failed call to cuInit\n"
                    b"a line of its own\n")
    assert capfd.readouterr().err == "a line of its own\n"
    with pytest.raises(ImportError), stderr_filtered():  # a failing import keeps its every line
        os.write(2, b"I0000 00:00:1.2    1 x.cc:1] why it failed\n")
        raise ImportError("no")
    assert "why it failed" in capfd.readouterr().err
    assert LOG_LINE.match(b"W0000 00:00:1796677031.649072    9510 a.cc:52] x")


def test_quiet_sets_and_verbose_takes_back(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet(True)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    quiet(False)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # the user's own setting stays
    quiet(True)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    quiet(False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_the_converters_printouts_follow_tensorflows_quiet(capfd, monkeypatch):
    def convert(fail=False):
        with converter_output():
            print("Saved artifact at '/tmp/x'. The following endpoints are available:")
            os.write(2, b"fully_quantize: 0, inference_type: 6\n")
            if fail:
                raise RuntimeError("conversion failed")

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    convert()
    assert capfd.readouterr() == ("", "")
    with pytest.raises(RuntimeError):
        convert(fail=True)  # what it printed is the diagnosis
    out, err = capfd.readouterr()
    assert "Saved artifact" in out and "fully_quantize" in err
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # --verbose
    convert()
    out, err = capfd.readouterr()
    assert "Saved artifact" in out and "fully_quantize" in err


def test_importing_tensorflow_prints_no_log_lines():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    env["PYTHONPATH"] = str(ROOT / "host")
    code = ("from tinyhil.quiet import quiet; quiet()\n"
            "import tensorflow as tf\nprint(tf.constant(2).numpy() * 21)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "42", done.stderr
    noise = [line for line in done.stderr.splitlines() if LOG_LINE.match(line.encode()) or "cuInit" in line]
    assert not noise, noise


# ---- errors that name the fix --------------------------------------------------------

def test_a_misspelt_data_set_names_the_closest_and_the_known_ones():
    result, text = invoke(["data", "basic_motion"], columns=200)
    assert result.exit_code == 2 and "Traceback" not in text
    assert "unknown data set 'basic_motion': did you mean basic_motions?" in text
    assert "japanese_vowels" in text and "synthetic<T>x<S>" in text and "regression" not in text.split("?")[0]


def test_data_set_names_in_any_case():
    from tinyhil.nas.data import DataError, aeon_name

    assert aeon_name("basic_motions") == aeon_name("BASICMOTIONS") == "BasicMotions"
    with pytest.raises(DataError, match="did you mean japanese_vowels"):
        aeon_name("japanese_vowel")


def test_validate_without_a_lut_says_which_and_how_to_make_it(tmp_path):
    result, text = invoke(["validate", "--space", "micronas", "--input", "7x3", "--luts", tmp_path], columns=300)
    assert result.exit_code == 2 and "give --classes" not in text
    assert ("no LUT of micronas for input 7x3 on qemu-m4" in text
            and "tinyhil characterize --space micronas --input 7x3 --classes N --board qemu-m4" in text), text
    for classes in (4, 6):
        (tmp_path / "qemu-m4").mkdir(exist_ok=True)
        (tmp_path / "qemu-m4" / f"micronas-7x3-c{classes}.csv").write_text("")
    result, text = invoke(["validate", "--space", "micronas", "--input", "7x3", "--luts", tmp_path], columns=300)
    assert result.exit_code == 2 and "(classes 4, 6): say which with --classes" in text, text
    assert not (Path.cwd() / "out" / "validation-micronas-7x3").exists()


def test_calibrate_names_a_file_that_is_no_reference(tmp_path):
    result, text = invoke(["calibrate", "--emulated", ROOT / "luts/qemu-m4/micronas-128x9-c6.csv", "--reference",
                           ROOT / "README.md", "--board", "nucleo_f446re", "--lut", tmp_path / "x.csv"], columns=300)
    assert result.exit_code == 2 and "Traceback" not in text
    assert "README.md is not a reference CSV" in text and "op,input_shape,output_shape,cycles_total" in text
    assert "Error tokenizing" not in text and "C error" not in text


# ---- outputs that do not overwrite each other ----------------------------------------

def test_default_run_directories_name_what_distinguishes_them():
    from tinyhil.nas.engines import default_run_dir

    assert default_run_dir("micronas", "japanese_vowels", "qemu-m4", (29, 12)) == \
        Path("runs/micronas-japanese_vowels-qemu-m4-29x12")
    assert default_run_dir("timenas", "data/my set.npz", "qemu-m33", (100, 6)) == \
        Path("runs/timenas-my_set-qemu-m33-100x6")
    assert default_run_dir("tinytnas", "uci_har:/data/UCI HAR Dataset", "qemu-m4") == \
        Path("runs/tinytnas-uci_har-qemu-m4")


def japanese_vowels_luts(tmp_path) -> Path:
    """A copy of the committed MicroNAS LUT of JapaneseVowels' shape (a search may touch its table)."""
    import shutil

    luts = tmp_path / "luts"
    (luts / "qemu-m4").mkdir(parents=True)
    for path in (ROOT / "luts" / "qemu-m4").glob("micronas-29x12-c9.*"):
        shutil.copy(path, luts / "qemu-m4" / path.name)
    return luts


def test_search_out_defaults_to_engine_data_board_input(tmp_path, monkeypatch):
    import tinyhil.nas.engines as engines
    from tinyhil.errors import TinyhilError

    asked = []

    def stop(spec, splits, lut, board, targets, epochs, batch_size, out, on_epoch=None):
        asked.append(out)
        raise TinyhilError("stopped here")

    monkeypatch.setattr(engines, "micronas", stop)
    monkeypatch.chdir(tmp_path)
    result, text = invoke(["search", "micronas", "--data", "japanese_vowels", "--luts", japanese_vowels_luts(tmp_path)])
    assert result.exit_code == 2 and "stopped here" in text
    assert asked == [Path("runs/micronas-japanese_vowels-qemu-m4-29x12")]


def test_a_refused_search_leaves_no_directory(tmp_path, monkeypatch):
    luts = japanese_vowels_luts(tmp_path)
    monkeypatch.chdir(tmp_path)
    result, text = invoke(["search", "micronas", "--data", "japanese_vowels", "--luts", luts,
                           "--latency", "1us"], columns=300)
    assert result.exit_code == 2 and "no architecture of this space can meet" in text, text
    assert not (tmp_path / "runs").exists()


def test_output_dir_removes_only_what_it_made(tmp_path):
    from tinyhil.files import output_dir

    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(RuntimeError), output_dir(kept / "a" / "b", "a run"):
        raise RuntimeError("refused")
    assert kept.is_dir() and not (kept / "a").exists()
    with pytest.raises(RuntimeError), output_dir(kept / "c", "a run") as out:
        (out / "half.csv").write_text("x")
        raise RuntimeError("failed later")
    assert (kept / "c" / "half.csv").is_file()  # what a run wrote stays
