"""Bad input gets a clear error that names the problem."""
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_int8_model
from tinyhil.board_catalog import get_board
from tinyhil.cli import app
from tinyhil.device import qemu
from tinyhil.errors import ImageTooLarge, InvalidModel, TinyhilError, ToolMissing, UnknownBoard, UnsupportedOp
from tinyhil.image import firmware
from tinyhil.measure.model import run_model
from tinyhil.models.tflite_model import TfliteModel


def test_not_a_tflite_file(tmp_path):
    path = tmp_path / "notes.tflite"
    path.write_bytes(b"this is not a model" * 10)
    with pytest.raises(InvalidModel, match="not a TFLite model"):
        TfliteModel.load(path)


def test_truncated_tflite(tmp_path, models_dir):
    import tensorflow as tf

    whole = make_int8_model(models_dir / "dense.tflite", [tf.keras.layers.Dense(64)], (64,))
    path = tmp_path / "cut.tflite"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InvalidModel, match="rejects it"):
        TfliteModel.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidModel, match="no such file"):
        TfliteModel.load(tmp_path / "absent.tflite")


def test_float_model_is_refused(tmp_path):
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.layers.Input((8,)), tf.keras.layers.Dense(2)])
    path = tmp_path / "float.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with pytest.raises(InvalidModel, match="float32.*full-integer int8"):
        TfliteModel.load(path)


def test_op_the_firmware_lacks_is_named(models_dir):
    import tensorflow as tf

    path = make_int8_model(models_dir / "gelu.tflite",
                           [tf.keras.layers.Dense(8, activation="gelu")], (16,))
    with pytest.raises(UnsupportedOp, match="GELU"):
        run_model(path, get_board("qemu-m4"))


def test_model_larger_than_flash_says_by_how_much(models_dir):
    import tensorflow as tf

    path = make_int8_model(models_dir / "huge_dense.tflite",
                           [tf.keras.layers.Dense(2100)], (2048,))
    with pytest.raises(ImageTooLarge, match=r"4194304 bytes of flash: over by \d+ bytes"):
        run_model(path, get_board("qemu-m4"))


@pytest.mark.device
def test_model_larger_than_ram_says_by_how_much(models_dir):
    import tensorflow as tf

    layers = [tf.keras.layers.Conv2D(256, 1), tf.keras.layers.Conv2D(256, 1)]
    path = make_int8_model(models_dir / "huge_activations.tflite", layers, (96, 64, 1))
    with pytest.raises(ImageTooLarge, match=r"needs \d+ more bytes of tensor arena than board qemu-m4"):
        run_model(path, get_board("qemu-m4"))


def test_linker_overflow_message_is_parsed():
    text = "ld: region `FLASH' overflowed by 1234 bytes\nld: region `RAM' overflowed by 56 bytes"
    assert firmware.OVERFLOW.findall(text) == [("FLASH", "1234"), ("RAM", "56")]


def test_missing_qemu_names_the_setup_command(monkeypatch, tmp_path):
    monkeypatch.setattr(qemu, "QEMU", "qemu-system-arm-not-installed")
    with pytest.raises(ToolMissing, match="make setup"):
        qemu.QemuProcess("mps2-an386", tmp_path / "x.elf", 7).start()


def test_missing_toolchain_names_the_setup_command(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissing, match="arm-none-eabi-gcc.*make setup"):
        firmware.check_toolchain(get_board("qemu-m4"))


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(UnknownBoard, match="known boards: .*qemu-m33.*qemu-m4"):
        get_board("qemu-m5")


def test_cli_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage")
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(bad), "--board", "nope"])
    assert result.exit_code == 2
    assert "unknown board 'nope'" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["run", str(bad), "--board", "qemu-m4"])
    assert result.exit_code == 2 and "not a TFLite model" in result.output
    result = runner.invoke(app, ["run", str(bad), "--repeats", "0"])
    assert result.exit_code == 2 and "repeats" in result.output.lower()


