"""End to end on the emulated boards: build, boot QEMU, measure over the pty."""
import os
import re
import signal

import pytest

from conftest import make_int8_model
from tinyhil.board_catalog import get_board
from tinyhil.device import driver as driver_module
from tinyhil.device.boards import QemuBoard
from tinyhil.device.fault_proxy import FaultPlan, FaultProxy
from tinyhil.errors import BoardNotResponding
from tinyhil.image.firmware import build_image
from tinyhil.measure.model import measure, model_image, run_model
from tinyhil.models.tflite_model import TfliteModel
from tinyhil.project import cache_dir

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


@pytest.fixture(scope="module")
def har_conv(models_dir):
    """A 1-D CNN on 128x9 windows, about as long as examples/conv1d_har.tflite:
    a RUN of a few hundred repeats lasts long enough to be written to mid-way."""
    import tensorflow as tf

    L = tf.keras.layers
    return make_int8_model(models_dir / "har_conv.tflite", [
        L.Conv1D(16, 5, activation="relu"), L.MaxPooling1D(2), L.Conv1D(16, 5, activation="relu"),
        L.GlobalAveragePooling1D(), L.Dense(6), L.Softmax(),
    ], (128, 9))


@pytest.mark.boards("qemu-m4", "qemu-m33", "qemu-stm32f4")
def test_bit_exact_and_deterministic(board, small_conv, own_processes):
    config = board.config
    first = board.run(small_conv, repeats=5, warmup=1)
    second = board.run(small_conv, repeats=5, warmup=1)
    assert first.output_matches, (first.device_output, first.host_output)
    assert first.device_output == first.host_output and len(first.device_output) == 8
    if board.emulated:  # identical counts on every repeat and on a second boot of the same image
        assert len(set(first.cycles)) == 1
        assert first.cycles == second.cycles and first.ops == second.ops
        # the first Invoke as well: characterization runs no warm-up there (default_runs)
        cold = board.run(small_conv, repeats=2, warmup=0)
        assert cold.cycles == first.cycles[:2] and config.default_runs() == (0, 1)
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
    # none of this test's QEMUs is left (a user's, or a neighbour checkout's, running alongside is no leak)
    assert not own_processes.matching(f"qemu-system-arm.*{re.escape(str(cache_dir() / 'images'))}")


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


def test_a_long_run_is_waited_for_not_resent(long_conv):
    """A RUN's timeout scales with its work: 300 inferences of ~25 ms each on a
    board whose reply timeout is 1 s are waited for, never resent (a resend
    while the board measures would queue a second run behind the first)."""
    from tinyhil.protocol import RunRequest

    config = get_board("qemu-m4")
    image = build_image(model_image(TfliteModel.load(long_conv), config), config)
    with QemuBoard(config, timeout=1.0, retries=2) as board:
        board.boot(image)
        request = RunRequest(0, warmup=1, repeats=300, profile=True, output_crc_only=True, seed=3)
        reply = board.driver.run(request)
        assert board.driver.resends == 0
        assert len(reply.repeat_ticks) == 300 and len(set(reply.repeat_ticks)) == 1
        # learnt from the first inference: the timeout covers the work asked, many times over
        work = 302 * reply.repeat_ticks[0] / (board.info.counter_hz * 128e-9 * 600e6)
        assert board.driver.run_timeout(request) > 3 * work + 1.0
        again = board.driver.run(RunRequest(0, warmup=0, repeats=2, seed=3))
        assert again.repeat_ticks[0] == reply.repeat_ticks[0] and board.driver.resends == 0


def behind_proxy(config, plan, proxies):
    """open_device for run_model: a QEMU board whose line goes through a FaultProxy."""
    def open_device():
        device = QemuBoard(config)
        proxies.append(FaultProxy(plan))
        device.link = proxies[-1]
        return device
    return open_device


