"""Items measured while they are still being made (ImageRunner.run_stream)."""
import threading
from types import SimpleNamespace

import pytest

from tinyhil.board_catalog import get_board
from tinyhil.measure import runner as measure
from tinyhil.measure.runner import ImageRunner, Item, Measurement
from tinyhil.verdict import OK


@pytest.fixture
def runner(monkeypatch):
    """A runner whose builds and board are stand-ins that record what they get."""
    built, made_before_build = [], []
    made = []

    def build_image(spec, board, on_stage=None):
        made_before_build.append(len(made))
        FIRST_BUILD.set()
        built.append([b.name for b in spec.benchmarks])
        return SimpleNamespace(spec=spec, repaired="")

    def boot(self, build):
        image, build_s = build.result()
        return SimpleNamespace(image=image, build_s=build_s, boot_s=0.0, board=None, info=None, error=None)

    def run_image(self, image, items, task, booted=None, between=None):
        for item in items:
            yield Measurement(item, OK)
            if between:
                between()

    monkeypatch.setattr(measure, "build_image", build_image)
    monkeypatch.setattr(ImageRunner, "_boot", boot)
    monkeypatch.setattr(ImageRunner, "_run_image", run_image)
    runner = ImageRunner(get_board("qemu-m4"), max_per_image=10)
    return runner, built, made, made_before_build


FIRST_BUILD = threading.Event()


def items(made, n, fail_at=None, wait_at=None):
    model = SimpleNamespace(flatbuffer=bytes(100), ops=("ADD",), input_bytes=4)
    for i in range(n):
        if i == wait_at:  # a slow model: the first image must be building meanwhile
            assert FIRST_BUILD.wait(60), "no image was built while models were still being made"
        if i == fail_at:
            raise RuntimeError(f"model {i} could not be made")
        made.append(i)
        yield Item(f"b{i}", model, i)


def test_stream_packs_in_order_and_builds_before_all_items_exist(runner):
    runner, built, made, made_before_build = runner
    FIRST_BUILD.clear()
    names = [m.item.name for m in runner.run_stream(items(made, 25, wait_at=15), 25)]
    assert names == [f"b{i}" for i in range(25)]
    assert built == [[f"b{i}" for i in range(s, min(s + 10, 25))] for s in (0, 10, 20)]
    assert made_before_build[0] <= 15  # built while models were still being made


def test_a_failure_making_items_reaches_the_caller_after_what_was_measured(runner):
    runner, built, made, _ = runner
    seen = []
    with pytest.raises(RuntimeError, match="model 13 could not be made"):
        for m in runner.run_stream(items(made, 25, fail_at=13), 25):
            seen.append(m.item.name)
    assert seen == [f"b{i}" for i in range(10)]  # the full image before the failure
    assert not [t for t in threading.enumerate() if t.name == "tinyhil-pack"]


class StandInBoard:
    """A board that boots at once and says so; it records being closed."""

    driver = None  # nothing asked of it but to boot

    def __init__(self, log):
        self.log = log
        self.config = get_board("qemu-m4")
        self.closed = False

    def boot(self, image):
        self.log.append(("boot", image.spec.benchmarks[0].name))
        return SimpleNamespace(board="qemu-m4")

    def recover(self, step):
        raise AssertionError("a stand-in board never needs recovering")

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def booting_runner(monkeypatch):
    """A runner that builds at once and boots stand-in boards; measuring an
    item logs it, and the first image's last item waits for the next boot."""
    log, boards = [], []
    next_booted = threading.Event()

    def build_image(spec, board, on_stage=None):
        return SimpleNamespace(spec=spec, repaired="")

    def open_device():
        boards.append(StandInBoard(log))
        if len(boards) == 2:
            next_booted.set()  # (set on opening; boot follows at once in the same thread)
        return boards[-1]

    def run_one(self, board, index, item, image, info, answered=None):
        if item.name == "b9":  # the first image's last item: the next image boots meanwhile
            assert next_booted.wait(30), "the next image did not boot while this one was measured"
        log.append(("measure", item.name))
        return Measurement(item, OK)

    monkeypatch.setattr(measure, "build_image", build_image)
    monkeypatch.setattr(ImageRunner, "_run_one", run_one)
    runner = ImageRunner(get_board("qemu-m4"), max_per_image=10, open_device=open_device)
    return runner, log, boards


def test_the_next_image_boots_while_this_one_is_measured(booting_runner):
    runner, log, boards = booting_runner
    names = [m.item.name for m in runner.run_stream(items([], 25), 25)]
    assert names == [f"b{i}" for i in range(25)]
    assert log.index(("boot", "b10")) < log.index(("measure", "b9"))
    assert len(boards) == 3 and all(board.closed for board in boards)


def test_a_board_booted_ahead_and_never_measured_is_closed(booting_runner):
    runner, log, boards = booting_runner
    stream = runner.run_stream(items([], 25), 25)
    for m in stream:
        if m.item.name == "b9":
            break
    stream.close()  # the caller stops (Ctrl-C, an error of its own) with the next images booted
    assert len(boards) >= 2 and all(board.closed for board in boards)


def test_a_physical_board_is_not_booted_ahead():
    assert not ImageRunner(get_board("nucleo_f446re")).preboot and ImageRunner(get_board("qemu-m4")).preboot
