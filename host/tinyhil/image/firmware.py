"""Builds firmware images with PlatformIO, cached by image id.

`pio run` runs in the project directory with the rendered sources handed over
in $TINYHIL_IMAGE_DIR and the TFLM library in $TINYHIL_TFLM_LIBRARY (see
firmware/scripts/tinyhil_build.py): TFLM is compiled once per core and
machine (image/tflm_library.py), and only the runner, board support and image
sources per board. Builds in one checkout are serialised with a file lock.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tinyhil.board_catalog import BoardConfig
from tinyhil.children import kill_groups, run_group
from tinyhil.errors import BuildFailed, ImageTooLarge, ToolMissing
from tinyhil.files import checksum_problem, write_checksum
from tinyhil.image.elf import ImageSize, image_size
from tinyhil.image.fingerprint import firmware_fingerprint
from tinyhil.image.relink import record, relink
from tinyhil.image.sources import ImageSpec, render_image
from tinyhil.image.tflm_library import stop_compiles, tflm_library
from tinyhil.image.toolchain import SETUP_HINT, explain_missing
from tinyhil.project import cache_dir, project_dir
from tinyhil.stage_progress import StageProgress

# Emulated images after the first: compile and link only (image/relink.py);
# off, every image goes through PlatformIO (tests compare the two).
RELINK = os.environ.get("TINYHIL_RELINK", "1") != "0"
OVERFLOW = re.compile(r"region [`'\"]?(\w+)'? overflowed by (\d+) bytes")


@dataclass(frozen=True)
class BuiltImage:
    spec: ImageSpec
    board: BoardConfig
    image_id: str
    elf: Path
    source_dir: Path
    size: ImageSize
    build_seconds: float  # 0 when taken from the cache
    cached: bool
    repaired: str = ""  # why a cached copy was thrown away and the image built again
    firmware: str = ""  # the board's firmware fingerprint (image/fingerprint.py)
    compiler: str = ""  # the ELF's compiler, set where the ELF is not at hand (a cluster worker's image)


def tflm_dir() -> Path:
    """The TFLM tree: $TINYHIL_TFLM_DIR or platformio.ini's custom_tflm_dir."""
    from platformio.project.config import ProjectConfig

    override = os.environ.get("TINYHIL_TFLM_DIR")
    if override:
        path = Path(override)
    else:
        config = ProjectConfig(str(project_dir() / "platformio.ini"), parse_extra=False)
        path = project_dir() / config.get("env", "custom_tflm_dir")
    if not (path / "src/tensorflow/lite/micro").is_dir():
        raise ToolMissing(
            f"no TFLite-Micro tree at {path}: set TINYHIL_TFLM_DIR to a copy of "
            "tflite-micro-arduino-examples (or give PlatformIO a network: custom_tflm_git)"
        )
    return path.resolve()


def pio_executable() -> str:
    candidate = Path(sys.executable).with_name("pio")
    found = str(candidate) if candidate.exists() else shutil.which("pio")
    if not found:
        raise ToolMissing(f"PlatformIO (pio) not found: {SETUP_HINT}")
    return found


def check_toolchain(board: BoardConfig) -> None:
    if board.offline and not shutil.which("arm-none-eabi-gcc"):
        raise ToolMissing(f"arm-none-eabi-gcc not found (board {board.name}): {SETUP_HINT}")


def check_fits(spec: ImageSpec, board: BoardConfig) -> None:
    """Models alone larger than the board's flash cannot fit: say so before building."""
    models = sum(b.model_bytes for b in spec.benchmarks)
    if board.flash_bytes and models > board.flash_bytes:
        raise ImageTooLarge(
            f"the model(s) take {models} bytes but board {board.name} has {board.flash_bytes} "
            f"bytes of flash: over by {models - board.flash_bytes} bytes before any code"
        )


