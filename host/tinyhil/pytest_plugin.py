"""pytest plugin (entry point `pytest11`): device tests on any board.

    pytest --board qemu-m4                 # an emulated board (the default)
    pytest --board nucleo_f446re --board-port /dev/ttyACM0
    pytest --board rack2-m4 --inventory boards/lab.yaml   # a farm board, labgrid included

In the conventions of pytest-embedded: command-line options name the target,
a `board_name` fixture holds it (parametrize it with `indirect=True` to run a
test on several boards), and the `board` fixture hands the test a ready
board to run models on; it is closed after the test whatever happens.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

DEFAULT_BOARD = "qemu-m4"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("tinyhil", "tinyhil device tests")
    group.addoption("--board", default=None,
                    help=f"board to run device tests on: a PlatformIO environment or an "
                         f"inventory name (default {DEFAULT_BOARD})")
    group.addoption("--board-port", default="", help="serial port of a physical board")
    group.addoption("--board-timeout", type=float, default=30.0, help="seconds per reply")
    group.addoption("--inventory", default=None, help="board inventory YAML (tinyhil regress)")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "device: runs firmware on a board (emulated by default)")
    config.addinivalue_line("markers", "boards(*names): the boards a test runs on when no "
                                       "--board is given (default: just qemu-m4)")


def pytest_generate_tests(metafunc) -> None:
    """`--board X` runs every board test on X; without it, a test marked
    `boards(...)` runs once on each board named there."""
    if "board_name" not in metafunc.fixturenames:
        return
    if any(getattr(m, "args", None) and m.args[0] == "board_name"
           for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test chose its boards itself
    chosen = metafunc.config.getoption("--board")
    marker = metafunc.definition.get_closest_marker("boards")
    names = [chosen] if chosen else list(marker.args) if marker else [DEFAULT_BOARD]
    metafunc.parametrize("board_name", names, indirect=True)


def pytest_report_header(config) -> str:
    return f"tinyhil board: {config.getoption('--board') or DEFAULT_BOARD}"


@dataclass
class BoardUnderTest:
    """What a device test gets: the board's description and ways to use it."""

    name: str
    config: object  # BoardConfig
    port: str
    timeout: float
    farm_board: object | None = None  # FarmBoard, when it comes from an inventory

    @property
    def emulated(self) -> bool:
        return self.config.emulated

    def open(self):
        """A Board (strategy) not yet booted: `with board.open() as b: b.boot(image)`."""
        if self.farm_board is not None:
            return self.farm_board.open(self.timeout)
        from tinyhil.device.boards import open_board

        return open_board(self.config, port=self.port, timeout=self.timeout)

    def run(self, model: Path, repeats: int = 5, warmup: int = 1, seed: int = 0):
        """Builds, boots, measures MODEL: a RunReport (cycles, per-op profile, bit-exactness)."""
        from tinyhil.device.recovery import boot_with_recovery
        from tinyhil.image.firmware import build_image
        from tinyhil.measure.model import measure, model_image
        from tinyhil.models.tflite_model import TfliteModel

        tflite = TfliteModel.load(model)
        image = build_image(model_image(tflite, self.config), self.config)
        with self.open() as device:
            info = boot_with_recovery(device, image)
            return measure(image, info, device, tflite, tflite.random_input(seed), repeats, warmup)

    @contextmanager
    def booted(self, model: Path):
        """A board running MODEL's image, for tests that talk to it themselves."""
        from tinyhil.image.firmware import build_image
        from tinyhil.measure.model import model_image
        from tinyhil.models.tflite_model import TfliteModel

        tflite = TfliteModel.load(model)
        image = build_image(model_image(tflite, self.config), self.config)
        with self.open() as device:
            device.boot(image)
            yield device


@pytest.fixture
def board_name(request) -> str:
    """The board's name: `--board`, or the test's indirect parameter."""
    return getattr(request, "param", None) or request.config.getoption("--board") or DEFAULT_BOARD


@pytest.fixture
def board(request, board_name) -> BoardUnderTest:
    from tinyhil.board_catalog import load_boards
    from tinyhil.errors import TinyhilError

    options = request.config.option
    farm_board = None
    if options.inventory:
        from tinyhil.execute.inventory import load_inventory

        farm_board = {b.name: b for b in load_inventory(Path(options.inventory))}.get(board_name)
    catalog = load_boards()
    if farm_board is None and board_name not in catalog:
        raise pytest.UsageError(f"--board {board_name!r}: not a board ({', '.join(sorted(catalog))})"
                                + (" nor in the inventory" if options.inventory else ""))
    config = farm_board.config if farm_board else catalog[board_name]
    if not config.emulated and farm_board is None and not (options.board_port or config.upload_port):
        pytest.skip(f"board {board_name} is physical: give --board-port")
    try:
        return BoardUnderTest(board_name, config, options.board_port, options.board_timeout, farm_board)
    except TinyhilError as error:
        raise pytest.UsageError(str(error)) from error


@pytest.fixture
def dut(board) -> BoardUnderTest:
    """pytest-embedded's name for the device under test: the same as `board`."""
    return board