def test_model_that_aborts_the_interpreter_is_an_error_not_a_crash(tmp_path):
    """A softmax whose input is constant (all logits zero): its input scale is
    ~0 and TFLite's Prepare aborts; tinyhil must survive and say so."""
    import tensorflow as tf

    from tinyhil.models.convert import to_int8_tflite

    model = tf.keras.Sequential([tf.keras.layers.Input((4,), batch_size=1),
                                 tf.keras.layers.Dense(3, kernel_initializer="zeros"),
                                 tf.keras.layers.Softmax()])
    path = tmp_path / "dead.tflite"
    path.write_bytes(to_int8_tflite(model, list(np.zeros((4, 4), "float32"))))
    with pytest.raises(InvalidModel, match="crashed preparing it"):
        TfliteModel.load(path)


# ---- issue 15: a clear error, never a traceback, and nothing measured first ----------------

import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

from conftest import ROOT  # noqa: E402
from tinyhil.image.sources import NAME_PATTERN, Benchmark, ImageSpec  # noqa: E402


def fails_clearly(args, *expected, code=2):
    """`tinyhil ARGS` through the CLI: exit `code`, each expected text in the message
    (whitespace-insensitive), and no exception escaping as a traceback."""
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    output = " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"traceback: {result.exception!r}\n{result.output}"
    assert result.exit_code == code, result.output
    assert "Traceback" not in output
    for text in expected:
        assert " ".join(str(text).split()) in output, output
    return output


def never(what):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} before the bad input was refused")
    return refuse


@contextmanager
def read_only(path: Path):
    """`path` cannot be written to, even by root (who ignores permission bits)."""
    os.chmod(path, 0o555)
    immutable = os.geteuid() == 0
    if immutable and (not shutil.which("chattr")
                      or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode):
        os.chmod(path, 0o755)
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        os.chmod(path, 0o755)


def complete_luts(tmp_path) -> Path:
    """A luts directory holding the committed qemu-m4 store and its MicroNAS 128x9 table."""
    luts = tmp_path / "luts"
    (luts / "qemu-m4").mkdir(parents=True)
    for name in ("ops.csv", "ops.meta.json", "micronas-128x9-c6.csv", "micronas-128x9-c6.meta.json"):
        shutil.copy(ROOT / "luts/qemu-m4" / name, luts / "qemu-m4" / name)
    return luts


def test_read_only_luts_is_refused_before_any_model_is_made(tmp_path, monkeypatch):
    import tinyhil.measure.characterize as characterize

    monkeypatch.setattr(characterize, "generate_models", never("models were generated"))
    luts = complete_luts(tmp_path)
    with read_only(luts / "qemu-m4"):
        fails_clearly(["characterize", "--space", "micronas", "--input", "128x9", "--classes", "6",
                       "--luts", luts], f"{luts / 'qemu-m4' / 'ops.csv'}: cannot write lookup tables")
    nothing = tmp_path / "file"
    nothing.write_text("a regular file where the luts directory should be")
    fails_clearly(["characterize", "--space", "micronas", "--input", "128x9", "--classes", "6",
                   "--luts", nothing], f"{nothing} is a file, not a directory")


def test_a_full_store_names_the_row_it_could_not_keep(tmp_path):
    from tinyhil.lut.table import LutError, LutMeta, OpStore, op_columns, read_rows
    from tinyhil.spaces import ops

    meta = LutMeta(board="qemu-m4", core="cortex-m4", clock_hz=25_000_000, counter="qemu-icount",
                   tflm="t", compiler="c", flags="f", tinyhil="0")
    store = OpStore(tmp_path / "ops.csv", meta)
    first, second = ops.conv((16, 3, 4), 8, (3, 1)), ops.conv((16, 3, 8), 8, (3, 1))
    store.append({**op_columns(first), "status": "ok", "cycles": 1, "cycles_min": 1, "cycles_max": 1,
                  "n": 1, "kernel_cycles": 1, "ms": 1, "arena_bytes": 1, "scratch_bytes": 1})
    with read_only(tmp_path / "ops.csv"):
        with pytest.raises(LutError, match=rf"ops.csv: cannot append the row of {second.key}.*1 rows "
                                           "before it are kept"):
            store.append({**op_columns(second), "status": "ok"})
    assert list(read_rows(tmp_path / "ops.csv").index) == [first.key]