def build_image(spec: ImageSpec, board: BoardConfig, log=None, on_stage: StageProgress | None = None) -> BuiltImage:
    """Renders, builds (or finds in the cache) and sizes the image for `board`;
    `on_stage` hears of a long wait (TFLM compiled for the board's core)."""
    check_fits(spec, board)
    tflm = tflm_dir()
    firmware = _once(("firmware", board, tflm), lambda: firmware_fingerprint(board, tflm))
    image_id = spec.image_id(firmware)
    out = cache_dir() / "images" / board.name / image_id
    elf = out / "firmware.elf"
    source_dir = out / "src"
    repaired = ""
    if elf.is_file():
        problem = cached_image_problem(elf)
        if problem is None:
            return BuiltImage(spec, board, image_id, elf, source_dir, image_size(elf), 0.0, True,
                              firmware=firmware)
        repaired = f"cached image {elf} failed its check ({problem}): built again"
        if log:
            log(repaired)
        elf.unlink(missing_ok=True)

    check_toolchain(board)
    render_image(spec, image_id, tflm, source_dir)
    started = time.monotonic()
    library = _once(("library", board, tflm), lambda: library_path(board, tflm, on_stage, log))
    # One build at a time in a checkout, whatever the board: all environments
    # share PlatformIO's build_cache_dir and its SCons signature database,
    # which two concurrent builds corrupt (a farm builds for several boards).
    with build_lock():
        # benchmarks only: a deployment's model comes in its own C source (image/c_array.py)
        relinkable = RELINK and board.emulated and not any(b.array for b in spec.benchmarks)
        built_elf = relink(board, source_dir, out, firmware, out / "build.log") if relinkable else None
        if built_elf is None:
            if relinkable:
                # An object never seen, so SCons compiles and links rather than take them
                # from its cache (which leaves no commands in the log to learn from); the
                # unreferenced constant is dropped by --gc-sections, the ELF's bytes unchanged.
                with open(source_dir / "image.cc", "a") as source:
                    source.write(f'extern const char tinyhil_build_nonce[] = "{uuid.uuid4().hex}";\n')
            built_elf = _run_pio(board, pio_environment(source_dir, tflm, library), out / "build.log", log,
                                 verbose=board.emulated)
            if relinkable:  # its commands build the next images (image/relink.py)
                record(board, (out / "build.log").read_text(errors="replace"), source_dir, firmware)
        tmp = elf.with_suffix(".tmp")
        shutil.copyfile(built_elf, tmp)
        write_checksum(elf, tmp.read_bytes())  # what a later run checks the cached ELF against
        os.replace(tmp, elf)  # atomic: a cached ELF is always a complete one
    return BuiltImage(spec, board, image_id, elf, source_dir, image_size(elf),
                      time.monotonic() - started, False, repaired, firmware)


_run_inputs: dict | None = None  # what one_firmware() keeps while it lasts


@contextmanager
def one_firmware():
    """Builds inside it take each board's firmware fingerprint and TFLM library
    from the first build, not again per image: a run's images are built from
    one firmware (its results record one fingerprint), and telling them anew
    reads the state of every file in the TFLM tree, twice (0.2 s of a 0.4 s
    image build here, more with other threads wanting the GIL)."""
    global _run_inputs
    outermost = _run_inputs is None
    if outermost:
        _run_inputs = {}
    try:
        yield
    finally:
        if outermost:
            _run_inputs = None


def _once(key: tuple, compute):
    kept = _run_inputs
    if kept is None:
        return compute()
    if key not in kept:
        kept[key] = compute()
    return kept[key]


def stop_builds() -> None:
    """Ends this process's builds now (PlatformIO's, TFLM's compiles), in any thread."""
    kill_groups()
    stop_compiles()


def library_path(board: BoardConfig, tflm: Path, on_stage: StageProgress | None = None, log=None) -> Path | None:
    """The TFLM library a bare-metal board links (compiled first if this
    machine has none for its core); None where PlatformIO compiles TFLM
    with a framework's flags."""
    return tflm_library(board, tflm, on_stage, log) if board.offline else None


