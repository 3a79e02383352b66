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

    def run_image(self, image, items, task):
        for item in items:
            yield Measurement(item, OK)

    monkeypatch.setattr(measure, "build_image", build_image)
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
