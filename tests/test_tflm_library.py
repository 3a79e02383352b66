"""TFLM compiled once per core and machine: the cache entry's key, its
corruption check, two processes wanting it at once, Ctrl-C mid-build; and the
firmware fingerprint (content, not paths or inventory files).

A tiny stand-in tree (a few C/C++ files with the two headers the library
precompiles) compiled by the real Arm compiler keeps these tests to seconds;
the real tree is compiled by the device tests, through the same code."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ctrl_c_reaches_it
from tinyhil.board_catalog import get_board
from tinyhil.image import tflm_library as library
from tinyhil.image.fingerprint import firmware_fingerprint
from tinyhil.project import project_dir

pytestmark = pytest.mark.skipif(not shutil.which("arm-none-eabi-g++"), reason="needs arm-none-eabi-g++")
DEADLINE_S = 300  # generous: the machine may be loaded; nothing here measures time


def make_tree(root: Path, files: int = 3) -> Path:
    src = root / "src"
    (src / "tensorflow/lite/schema").mkdir(parents=True)
    (src / "tensorflow/lite/micro/kernels").mkdir(parents=True)
    (src / "tensorflow/lite/schema/schema_generated.h").write_text("#pragma once\nstruct Schema { int v; };\n")
    (src / "tensorflow/lite/micro/kernels/kernel_util.h").write_text(
        "#pragma once\ninline int twice(int x) { return 2 * x; }\n")
    for n in range(files):
        (src / f"tensorflow/lite/micro/kernels/op{n}.cpp").write_text(
            f'#include "tensorflow/lite/micro/kernels/kernel_util.h"\nint op{n}(int x) {{ return twice(x) + {n}; }}\n')
    (src / "third_party").mkdir()
    (src / "third_party/helper.c").write_text("int helper(int x) { return x + 1; }\n")
    (src / "peripherals").mkdir()  # left out by firmware/scripts/tflm.json
    (src / "peripherals/led.cpp").write_text("#error never compiled\n")
    return root


@pytest.fixture
def machine_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "machine-cache"
    monkeypatch.setenv("TINYHIL_MACHINE_CACHE", str(cache))
    library._verified.clear()
    return cache


def test_one_key_per_core_whatever_the_board_or_the_tree_path(tmp_path):
    tree = make_tree(tmp_path / "a")
    m4 = {library.library_recipe(get_board(b), tree).key for b in ("qemu-m4", "qemu-stm32f4", "nucleo_f446re")}
    m33 = {library.library_recipe(get_board(b), tree).key for b in ("qemu-m33", "nucleo_l552ze_q")}
    assert len(m4) == 1 and len(m33) == 1 and m4 != m33
    moved = shutil.copytree(tree, tmp_path / "elsewhere" / "tflm")
    assert library.library_recipe(get_board("qemu-m4"), moved).key == m4.pop()


def test_the_key_changes_with_what_changes_the_objects(tmp_path):
    tree = make_tree(tmp_path / "t")
    board = get_board("qemu-m4")
    before = library.library_recipe(board, tree)
    header = tree / "src/tensorflow/lite/micro/kernels/kernel_util.h"
    header.write_text(header.read_text() + "// a comment is content too\n")
    after = library.library_recipe(board, tree)
    assert after.key != before.key and after.sources == before.sources
    (tree / "src/tensorflow/lite/micro/kernels/extra.cc").write_text("int extra() { return 1; }\n")
    assert "tensorflow/lite/micro/kernels/extra.cc" in library.library_recipe(board, tree).sources
    assert not any(s.startswith("peripherals/") for s in before.sources)


def test_built_once_then_taken_from_the_cache(tmp_path, machine_cache):
    tree = make_tree(tmp_path / "t")
    stages = []
    archive = library.tflm_library(get_board("qemu-m4"), tree, lambda w, d, t: stages.append((w, d, t)))
    assert archive.is_file() and archive.parent.parent == machine_cache / "tflm"
    names = subprocess.run(["arm-none-eabi-gcc-ar", "t", str(archive)], capture_output=True, text=True).stdout
    assert len(names.split()) == 4  # op0..2 and helper, each a member of its own
    assert stages[-1][1:] == (5, 5) and "compiling TFLM for cortex-m4 (once per machine)" in stages[-1][0]
    manifest = json.loads((archive.parent / library.MANIFEST).read_text())
    assert manifest["key"] == archive.parent.name and str(tree) not in json.dumps(manifest["cxx_flags"])
    stages.clear()
    assert library.tflm_library(get_board("nucleo_f446re"), tree, lambda *a: stages.append(a)) == archive
    assert stages == []  # a second board of the core: nothing compiled


def test_a_corrupt_entry_is_compiled_again_never_linked(tmp_path, machine_cache):
    tree = make_tree(tmp_path / "t")
    archive = library.tflm_library(get_board("qemu-m4"), tree)
    good = archive.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    library._verified.clear()  # as a new process would
    assert "SHA-256" in library.entry_problem(archive.parent)
    logged = []
    assert library.tflm_library(get_board("qemu-m4"), tree, log=logged.append) == archive
    assert archive.read_bytes() == good and "compiled again" in logged[0]
    (archive.parent / library.MANIFEST).write_text("{")
    library._verified.clear()
    assert "unreadable" in library.entry_problem(archive.parent)


def _builder(tree: Path, cache: Path, out: Path, extra: str = "") -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from tinyhil.board_catalog import get_board
        from tinyhil.image.tflm_library import tflm_library
        {extra}
        def say(what, done, total):
            print(what.split(":")[0], done, total, flush=True)
        print("archive", tflm_library(get_board("qemu-m4"), Path({str(tree)!r}), say), flush=True)
    """)
    env = dict(os.environ, TINYHIL_MACHINE_CACHE=str(cache))
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=open(out, "w"),
                            stderr=subprocess.STDOUT, preexec_fn=ctrl_c_reaches_it)


