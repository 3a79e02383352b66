"""The pytest plugin: --board picks the board of every device test, the
`boards` marker lists the defaults, bad names are usage errors."""
import subprocess
import sys

import pytest

CONFTEST = '''
from importlib.metadata import entry_points
if not any(ep.name == "tinyhil" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["tinyhil.pytest_plugin"]
'''

TESTS = '''
import pytest

def test_default(board):
    print("RAN default on", board.name, board.config.name, board.emulated)

@pytest.mark.boards("qemu-m4", "qemu-m33")
def test_marked(board):
    print("RAN marked on", board.name)

@pytest.mark.parametrize("board_name", ["qemu-m33"], indirect=True)
def test_chosen(board):
    print("RAN chosen on", board.name)
'''


@pytest.fixture
def inner(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(TESTS)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider",
                               "-o", "addopts=", *args], cwd=tmp_path, capture_output=True, text=True)
    return run


def ran(output: str) -> list[str]:
    return sorted(line.split("RAN ")[1].strip() for line in output.splitlines() if "RAN " in line)


def test_without_board_option(inner):
    result = inner()
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(result.stdout) == ["chosen on qemu-m33", "default on qemu-m4 qemu-m4 True",
                                  "marked on qemu-m33", "marked on qemu-m4"]


def test_board_option_picks_the_board(inner):
    result = inner("--board", "qemu-m33")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(result.stdout) == ["chosen on qemu-m33", "default on qemu-m33 qemu-m33 True",
                                  "marked on qemu-m33"]


def test_physical_board_without_port_is_skipped(inner):
    result = inner("--board", "nucleo_f446re", "-k", "default", "-rs")
    assert result.returncode == 0 and "give --board-port" in result.stdout


def test_unknown_board_is_a_usage_error(inner):
    result = inner("--board", "qemu-m7", "-k", "default")
    assert result.returncode != 0 and "--board 'qemu-m7': not a board" in result.stdout + result.stderr


def test_inventory_board(inner, tmp_path):
    (tmp_path / "lab.yaml").write_text("boards:\n  - {name: m4-x, board: qemu-m4}\n")
    result = inner("--board", "m4-x", "--inventory", str(tmp_path / "lab.yaml"), "-k", "default")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(result.stdout) == ["default on m4-x qemu-m4 True"]
