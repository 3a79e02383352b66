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
    from tinyhil.board_catalog import get_board
    from tinyhil.image.firmware import build_image
    from tinyhil.measure.model import model_image
    from tinyhil.models.tflite_model import TfliteModel

    L = tf.keras.layers
    path = make_int8_model(models_dir / "recovery_conv.tflite",
                           [L.Conv1D(4, 3, activation="relu"), L.Flatten(), L.Dense(3)], (16, 2))
    config = get_board("qemu-m4")
    return build_image(model_image(TfliteModel.load(path), config), config)


@pytest.mark.device
def test_qemu_killed_between_requests_is_recovered(image):
    from tinyhil.device.boards import QemuBoard
    from tinyhil.device.recovery import run_with_recovery
    from tinyhil.protocol import RunRequest

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


def test_cached_model_that_fails_its_check_is_made_again(tmp_path, monkeypatch):
    from tinyhil.models.single_op import _generate, cached_models, model_path

    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path))
    made = []

    def make(n):
        made.append(n)
        return b"model %d" % n

    _generate("op/a", make, 1)
    _generate("op/a", make, 1)  # cached: not made twice
    assert made == [1] and cached_models(["op/a"]) == {"op/a": model_path("op/a")}
    path = model_path("op/a")
    path.write_bytes(b"model 2")  # same size, other bytes: a flipped bit on disk
    repaired = []
    assert cached_models(["op/a"], repaired) == {}
    assert repaired == [f"cached model {path} failed its check (its SHA-256 differs from the one "
                        "written): made again"]
    _generate("op/a", make, 1)
    assert made == [1, 1] and path.read_bytes() == b"model 1"
    path.write_bytes(b"model")  # cut short
    assert "5 bytes where 7 were written" in (repaired.clear() or cached_models(["op/a"], repaired)
                                              or repaired[0])


@pytest.mark.device
def test_corrupted_cached_image_is_built_again(image):
    from tinyhil.device.boards import QemuBoard
    from tinyhil.image.firmware import build_image

    good = image.elf.read_bytes()
    data = bytearray(good)
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)  # a corrupted stretch of code or model
    image.elf.write_bytes(bytes(data))
    again = build_image(image.spec, image.board)
    assert not again.cached and again.elf == image.elf
    assert again.repaired == (f"cached image {image.elf} failed its check (its SHA-256 differs "
                              "from the one written): built again")
    with QemuBoard(image.board, timeout=2.0) as board:
        assert board.boot(again).build_id == image.image_id
    assert build_image(image.spec, image.board).cached  # and it is the cache's again


@pytest.mark.device
def test_characterize_measures_again_a_cut_line_and_a_failed_op(tmp_path, root):
    """ops.csv seeded with the project's own rows: one cut short mid-file, one
    a failed attempt. Both ops are measured again, to the project's figures."""
    from tinyhil.board_catalog import get_board
    from tinyhil.lut.table import COLUMNS, read_rows, scan_rows
    from tinyhil.measure.characterize import Characterizer
    from tinyhil.spaces import make_space

    ops = make_space("micronas", 128, 9, 6).op_configs()[:4]
    reference_path = root / "luts" / "qemu-m4" / "ops.csv"
    reference = read_rows(reference_path)
    lines = reference_path.read_text().splitlines(keepends=True)
    by_key = {line.split(",", 1)[0]: line for line in lines[1:]}
    store = tmp_path / "qemu-m4" / "ops.csv"
    store.parent.mkdir()
    (tmp_path / "qemu-m4" / "ops.meta.json").write_text(
        (root / "luts" / "qemu-m4" / "ops.meta.json").read_text())
    cut = ",".join(by_key[ops[1].key].split(",")[:12]) + "\n"  # a torn write mid-file
    # a failed attempt as characterize writes it: the op's columns, no measured figure
    cells = dict(zip(COLUMNS, by_key[ops[2].key].rstrip("\n").split(",")))
    measured = ("cycles", "cycles_min", "cycles_max", "n", "kernel_cycles", "ms", "arena_bytes", "scratch_bytes")
    cells.update({c: "" for c in measured}, status="error: board qemu-m4 refused RUN benchmark 0: hard fault")
    failed = ",".join(cells[c] for c in COLUMNS) + "\n"
    store.write_text(lines[0] + by_key[ops[0].key] + cut + failed + by_key[ops[3].key])

    result = Characterizer(get_board("qemu-m4"), tmp_path, max_per_image=4).run(
        "micronas", 128, 9, 6, limit=4)
    assert result.already_measured == 2 and result.measured_now == 2
    assert any("line 3" in line and "12 fields" in line for line in result.report), result.report
    assert any("retried (attempt 2 of 3)" in line and ops[2].key in line for line in result.report), result.report
    assert not any("still failing" in line for line in result.report)
    scanned = scan_rows(store)  # whole again: no malformed line, one row per op
    assert not scanned.malformed and list(scanned.frame.index) == [op.key for op in
                                                                  (ops[0], ops[3], ops[1], ops[2])]
    rows = scanned.frame.loc[[op.key for op in ops]]
    assert (rows["status"] == "ok").all()
    for column in ("cycles", "kernel_cycles", "arena_bytes"):
        assert list(rows[column]) == list(reference.loc[rows.index, column])


@pytest.mark.device
def test_reflash_builds_again_an_image_damaged_while_it_ran(image):
    """The heaviest recovery step of an emulated board: its 'flash' is the
    cached ELF, which is built again when it no longer matches its checksum."""
    from tinyhil.device.boards import QemuBoard
    from tinyhil.files import checksum_problem

    with QemuBoard(image.board, timeout=2.0) as board:
        board.boot(image)
        data = bytearray(image.elf.read_bytes())
        data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
        image.elf.write_bytes(bytes(data))  # damaged while the board runs
        info = board.recover("reflash")
        assert info.build_id == image.image_id and checksum_problem(image.elf) is None
        assert not board.image.cached  # built again, not booted damaged
