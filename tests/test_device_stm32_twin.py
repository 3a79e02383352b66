"""The F446RE's bare-metal code on its emulated twin (QEMU netduinoplus2):
it boots although RCC is not modelled and DWT reads 0, says so in INFO, and
measures like the other emulated boards (bit-exactness and determinism are
checked with them in test_device_qemu.py)."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import make_int8_model
from tinyhil.board_catalog import get_board
from tinyhil.device.boards import QemuBoard
from tinyhil.errors import TinyhilError
from tinyhil.image.firmware import build_image
from tinyhil.lut.table import OK, Lut, read_rows
from tinyhil.measure.model import model_image, run_model
from tinyhil.models.tflite_model import TfliteModel
from tinyhil.project import cache_dir

pytestmark = pytest.mark.device

TWIN = "qemu-stm32f4"
COMMAND = [sys.executable, "-m", "tinyhil", "characterize", "--space", "micronas",
           "--input", "32x5", "--classes", "3", "--board", TWIN, "--limit", "24",
           "--per-image", "8"]


@pytest.fixture(scope="module")
def tiny_dense(models_dir):
    import tensorflow as tf

    return make_int8_model(models_dir / "tiny_dense.tflite",
                           [tf.keras.layers.Dense(8, activation="relu"), tf.keras.layers.Dense(3)],
                           (24,))


@pytest.fixture
def twin(tiny_dense):
    config = get_board(TWIN)
    image = build_image(model_image(TfliteModel.load(tiny_dense), config), config)
    board = QemuBoard(config, timeout=10.0)
    board.boot(image)
    yield board
    board.close()


def test_twin_boots_with_bounded_waits_and_says_what_it_could_not_set_up(twin):
    info = twin.info
    assert (info.board, info.core, info.counter) == (TWIN, "cortex-m4", "qemu-icount")
    assert info.clock_hz == info.counter_hz == 168_000_000  # QEMU's fixed netduinoplus2 clock
    # QEMU models no RCC: the PLL never locks, and the board reports it
    assert "clock: HSE (ST-LINK 8 MHz) not ready and PLL did not lock" in info.warnings
    assert "DWT CYCCNT did not advance, SysTick counts instead" in info.warnings
    assert info.clock_source == "hsi-16MHz"


def test_reset_into_another_image_is_named(twin, small_image_pair):
    """After a reset the board must run the image we built; here it runs the
    one booted first, and the host expected the other."""
    other = small_image_pair
    twin.image = other
    with pytest.raises(TinyhilError, match=rf"runs image \w+, expected {other.image_id}"):
        twin.reset()


@pytest.fixture
def small_image_pair(models_dir):
    import tensorflow as tf

    path = make_int8_model(models_dir / "other_dense.tflite", [tf.keras.layers.Dense(5)], (12,))
    config = get_board(TWIN)
    return build_image(model_image(TfliteModel.load(path), config), config)


def test_conv1d_har_bit_exact(tmp_path, models_dir):
    """A HAR-sized 1-D CNN (128x9 window, 6 classes) as the MicroNAS paper's."""
    import tensorflow as tf

    L = tf.keras.layers
    path = make_int8_model(models_dir / "har_conv.tflite", [
        L.Conv1D(16, 5, activation="relu"), L.MaxPooling1D(2), L.Conv1D(16, 5, activation="relu"),
        L.GlobalAveragePooling1D(), L.Dense(6), L.Softmax()], (128, 9))
    report = run_model(path, get_board(TWIN), repeats=3, warmup=1)
    assert report.output_matches and report.counter == "qemu-icount"
    assert len(set(report.cycles)) == 1  # exact instruction counts under -icount
    assert report.cycles_median == pytest.approx(sum(op.cycles for op in report.ops), rel=0.2)
    assert "PLL did not lock" in report.board_warnings


def count_rows(path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def test_characterize_killed_then_resumed(tmp_path, own_processes):
    luts = tmp_path / "luts"
    store = luts / TWIN / "ops.csv"
    env = own_processes.env(dict(os.environ, PYTHONUNBUFFERED="1"))
    process = subprocess.Popen([*COMMAND, "--luts", str(luts)], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while count_rows(store) < 9 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = read_rows(store, allow_torn_tail=True)
    assert 9 <= len(before) < 24, "the kill should land mid-run"
    time.sleep(0.5)
    # the QEMUs of the tinyhil this test killed only: the user's own, run alongside, are no leak
    assert not own_processes.matching(f"qemu-system-arm.*{re.escape(str(cache_dir() / 'images'))}"), \
        "QEMU outlived its tinyhil"

    subprocess.run([*COMMAND, "--luts", str(luts)], check=True, capture_output=True)
    after = read_rows(store)
    assert len(after) == 24 and not after.index.duplicated().any()
    assert (after.loc[before.index, "cycles"] == before["cycles"]).all()
    assert (after["status"] == OK).all()
    lut = Lut.load(luts / TWIN / "micronas-32x5-c3.csv")
    assert lut.meta.board == TWIN and lut.meta.counter == "qemu-icount"
    assert len(lut.rows) == 24 and lut.meta.invoke_cycles != 0
