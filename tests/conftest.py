import os
import re
import shutil
import subprocess
import uuid
from importlib.metadata import entry_points
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests choose the console width per command (CliRunner's env COLUMNS); a COLUMNS
# inherited from the caller (a CI runner, a script) would fix rich's console
# width once, when tinyhil.cli is imported, and every table would wrap at it.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

ROOT = Path(__file__).resolve().parents[1]

# The board plugin comes with the installed package (pytest11 entry point);
# from a checkout that is on PYTHONPATH only, load it by hand.
if not any(ep.name == "tinyhil" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["tinyhil.pytest_plugin"]


def pytest_collection_modifyitems(config, items) -> None:
    """Device tests build TFLM firmware: without the TFLM tree they are skipped,
    saying why (CI has it: they run there)."""
    from tinyhil.errors import ToolMissing
    from tinyhil.image.firmware import tflm_dir

    try:
        tflm_dir()
    except ToolMissing as error:
        skip = pytest.mark.skip(reason=f"needs the TFLite-Micro tree: {error}")
        for item in items:
            if item.get_closest_marker("device"):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """Small int8 models made by the real converter once per session."""
    return tmp_path_factory.mktemp("models")


def make_int8_model(path: Path, layers, input_shape, seed: int = 0, samples=None) -> Path:
    import numpy as np
    import tensorflow as tf

    from tinyhil.models.convert import to_int8_tflite

    if not path.exists():
        tf.keras.utils.set_random_seed(seed)
        model = tf.keras.Sequential([tf.keras.layers.Input(input_shape), *layers])
        if samples is None:
            samples = np.random.default_rng(seed).standard_normal((16, *input_shape))
        path.write_bytes(to_int8_tflite(model, samples.astype("float32")))
    return path


def processes_matching(pattern: str, parent: int | None = None) -> list[int]:
    """Pids whose command line matches `pattern`, children of `parent` if given
    (pgrep -f [-P] without procps, which a minimal Debian lacks)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        pid = int(cmdline.parent.name)
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        ppid = _parent(pid)
        if ppid is None:
            continue
        if re.search(pattern, text) and pid != os.getpid() and parent in (None, ppid):
            found.append(pid)
    return found


def _parent(pid: int) -> int | None:
    try:  # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):  # the process ended while we looked
        return None


class OwnProcesses:
    """The processes a test started, told apart from every other process of the
    machine: a user's own `tinyhil deploy` in the same checkout runs the very same
    QEMU command line, and is no leak of the test's. Ours are the descendants of
    the test process, and every process that carries this test's tag in its
    environment (`env`), which all it starts inherit, even once their parent is
    killed and they are reparented."""

    VARIABLE = "TINYHIL_TEST_OWNER"

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex

    def env(self, base: dict | None = None) -> dict:
        """The environment to start a test's child with (default: this process's)."""
        return {**(os.environ if base is None else base), self.VARIABLE: self.tag}

    def owns(self, pid: int) -> bool:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:  # ended, or another user's: not ours
            environ = []
        if f"{self.VARIABLE}={self.tag}".encode() in environ:
            return True
        seen = set()
        while pid not in seen and pid > 1:
            seen.add(pid)
            pid = _parent(pid)
            if pid == os.getpid():
                return True
            if pid is None:
                return False
        return False

    def matching(self, pattern: str) -> list[int]:
        """The test's own processes whose command line matches `pattern`."""
        return [pid for pid in processes_matching(pattern) if self.owns(pid)]


@pytest.fixture
def own_processes() -> OwnProcesses:
    return OwnProcesses()


def ctrl_c_reaches_it() -> None:
    """A child's preexec_fn: SIGINT at its default, as a terminal's foreground
    job has it. A job started in the background (`make test &`, a CI runner's
    script) inherits SIGINT ignored, and the child, rightly, would ignore the
    Ctrl-C a test sends it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def gcc() -> str:
    found = shutil.which("gcc") or shutil.which("cc")
    if not found:
        pytest.skip("no host C compiler")
    return found


def compile_host_c(sources, output: Path, include: Path) -> Path:
    subprocess.run([gcc(), "-O1", "-Wall", "-Werror", f"-I{include}", "-o", str(output),
                    *map(str, sources)], check=True)
    return output
