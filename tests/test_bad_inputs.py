"""Bad input gets a clear error that names the problem."""
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_int8_model
from tinyhil.bench.tflite_model import TfliteModel
from tinyhil.boards import get_board
from tinyhil.build import firmware
from tinyhil.cli import app
from tinyhil.device import qemu
from tinyhil.errors import ImageTooLarge, InvalidModel, ToolMissing, UnknownBoard, UnsupportedOp
from tinyhil.run import run_model


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
    result = runner.invoke(app, ["run", str(bad), "--repeat", "0"])
    assert result.exit_code == 2 and "repeat" in result.output.lower()


def test_model_that_aborts_the_interpreter_is_an_error_not_a_crash(tmp_path):
    """A softmax whose input is constant (all logits zero): its input scale is
    ~0 and TFLite's Prepare aborts; tinyhil must survive and say so."""
    import tensorflow as tf

    from tinyhil.bench.convert import to_int8_tflite

    model = tf.keras.Sequential([tf.keras.layers.Input((4,), batch_size=1),
                                 tf.keras.layers.Dense(3, kernel_initializer="zeros"),
                                 tf.keras.layers.Softmax()])
    path = tmp_path / "dead.tflite"
    path.write_bytes(to_int8_tflite(model, list(np.zeros((4, 4), "float32"))))
    with pytest.raises(InvalidModel, match="crashed preparing it"):
        TfliteModel.load(path)