def test_two_processes_wanting_one_entry_build_it_once(tmp_path, machine_cache):
    tree = make_tree(tmp_path / "t", files=30)
    logs = [tmp_path / "one.log", tmp_path / "two.log"]
    processes = [_builder(tree, machine_cache, log) for log in logs]
    for process in processes:
        assert process.wait(timeout=DEADLINE_S) == 0
    texts = [log.read_text() for log in logs]
    compiled = [t for t in texts if "compiling TFLM for cortex-m4 (once per machine)" in t]
    assert len(compiled) == 1, texts
    archives = {line for t in texts for line in t.splitlines() if line.startswith("archive")}
    assert len(archives) == 1
    assert len(list((machine_cache / "tflm").glob("cortex-m4-*/libtflm.a"))) == 1


def test_ctrl_c_mid_build_ends_it_leaving_nothing_half_written(tmp_path, machine_cache):
    tree = make_tree(tmp_path / "t", files=400)
    log = tmp_path / "build.log"
    process = _builder(tree, machine_cache, log)
    deadline = time.monotonic() + DEADLINE_S
    while "compiling TFLM for cortex-m4 (once per machine) 1 " not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=DEADLINE_S) != 0
    assert "KeyboardInterrupt" in log.read_text()
    entries = [p.name for p in (machine_cache / "tflm").iterdir() if not p.name.endswith(".lock")]
    assert entries == [], entries  # neither a whole entry nor a partial one
    compilers = subprocess.run(["pgrep", "-f", str(tree)], capture_output=True, text=True).stdout.split()
    assert compilers == []


def _project_copy(root: Path) -> Path:
    source = project_dir()
    for part in ("firmware", "boards", "platformio.ini", "host/tinyhil/image/templates"):
        target = root / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (source / part).is_dir() else shutil.copyfile)(source / part, target)
    return root


def test_the_firmware_fingerprint_is_content_not_paths_or_inventory(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    boards = ("qemu-m4", "qemu-stm32f4", "nucleo_l552ze_q")

    def fingerprints(project: Path) -> dict[str, str]:
        monkeypatch.setenv("TINYHIL_PROJECT_DIR", str(project))
        project_dir.cache_clear()
        try:
            return {b: firmware_fingerprint(get_board(b), tree) for b in boards}
        finally:
            project_dir.cache_clear()

    here = {b: firmware_fingerprint(get_board(b), tree) for b in boards}
    one, two = _project_copy(tmp_path / "one"), _project_copy(tmp_path / "two")
    first = fingerprints(one)
    assert fingerprints(two) == first == here  # other checkouts, the same firmware
    (two / "boards" / "lab.yaml").write_text((two / "boards" / "lab.yaml").read_text() + "# a comment\n")
    ini = two / "platformio.ini"
    ini.write_text(ini.read_text() + "\n; a comment\n")
    assert fingerprints(two) == first  # inventory and comments are not firmware
    stm32 = two / "firmware" / "bsp" / "stm32" / "bsp_stm32.c"
    stm32.write_text(stm32.read_text() + "\n/* board support of the STM32 boards only */\n")
    changed = fingerprints(two)
    assert changed["qemu-m4"] == first["qemu-m4"]
    assert changed["qemu-stm32f4"] != first["qemu-stm32f4"] and changed["nucleo_l552ze_q"] != first["nucleo_l552ze_q"]
    runner = one / "firmware" / "runner" / "main.cc"
    runner.write_text(runner.read_text().replace("kMaxReruns = 3", "kMaxReruns = 4"))
    assert all(v != first[k] for k, v in fingerprints(one).items())


def test_a_log_gets_the_stage_named_once_per_tenth():
    from io import StringIO

    from rich.console import Console

    from tinyhil.stage_progress import StageLines

    out = StringIO()
    on_stage = StageLines(Console(file=out, force_terminal=False, width=200))
    what = "compiling TFLM for cortex-m4 (once per machine): {done}/{total} files"
    for done in range(204):
        on_stage(what, done, 203)
    on_stage("waiting for another tinyhil compiling TFLM for cortex-m4", 0, 0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 12 and lines[0].endswith(": 0/203 files") and lines[10].endswith(": 203/203 files")
    assert lines[-1] == "waiting for another tinyhil compiling TFLM for cortex-m4"


@pytest.mark.device
def test_ctrl_c_during_a_first_characterization_ends_its_tflm_build(tmp_path):
    """The build runs in the runner's builder thread while the main thread
    waits: Ctrl-C must still end the compilers at once, not when TFLM is done."""
    cache = tmp_path / "machine-cache"  # empty: the first build compiles TFLM
    env = dict(os.environ, TINYHIL_MACHINE_CACHE=str(cache), TINYHIL_CACHE_DIR=str(tmp_path / "cache"),
               COLUMNS="200")
    log = tmp_path / "out.log"
    process = subprocess.Popen([sys.executable, "-m", "tinyhil", "characterize", "--space", "micronas",
                                "--input", "29x12", "--classes", "9", "--luts", str(tmp_path / "luts")],
                               env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               preexec_fn=ctrl_c_reaches_it)
    deadline = time.monotonic() + DEADLINE_S
    while "compiling TFLM for cortex-m4" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=DEADLINE_S)
    assert process.returncode != 0
    tflm = cache / "tflm"
    assert not [p for p in tflm.iterdir() if not p.name.endswith(".lock")], list(tflm.iterdir())
    compilers = subprocess.run(["pgrep", "-f", str(cache)], capture_output=True, text=True).stdout.split()
    assert compilers == []  # they write into the cache: none is left running
