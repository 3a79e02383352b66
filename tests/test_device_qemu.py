"""End to end on the emulated boards: build, boot QEMU, measure over the pty."""
import os
import signal
import subprocess

import pytest

from conftest import make_int8_model
from tinyhil.bench.tflite_model import TfliteModel
from tinyhil.boards import get_board
from tinyhil.build.firmware import build_image
from tinyhil.device.boards import QemuBoard
from tinyhil.errors import BoardNotResponding
from tinyhil.project import cache_dir
from tinyhil.run import model_image, run_model

pytestmark = pytest.mark.device


@pytest.fixture(scope="module")
def small_conv(models_dir):
    import tensorflow as tf

    L = tf.keras.layers
    return make_int8_model(models_dir / "small_conv.tflite", [
        L.Conv1D(8, 3, activation="relu"), L.MaxPooling1D(2), L.Flatten(), L.Dense(4), L.Softmax(),
    ], (32, 3))


@pytest.fixture(scope="module")
def long_conv(models_dir):
    """Over 2**24 SysTick ticks per inference: the counter wraps inside Invoke()."""
    import tensorflow as tf

    return make_int8_model(models_dir / "long_conv.tflite",
                           [tf.keras.layers.Conv2D(32, (5, 1), padding="same", activation="relu")],
                           (128, 30, 16))


def qemu_pids(elf) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"qemu-system-arm.*{elf}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.boards("qemu-m4", "qemu-m33", "qemu-stm32f4")
def test_bit_exact_and_deterministic(board, small_conv):
    config = board.config
    first = board.run(small_conv, repeats=5, warmup=1)
    second = board.run(small_conv, repeats=5, warmup=1)
    assert first.output_matches, (first.device_output, first.host_output)
    assert first.device_output == first.host_output and len(first.device_output) == 8
    if board.emulated:  # identical counts on every repeat and on a second boot of the same image
        assert len(set(first.cycles)) == 1
        assert first.cycles == second.cycles and first.ops == second.ops
    assert second.cached_build
    assert first.counter == config.counter and first.core == config.core
    # one profile entry per op of the model, in execution order
    assert tuple(op.op for op in first.ops) == TfliteModel.load(small_conv).ops
    assert {"CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"} <= {op.op for op in first.ops}
    # the per-op profile accounts for the inference, less interpreter overhead
    assert 0.8 * first.cycles_median < sum(op.cycles for op in first.ops) <= first.cycles_median * 1.02
    assert 0 < first.arena_used < first.arena_bytes
    assert first.flash_bytes > first.model_bytes and first.ram_bytes > first.arena_bytes
    assert first.ms(first.cycles_median) == pytest.approx(first.cycles_median / config.clock_hz * 1e3)
    assert not qemu_pids(str(cache_dir() / "images"))  # this checkout's, not a neighbour's


def test_counter_wraps_inside_one_inference(long_conv):
    report = run_model(long_conv, get_board("qemu-m4"), repeats=3, warmup=0)
    ticks_per_instruction = 3.2  # 128 ns per instruction at 25 MHz
    assert report.cycles_median * ticks_per_instruction > 2**24
    assert len(set(report.cycles)) == 1
    (conv,) = [op for op in report.ops if op.op == "CONV_2D"]
    assert 0.95 * report.cycles_median < conv.cycles <= report.cycles_median
    assert report.output_matches


@pytest.fixture
def booted(small_conv):
    config = get_board("qemu-m4")
    model = TfliteModel.load(small_conv)
    image = build_image(model_image(model, config), config)
    board = QemuBoard(config, timeout=1.0, retries=2)
    board.boot(image)
    yield board, model
    board.close()


def test_resynchronises_after_garbage_on_the_line(booted):
    board, model = booted
    before = board.info
    for garbage in (b"\x00\xff" * 50, b"\xa5\x5a\x03\x01\x40\x00" + b"junk", b"\xa5" * 10):
        board.port.write(garbage)
        assert board.driver.info() == before
    assert board.driver.list()[0].name == model.name


def test_board_that_stops_answering_is_named(booted):
    board, _ = booted
    os.kill(board.qemu.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(BoardNotResponding, match=r"qemu-m4 did not answer INFO \(3 tries"):
            board.driver.info()
    finally:
        os.kill(board.qemu.process.pid, signal.SIGCONT)
    assert board.reset().build_id == board.image.image_id  # a reset brings it back


def test_no_qemu_left_behind_after_an_error(small_conv):
    config = get_board("qemu-m4")
    image = build_image(model_image(TfliteModel.load(small_conv), config), config)
    with pytest.raises(RuntimeError):
        with QemuBoard(config) as board:
            board.boot(image)
            pid = board.qemu.process.pid
            raise RuntimeError("test failure inside the with block")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
