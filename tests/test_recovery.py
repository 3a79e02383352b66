"""Recovery from a QEMU that dies between requests or while booting: every
such death goes through the board's recovery steps, never ends the run."""
import os
import signal
import subprocess
import termios
import time

import pytest

from tinyhil.device.driver import BenchDriver
from tinyhil.errors import BoardNotResponding


class _DeadPty:
    """What pyserial does on a pty whose QEMU has gone: tcflush fails with
    termios.error, which is not an OSError."""

    in_waiting = 0

    def reset_input_buffer(self):
        raise termios.error(5, "Input/output error")

    def write(self, data):  # pragma: no cover - never reached
        raise AssertionError("wrote to a dead port")


def test_termios_error_is_a_lost_link_not_a_crash():
    driver = BenchDriver(_DeadPty(), "qemu-m4", timeout=1.0)
    with pytest.raises(BoardNotResponding, match=r"serial link lost during INFO .*Input/output"):
        driver.info()


def _wait_dead(process) -> None:
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is not None


@pytest.fixture
def image(models_dir):
    import tensorflow as tf

    from conftest import make_int8_model
    from tinyhil.bench.tflite_model import TfliteModel
    from tinyhil.boards import get_board
    from tinyhil.build.firmware import build_image
    from tinyhil.run import model_image

    L = tf.keras.layers
    path = make_int8_model(models_dir / "recovery_conv.tflite",
                           [L.Conv1D(4, 3, activation="relu"), L.Flatten(), L.Dense(3)], (16, 2))
    config = get_board("qemu-m4")
    return build_image(model_image(TfliteModel.load(path), config), config)


@pytest.mark.device
def test_qemu_killed_between_requests_is_recovered(image):
    from tinyhil.device.boards import QemuBoard
    from tinyhil.device.recovery import run_with_recovery
    from tinyhil.device.protocol import RunRequest

    with QemuBoard(image.board, timeout=2.0) as board:
        board.boot(image)
        first = run_with_recovery(board, RunRequest(0, warmup=1, repeats=2, seed=1))
        qemu = board.qemu.process
        os.kill(qemu.pid, signal.SIGKILL)  # between two requests: the host is idle
        _wait_dead(qemu)
        again = run_with_recovery(board, RunRequest(0, warmup=1, repeats=2, seed=1))
        assert board.recoveries["reset"] == 1 and board.qemu.alive()
        cycles = lambda reply: [board.ticks_to_cycles(t) for t in reply.repeat_ticks]  # noqa: E731
        assert cycles(again) == cycles(first) and again.output_crc == first.output_crc


@pytest.mark.device
def test_qemu_killed_before_its_pty_is_recovered(image, monkeypatch):
    from tinyhil.device import qemu as qemu_module
    from tinyhil.device.boards import QemuBoard
    from tinyhil.device.recovery import boot_with_recovery

    real_popen = subprocess.Popen
    killed = []

    def popen_killed_at_once(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        if not killed:  # the first QEMU dies before it can print its pty
            process.kill()
            killed.append(process.pid)
        return process

    monkeypatch.setattr(qemu_module.subprocess, "Popen", popen_killed_at_once)
    with QemuBoard(image.board, timeout=2.0) as board:
        info = boot_with_recovery(board, image)
        assert killed and info.build_id == image.image_id
        assert board.recoveries["reset"] == 1 and board.qemu.process.pid != killed[0]
