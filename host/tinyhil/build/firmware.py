"""Builds firmware images with PlatformIO, cached by image id.

`pio run` runs in the project directory with the rendered sources handed over
in $TINYHIL_IMAGE_DIR (see firmware/scripts/tinyhil_build.py). PlatformIO's
build directory of each board is reused, so TFLM is compiled once per board
and only the image sources change between images; builds for one board are
serialised with a file lock.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..boards import BoardConfig
from ..errors import BuildFailed, ImageTooLarge, TinyhilError, ToolMissing
from ..project import cache_dir, project_dir
from .elf import ImageSize, image_size
from .image import ImageSpec, render_image

SETUP_HINT = "run `make setup` (scripts/setup.sh)"
FIRMWARE_INPUTS = ("firmware", "boards", "platformio.ini")
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


def firmware_hash() -> str:
    """Hash of every file that goes into a firmware build besides the image."""
    digest = hashlib.sha256()
    root = project_dir()
    for top in FIRMWARE_INPUTS:
        paths = [root / top] if (root / top).is_file() else sorted((root / top).rglob("*"))
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    digest.update(str(tflm_dir()).encode())
    return digest.hexdigest()[:16]


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


def build_image(spec: ImageSpec, board: BoardConfig, log=None) -> BuiltImage:
    """Renders, builds (or finds in the cache) and sizes the image for `board`."""
    check_fits(spec, board)
    tflm = tflm_dir()
    image_id = spec.image_id(firmware_hash())
    out = cache_dir() / "images" / board.name / image_id
    elf = out / "firmware.elf"
    source_dir = out / "src"
    if elf.is_file():
        return BuiltImage(spec, board, image_id, elf, source_dir, image_size(elf), 0.0, True)

    check_toolchain(board)
    render_image(spec, image_id, tflm, source_dir)
    started = time.monotonic()
    # One build at a time in a checkout, whatever the board: all environments
    # share PlatformIO's build_cache_dir and its SCons signature database,
    # which two concurrent builds corrupt (a farm builds for several boards).
    with build_lock():
        built_elf = _run_pio(board, source_dir, tflm, out / "build.log", log)
        tmp = elf.with_suffix(".tmp")
        shutil.copyfile(built_elf, tmp)
        os.replace(tmp, elf)  # atomic: a cached ELF is always a complete one
    return BuiltImage(spec, board, image_id, elf, source_dir, image_size(elf),
                      time.monotonic() - started, False)


@contextmanager
def build_lock():
    """One `pio run` at a time in a checkout (builds, and uploads, which build too)."""
    with open(cache_dir() / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pio_environment(source_dir: Path, tflm: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TINYHIL_IMAGE_DIR=str(source_dir), TINYHIL_TFLM_DIR=str(tflm),
               PLATFORMIO_DISABLE_PROGRESSBAR="true")
    return env


def _run_pio(board: BoardConfig, source_dir: Path, tflm: Path, log_path: Path, log) -> Path:
    command = [pio_executable(), "run", "--environment", board.name,
               "--project-dir", str(project_dir())]
    if log:
        log(f"building firmware for {board.name} (first build compiles TFLM: minutes)")
    with open(log_path, "w") as log_file:
        result = subprocess.run(command, cwd=project_dir(), env=pio_environment(source_dir, tflm),
                                stdout=log_file, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        text = log_path.read_text(errors="replace")
        overflow = OVERFLOW.findall(text)
        if overflow:
            capacity = {"FLASH": board.flash_bytes, "RAM": board.ram_bytes}
            parts = ", ".join(f"{region} by {over} bytes" + (
                f" (of its {capacity[region]})" if capacity.get(region) else "")
                for region, over in overflow)
            raise ImageTooLarge(f"the image does not fit board {board.name}: {parts} too many")
        if "command not found" in text or "No such file or directory: 'arm-none-eabi" in text:
            raise ToolMissing(f"the toolchain for {board.name} is missing: {SETUP_HINT}")
        tail = "\n".join(text.splitlines()[-15:])
        raise BuildFailed(f"PlatformIO failed for {board.name} (log: {log_path}):\n{tail}")
    return project_dir() / ".pio" / "build" / board.name / "firmware.elf"


def upload(image: BuiltImage, port: str) -> None:
    """Flashes a physical board: `pio run -t upload` on the image's sources."""
    from ..device import stlink

    command = [pio_executable(), "run", "--environment", image.board.name, "--target", "upload",
               "--project-dir", str(project_dir())]
    if port:
        command += ["--upload-port", port]
    if image.board.openocd_board:
        stlink.openocd_command(image.board, port, "")  # openocd missing: say so before pio runs
    with build_lock():
        result = subprocess.run(command, cwd=project_dir(),
                                env=pio_environment(image.source_dir, tflm_dir()),
                                capture_output=True, text=True)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if image.board.openocd_board and "openocd" in output.lower():
            raise TinyhilError(stlink.openocd_failure(image.board, "flash", output))
        raise TinyhilError(f"flashing {image.board.name} failed:\n{output[-1500:]}")