def cached_image_problem(elf: Path) -> str | None:
    problem = checksum_problem(elf)
    if problem is None:
        try:
            image_size(elf)
        except Exception as error:  # noqa: BLE001 - pyelftools raises many kinds
            problem = f"not a readable ELF ({error})"
    return problem


@contextmanager
def build_lock():
    """One `pio run` at a time in a checkout (builds, and uploads, which build too).
    The lock sits in the checkout's .pio/, beside the build directories it
    guards: two processes with caches of their own (two workers of a cluster
    on one host, $TINYHIL_CACHE_DIR) still build in the same .pio/build."""
    lock_dir = project_dir() / ".pio"
    lock_dir.mkdir(exist_ok=True)
    with open(lock_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pio_environment(source_dir: Path, tflm: Path, library: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TINYHIL_IMAGE_DIR=str(source_dir), TINYHIL_TFLM_DIR=str(tflm),
               PLATFORMIO_DISABLE_PROGRESSBAR="true")
    env.pop("TINYHIL_TFLM_LIBRARY", None)
    if library is not None:
        env["TINYHIL_TFLM_LIBRARY"] = str(library)
    return env


def _run_pio(board: BoardConfig, env: dict[str, str], log_path: Path, log,
             verbose: bool = False) -> Path:
    command = [pio_executable(), "run", "--environment", board.name,
               "--project-dir", str(project_dir()), *(["--verbose"] if verbose else [])]
    if log:
        log(f"building firmware for {board.name} with PlatformIO")
    with open(log_path, "w") as log_file:
        # pio's scons and compilers end with tinyhil, even if it is killed
        result = run_group(command, cwd=project_dir(), env=env, stdout=log_file, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        text = log_path.read_text(errors="replace")
        overflow = OVERFLOW.findall(text)
        if overflow:
            capacity = {"FLASH": board.flash_bytes, "RAM": board.ram_bytes}
            parts = ", ".join(f"{region} by {over} bytes" + (
                f" (of its {capacity[region]})" if capacity.get(region) else "")
                for region, over in overflow)
            raise ImageTooLarge(f"the image does not fit board {board.name}: {parts} too many")
        missing = explain_missing(text)
        if missing:
            raise ToolMissing(f"cannot build for {board.name}: {missing} (log: {log_path})")
        tail = "\n".join(text.splitlines()[-15:])
        raise BuildFailed(f"PlatformIO failed for {board.name} (log: {log_path}):\n{tail}")
    return project_dir() / ".pio" / "build" / board.name / "firmware.elf"


def build_toolchain_probe(board: BoardConfig) -> Path:
    """Builds firmware/probe with `board`'s firmware flags and BSP (no TFLM):
    the seconds-long proof that the toolchain builds what the firmware needs.
    Returns the ELF; a failure names the missing package."""
    out = cache_dir() / "probe" / board.name
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TINYHIL_TOOLCHAIN_PROBE="1", PLATFORMIO_DISABLE_PROGRESSBAR="true",
               PLATFORMIO_SRC_DIR=str(project_dir() / "firmware" / "probe"),
               PLATFORMIO_BUILD_DIR=str(out / "build"))
    command = [pio_executable(), "run", "--environment", board.name,
               "--project-dir", str(project_dir())]
    log_path = out / "build.log"
    with build_lock(), open(log_path, "w") as log_file:  # shares PlatformIO's build cache
        result = subprocess.run(command, cwd=project_dir(), env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        text = log_path.read_text(errors="replace")
        missing = explain_missing(text)
        if missing:
            raise ToolMissing(f"cannot build for {board.name}: {missing} (log: {log_path})")
        tail = "\n".join(text.splitlines()[-10:])
        raise BuildFailed(f"the toolchain probe failed for {board.name} (log: {log_path}):\n{tail}")
    return out / "build" / board.name / "firmware.elf"