def test_noise_while_measuring_changes_no_count(har_conv):
    """Bytes arriving during timed Invokes (garbage in the board's pty) used to
    run the UART interrupt inside the timed window: +4 instructions in a repeat
    or an op. The RUN (1000 repeats) lasts well beyond the noise's 0.3 s window."""
    config = get_board("qemu-m4")
    clean = run_model(har_conv, config, repeats=1000)
    assert len(set(clean.cycles)) == 1
    for seed in (1, 2):
        proxies = []
        plan = FaultPlan(seed=seed, to_host=0.0, to_board=0.0, noise=1.0, noise_window_s=0.3)
        noisy = run_model(har_conv, config, repeats=1000, open_device=behind_proxy(config, plan, proxies))
        for proxy in proxies:
            proxy.close()
        # every RUN got noise: the measuring one (and the one-inference RUN that sizes its timeout)
        assert sum(p.faults["noise"] for p in proxies) >= 1
        assert noisy.cycles == clean.cycles
        assert noisy.ops == clean.ops and noisy.device_output == clean.device_output


def test_run_resent_while_measuring_changes_no_count(har_conv, monkeypatch):
    """`tinyhil run --repeats 1000 --timeout 0.3s`: the driver resends RUN while the
    board is still measuring; the resent bytes arrive in timed windows."""
    config = get_board("qemu-m4")
    clean = run_model(har_conv, config, repeats=1000)
    model = TfliteModel.load(har_conv)
    image = build_image(model_image(model, config), config)
    relay = FaultProxy(FaultPlan(to_host=0.0, to_board=0.0))  # faultless: it counts the frames
    with QemuBoard(config) as board:
        board.link = relay
        info = board.boot(image)
        # A timeout far below the RUN's length makes the driver resend it while
        # the board measures; the many retries leave room for a loaded machine.
        # (No floor and no work-scaled timeout here: this test wants the resends.)
        monkeypatch.setattr(driver_module, "RUN_FLOOR_SECONDS", 0.0)
        board.driver.ticks_per_second = 0.0
        board.driver.timeout, board.driver.retries = 0.3, 100
        resent = measure(image, info, board, model, model.random_input(0), repeats=1000, warmup=1)
    relay.close()
    assert relay.frames["to_board"] >= 3  # INFO, RUN and at least one resend
    assert resent.cycles == clean.cycles and resent.ops == clean.ops


def test_a_batch_counts_as_its_runs_alone_and_the_board_counts_its_work():
    """BATCH (one request, a reply per benchmark) gives the replies the same
    RUNs sent one by one give, noise on the line in the middle of it changes
    no count, and INFO's busy ticks grow by at least the inferences' ticks."""
    from tinyhil.measure.runner import ImageRunner, Item
    from tinyhil.models.single_op import prepare_model
    from tinyhil.protocol import BatchRequest, RunRequest
    from tinyhil.spaces import ops

    config = get_board("qemu-m4")
    op_list = [ops.conv((32, 1, 8), 16, (3, 1)), ops.dense(64, 16, "relu"), ops.softmax(10),
               ops.conv((16, 1, 16), 8, (5, 1), (2, 1)), ops.dense(16, 256, "relu")]
    prepared = [prepare_model(op) for op in op_list]
    items = [Item(f"b{n}", p.model, 1000 + n, p.op) for n, p in enumerate(prepared)]
    image = build_image(ImageRunner(config).image_spec(items), config)
    with QemuBoard(config, timeout=5.0) as board:
        info = board.boot(image)
        assert info.batch and BatchRequest.capacity(info.max_request) >= len(items)
        alone = [board.driver.run(RunRequest(i, warmup=0, repeats=1, seed=item.seed, output_crc_only=True))
                 for i, item in enumerate(items)]
        before = board.driver.info().busy_ticks
        batch = BatchRequest(0, tuple(item.seed for item in items))
        together = []
        for k, reply in board.driver.run_batch(batch):
            together.append((k, reply))
            if k == 1:
                board.port.write(b"\x00\xff\x13" * 4)  # noise while the board runs the rest
        after = board.driver.info().busy_ticks
        assert together == list(enumerate(alone))
        inferences = sum(2 * reply.repeat_ticks[0] for reply in alone)  # profiled and timed
        assert inferences < after - before < 4 * inferences
        assert board.driver.run(RunRequest(2, warmup=0, repeats=1, seed=items[2].seed,
                                           output_crc_only=True)) == alone[2]  # the board took requests again