def _cli_in_a_child(args, file_size_limit: int) -> subprocess.CompletedProcess:
    """The CLI in its own process whose files may not grow past `file_size_limit` bytes
    (a disk that fills up: writes past it fail with EFBIG; Python ignores SIGXFSZ)."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({0}, {0})); "
            "from tinyhil.cli import app; sys.exit(app(sys.argv[1:]))").format(file_size_limit)
    import tinyhil

    here = str(Path(tinyhil.__file__).parents[1])  # the child runs the code under test
    env = {**os.environ, "COLUMNS": "400", "TINYHIL_PROJECT_DIR": str(ROOT),
           "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT)


def test_a_full_disk_is_named_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "cal" / "nucleo.csv"
    reference = ROOT.parent / "shared/data/nucleo_f446re-reference.csv"
    if not reference.is_file():
        pytest.skip(f"{reference} is not there")
    result = _cli_in_a_child(["calibrate", "--emulated", ROOT / "luts/qemu-m4/micronas-128x9-c6.csv",
                              "--reference", reference, "--board", "nucleo_f446re", "--lut", out],
                             file_size_limit=16 * 1024)
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2 and "Traceback" not in text, text
    assert f"{out}: cannot write it (File too large)" in text
    assert sorted(p.name for p in out.parent.iterdir()) == []  # neither half a LUT nor a .tmp


def test_a_temporary_left_by_a_dead_writer_is_removed(tmp_path):
    from tinyhil.files import OutputError, atomic_write

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stray = tmp_path / f".t.csv.{int(dead.stdout)}.tmp"
    stray.write_text("half a table")
    # not this file's, or a writer still alive: left alone
    others = [f".t.csv.x.{int(dead.stdout)}.tmp", f".t.{int(dead.stdout)}.tmp", f".t.csv.{os.getppid()}.tmp"]
    for name in others:
        (tmp_path / name).write_text("another's")
    atomic_write(tmp_path / "t.csv", "whole\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["t.csv", *others])
    for name in others:
        (tmp_path / name).unlink()
    with read_only(tmp_path):
        with pytest.raises(OutputError, match="t.csv: cannot write it"):
            atomic_write(tmp_path / "t.csv", "again\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_read_only_outputs_are_refused_before_measuring(tmp_path, monkeypatch):
    import tinyhil.measure.model
    import tinyhil.validate

    monkeypatch.setattr(tinyhil.measure.model, "build_image", never("the model was built"))
    monkeypatch.setattr(tinyhil.validate.ImageRunner, "run", never("architectures were measured"))
    model = ROOT / "luts/qemu-m4/ops.csv"  # never read: the output is checked first
    regular = tmp_path / "notes.txt"
    regular.write_text("a regular file")
    fails_clearly(["run", model, "--json", regular / "report.json"],
                  f"{regular / 'report.json'}", f"{regular} is a file, not a directory")

    report = tmp_path / "out"
    report.mkdir()
    with read_only(report):
        fails_clearly(["validate", "--space", "micronas", "--input", "128x9", "--classes", "6",
                       "--n", "2", "--luts", ROOT / "luts", "--out", report],
                      f"{report}: cannot write the validation report there")

        inventory = tmp_path / "lab.yaml"
        inventory.write_text(yaml.safe_dump({"boards": [{"name": "m4", "board": "qemu-m4"}]}))
        suite = tmp_path / "suite.yaml"
        suite.write_text(yaml.safe_dump({"name": "s", "deployments": "", "lut_sample": 1}))
        fails_clearly(["regress", "--inventory", inventory, "--suite", suite, "--baseline", tmp_path,
                       "--out", report], f"{report / 'history.csv'}: cannot write the regression history")


def test_export_c_into_a_read_only_directory(tmp_path, models_dir):
    import tensorflow as tf

    model = make_int8_model(models_dir / "export.tflite", [tf.keras.layers.Dense(4)], (8,))
    out = tmp_path / "c"
    out.mkdir()
    with read_only(out):
        fails_clearly(["export-c", model, "--out", out], f"{out / 'g_model.h'}: cannot write it")
    assert list(out.iterdir()) == []


def _lut_copy(tmp_path) -> Path:
    board = tmp_path / "luts" / "qemu-m4"
    board.mkdir(parents=True)
    for suffix in (".csv", ".meta.json"):
        shutil.copy(ROOT / "luts/qemu-m4" / f"micronas-128x9-c6{suffix}", board / f"micronas-128x9-c6{suffix}")
    return board / "micronas-128x9-c6.csv"


def test_an_extra_comma_on_the_first_data_line_is_named(tmp_path):
    lut = _lut_copy(tmp_path)
    lines = lut.read_text().splitlines(keepends=True)
    lines[1] = lines[1].rstrip("\n") + ",\n"
    lut.write_text("".join(lines))
    from tinyhil.lut.table import COLUMNS

    fails_clearly(["lut", "show", lut],
                  f"{lut}: line 2: {len(COLUMNS) + 1} fields where a row has {len(COLUMNS)} (a stray comma?)")


def test_metadata_that_is_not_an_object_or_has_a_text_clock(tmp_path):
    lut = _lut_copy(tmp_path)
    sidecar = lut.with_suffix(".meta.json")
    good = json.loads(sidecar.read_text())
    sidecar.write_text("[]")
    fails_clearly(["lut", "show", lut], f"{sidecar}: metadata must be a JSON object, not list")
    sidecar.write_text(json.dumps({**good, "clock_hz": "fast"}))
    fails_clearly(["lut", "show", lut], f"{sidecar}: clock_hz is 'fast', not a positive whole number of Hz")
    sidecar.write_text(json.dumps({k: v for k, v in good.items() if k != "board"}))
    fails_clearly(["lut", "show", lut], f"{sidecar}: metadata lacks 'board'")


def _run_dir(tmp_path, **changes) -> Path:
    from tinyhil.lut.table import Lut
    from tinyhil.nas.constraints import profile
    from tinyhil.nas.engines import DataSpec, SearchRun, Targets
    from tinyhil.spaces import make_space, sample_architecture

    lut = Lut.load(ROOT / "luts/qemu-m4/micronas-128x9-c6.csv")
    arch = sample_architecture(make_space("micronas", 128, 9, 6), np.random.default_rng(0))
    run = SearchRun("micronas", "qemu-m4", DataSpec("synthetic128x9c6"), 6, (128, 9), arch,
                    Targets(), profile(arch, lut), str(lut.path))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({**run.to_dict(), **changes}, default=float))
    return run_dir


@pytest.mark.parametrize("changes, message", [
    ({"input": [100, 6, 7]}, "input is [100, 6, 7], not [window, channels]"),
    ({"input": ["128", "9"]}, "input is ['128', '9'], not [window, channels]"),
    ({"classes": "6"}, "classes is '6', not a positive whole number"),
    ({"targets": {"latency_ms": "40ms"}}, "targets.latency_ms is '40ms', not a number"),
])
def test_a_damaged_run_json_is_named_before_deploying(tmp_path, monkeypatch, changes, message):
    import tinyhil.deploy.deployment
    import tinyhil.measure.characterize

    monkeypatch.setattr(tinyhil.measure.characterize.Characterizer, "run", never("ops were characterized"))
    monkeypatch.setattr(tinyhil.deploy.deployment, "trained_model", never("the model was trained"))
    run_dir = _run_dir(tmp_path, **changes)
    fails_clearly(["deploy", run_dir, "--luts", ROOT / "luts"], f"{run_dir / 'run.json'}: {message}")


def test_an_empty_csv_data_set_is_named(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    fails_clearly(["search", "micronas", "--data", empty, "--window", "4", "--out", tmp_path / "run"],
                  f"{empty}: the file is empty")


def test_characterize_has_no_upload_limit(tmp_path, monkeypatch):
    """Characterization inputs are generated on the device from a seed: an input
    larger than one RUN request is no reason to refuse the op."""
    import tinyhil.measure.runner
    from tinyhil.errors import BuildFailed

    built = []

    def build(spec, board, log=None, on_stage=None):
        built.append(spec)
        raise BuildFailed("stopped here by the test: the image was accepted")

    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tinyhil.measure.runner, "build_image", build)
    luts = complete_luts(tmp_path)  # overheads known: only the op itself is made
    fails_clearly(["characterize", "--space", "tinytnas", "--input", "100000x1", "--classes", "2",
                   "--limit", "1", "--luts", luts], "stopped here by the test")
    assert built and built[0].seeded_inputs
    assert max(b.input_bytes for b in built[0].benchmarks) >= 100000
    # an uploaded input is still bounded by what one request carries
    with pytest.raises(TinyhilError, match="exceeds the 65528 bytes one RUN request carries"):
        ImageSpec("qemu-m4", (Benchmark("big", b"x", ("CONV_2D",), 100000),))


def test_any_file_name_gives_a_safe_stable_unique_benchmark_name():
    from tinyhil.image.sources import benchmark_name

    names = ["my model", "müdel", "a;b", "a_b", "a b", "ü" * 80, "", "conv1d_har", ";"]
    safe = [benchmark_name(n) for n in names]
    assert all(NAME_PATTERN.match(s) for s in safe), safe
    assert len(set(safe)) == len(names)  # "a b", "a;b" and "a_b" stay three
    assert safe == [benchmark_name(n) for n in names]  # stable: the same image id every run
    assert benchmark_name("conv1d_har") == "conv1d_har" and benchmark_name("müdel").startswith("mudel-")
    with pytest.raises(TinyhilError, match="more than once"):
        ImageSpec("qemu-m4", (Benchmark("a", b"x", ("CONV_2D",), 4), Benchmark("a", b"y", ("CONV_2D",), 4)))


@pytest.mark.parametrize("name", ["my model.tflite", "müdel.tflite", "a;b.tflite"])
def test_a_model_file_of_any_name_is_built(tmp_path, monkeypatch, models_dir, name):
    import tensorflow as tf

    import tinyhil.measure.model
    from tinyhil.errors import BuildFailed
    from tinyhil.image.sources import benchmark_name

    built = []

    def build(spec, board, log=None, on_stage=None):
        built.append(spec)
        raise BuildFailed("stopped here by the test: the image was accepted")

    monkeypatch.setattr(tinyhil.measure.model, "build_image", build)
    model = make_int8_model(models_dir / "named.tflite", [tf.keras.layers.Dense(4)], (8,))
    path = tmp_path / name
    shutil.copy(model, path)
    fails_clearly(["run", path], "stopped here by the test")
    (bench,) = built[0].benchmarks
    assert NAME_PATTERN.match(bench.name) and bench.name == benchmark_name(path.stem)


def test_an_int16_model_is_refused_before_building(tmp_path, monkeypatch):
    import tensorflow as tf

    import tinyhil.measure.model

    monkeypatch.setattr(tinyhil.measure.model, "build_image", never("the int16 model was built"))
    model = tf.keras.Sequential([tf.keras.layers.Input((16,)), tf.keras.layers.Dense(4)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random((1, 16), "float32")] for _ in range(8))
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int16
    path = tmp_path / "int16.tflite"
    path.write_bytes(converter.convert())
    fails_clearly(["run", path], "int16: input tensor", "is int16; tinyhil measures int8 models")


def test_suite_paths_stay_inside_the_project(tmp_path):
    from tinyhil.regress.suite import SuiteError, parse_suite

    for data, message in (({"models": ["../../../../etc/passwd"]}, "leads outside the project"),
                          ({"deployments": "/"}, "'/' is an absolute path"),
                          ({"deployments": "runs/../../.."}, "leads outside the project")):
        with pytest.raises(SuiteError, match=message):
            parse_suite(data, "suite.yaml")
    assert parse_suite({"models": ["examples/x.tflite"]}, "s").models == ("examples/x.tflite",)

    inventory = tmp_path / "lab.yaml"
    inventory.write_text(yaml.safe_dump({"boards": [{"name": "m4", "board": "qemu-m4"}]}))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "s", "deployments": "", "lut_sample": 0,
                                     "models": ["../../../../../../../../etc/passwd"]}))
    args = ["regress", "--inventory", inventory, "--baseline", tmp_path / "luts", "--out", tmp_path / "out"]
    fails_clearly([*args, "--suite", suite], f"{suite}: models: '../../../../../../../../etc/passwd' "
                  "leads outside the project")
    # a path outside, given on the command line, is the user's choice: it is read
    suite.write_text(yaml.safe_dump({"name": "s", "deployments": "", "lut_sample": 0}))
    outside = tmp_path / "outside.tflite"
    outside.write_bytes(b"not a model at all")
    fails_clearly([*args, "--suite", suite, "--model", outside], f"{outside.stem}: not a TFLite model")
