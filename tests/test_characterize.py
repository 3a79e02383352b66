"""Characterization on the emulated board: resume, Eq. 2 off the grid, flags."""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinyhil.board_catalog import get_board
from tinyhil.lut.interpolate import channels_alpha, expected, hw_matrix
from tinyhil.lut.table import OK, Lut, read_rows
from tinyhil.measure.characterize import Characterizer
from tinyhil.measure.runner import Item
from tinyhil.models.tflite_model import TfliteModel
from tinyhil.project import cache_dir
from tinyhil.spaces import ops
from tinyhil.spaces.micronas import DynamicConv

pytestmark = pytest.mark.device

COMMAND = [sys.executable, "-m", "tinyhil", "characterize", "--space", "micronas",
           "--input", "32x5", "--classes", "3", "--board", "qemu-m4", "--limit", "48",
           "--per-image", "12"]


def count_rows(path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def test_killed_run_resumes_without_losing_or_duplicating_rows(tmp_path, own_processes):
    luts = tmp_path / "luts"
    store = luts / "qemu-m4" / "ops.csv"
    env = own_processes.env(dict(os.environ, PYTHONUNBUFFERED="1"))
    process = subprocess.Popen([*COMMAND, "--luts", str(luts)], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while count_rows(store) < 15 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # as hard as a crash: no clean-up runs
    process.wait()
    before = read_rows(store, allow_torn_tail=True)
    assert 15 <= len(before) < 48, "the kill should land mid-run"
    time.sleep(0.5)
    # the QEMUs of the tinyhil this test killed only: the user's own, or other checkouts', run alongside
    assert not own_processes.matching(f"qemu-system-arm.*{re.escape(str(cache_dir() / 'images'))}"), \
        "QEMU outlived its tinyhil"

    subprocess.run([*COMMAND, "--luts", str(luts)], check=True, capture_output=True)
    after = read_rows(store)
    assert len(after) == 48 and not after.index.duplicated().any()
    kept = after.loc[before.index]  # rows measured before the kill are untouched
    assert (kept["cycles"] == before["cycles"]).all()
    assert (after["status"] == OK).all()
    lut = Lut.load(luts / "qemu-m4" / "micronas-32x5-c3.csv")
    assert len(lut.rows) == 48 and lut.meta.space == "micronas" and lut.meta.extra["ops_in_space"] == 48
    assert lut.meta.invoke_cycles != 0  # overheads measured once, with the first image


def test_runs_per_op_follow_the_counter(tmp_path):
    """One timed run, no warm-up, where counts repeat exactly; a warm-up and
    three on a physical board; --repeats still wins."""
    emulated, physical = get_board("qemu-m4"), get_board("nucleo_f446re")
    assert emulated.exact_counts and not physical.exact_counts
    for board, runs in ((emulated, (0, 1)), (physical, (1, 3))):
        runner = Characterizer(board, tmp_path).runner
        assert (runner.warmup, runner.repeats) == runs
    assert Characterizer(emulated, tmp_path, repeats=5).runner.repeats == 5


def test_eq2_predicts_off_grid_channel_counts(tmp_path):
    """Measure a 2x2 grid and the convolutions between its points; Eq. 2 with
    interpolating alphas must land within 3 % of the direct measurement."""
    dyn = DynamicConv("c", (16, 3, 0), (5, 1), (1, 1), (8, 16), (8, 16))
    off_grid = [(12, 12), (8, 12), (12, 16)]
    grid_ops = [op for row in dyn.grid() for op in row]
    characterizer = Characterizer(get_board("qemu-m4"), tmp_path)
    characterizer.measure_ops(grid_ops + [dyn.op(cin, cout) for cin, cout in off_grid])
    rows = read_rows(tmp_path / "qemu-m4" / "ops.csv")
    cost = lambda op: float(rows.loc[op.key, "cycles"])  # noqa: E731
    hw = hw_matrix(dyn, cost)
    for cin, cout in off_grid:
        estimate = expected(hw, channels_alpha((8, 16), cin), channels_alpha((8, 16), cout))
        measured = cost(dyn.op(cin, cout))
        assert estimate == pytest.approx(measured, rel=0.03), (cin, cout)
        assert not np.isclose(estimate, cost(dyn.op(8, 8)))


def test_output_differing_from_the_host_is_flagged_not_recorded(tmp_path):
    """Per-channel FULLY_CONNECTED, which the pinned TFLM computes per tensor."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.layers.Input((32,), batch_size=1),
                                 tf.keras.layers.Dense(16)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.random.randn(1, 32).astype("float32")]
                                                for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    per_channel = TfliteModel.from_bytes(converter.convert(), "per_channel_fc")
    op = ops.dense(32, 16, "none")
    characterizer = Characterizer(get_board("qemu-m4"), tmp_path)
    characterizer.measure_items([Item("per-channel-fc", per_channel, 7, op)])
    row = read_rows(tmp_path / "qemu-m4" / "ops.csv").loc[op.key]
    # the CRCs differ, so the output's bytes were asked for: how far off is said
    assert re.match(r"mismatch: outputs differ from the host TFLite interpreter by up to \d+ steps",
                    row["status"]), row["status"]
    assert characterizer.timing.flagged


def test_output_one_step_off_is_graded_from_its_bytes(tmp_path):
    """The board's output comes back as a CRC; one that differs from the host's
    is asked for again as bytes, so a rounding step (usable) is told apart from
    a mismatch, as when every output came back as bytes."""
    op = ops.dense(16, 256, "relu")  # one of its 256 outputs rounds one step off the host's
    characterizer = Characterizer(get_board("qemu-m4"), tmp_path)
    characterizer.measure_ops([op])
    row = read_rows(tmp_path / "qemu-m4" / "ops.csv").loc[op.key]
    assert row["status"].startswith("lsb1: 1 of 256 outputs one step off"), row["status"]
    assert row["cycles"] > 0 and row["kernel_cycles"] > 0


def test_the_summary_sets_the_measuring_beside_the_emulators_ceiling(tmp_path):
    """The instructions the image ran (the firmware's busy ticks), QEMU's pace
    sampled on the run's largest op, and their quotient: the emulator's limit."""
    from tinyhil.cli.characterize import emulator_ceiling_rows

    op_list = [ops.conv((64, 1, 16), 32, (5, 1)), ops.conv((32, 1, 8), 16, (3, 1)), ops.dense(256, 64)]
    characterizer = Characterizer(get_board("qemu-m4"), tmp_path)
    characterizer.measure_ops(op_list)
    t = characterizer.timing
    rows = read_rows(tmp_path / "qemu-m4" / "ops.csv")
    inferences = 2 * rows["cycles"].sum()  # each op's profiled and timed Invoke
    assert t.images == 1 and t.guest_images == 1
    assert inferences < t.guest_instructions < inferences + 10e6  # and the runner's work around them
    assert t.rate_samples == 1 and 50e6 < t.guest_rate < 5e9
    assert t.ceiling_s == pytest.approx(t.guest_instructions / t.guest_rate)
    assert [label for label, _ in emulator_ceiling_rows(t)] == [
        "guest instructions run", "QEMU's pace", "emulator ceiling"]
