"""`tinyhil doctor`: can this machine build and run tinyhil's firmware?

Lists every tool tinyhil uses with its version, then proves the toolchain the
way a firmware build would use it: the C++ standard headers compile with each
emulated core's flags, and the toolchain probe (firmware/probe) is built by
PlatformIO with each emulated board's own firmware flags and BSP, booted in
QEMU and heard on its serial port. The set-up script ends with it, so a
missing package is named (with the command that installs it) at set-up time,
not minutes into the first TFLM build.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata

from tinyhil.board_catalog import BoardConfig, load_boards
from tinyhil.errors import TinyhilError
from tinyhil.image.firmware import build_toolchain_probe, tflm_dir
from tinyhil.image.toolchain import SETUP_HINT, explain_missing
from tinyhil.project import project_dir

PROBE_OK = re.compile(rb"tinyhil-probe ok [^\r\n]*(?=[\r\n])")  # the whole line: it may come in pieces
PROBE_SECONDS = 60.0  # generous: QEMU on a loaded host may take seconds to boot


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    found: str  # a version, a path, or what the check printed
    fix: str = ""  # what to do when it failed
    required: bool = True


def _first_line(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else f"exit code {result.returncode}"


def _tool(what: str, executable: str, package: str, required: bool = True,
          version_flag: str = "--version") -> Check:
    path = shutil.which(executable)
    if not path:
        return Check(what, False, "not found", f"apt-get install {package}, or {SETUP_HINT}",
                     required)
    return Check(what, True, f"{_first_line([path, version_flag])} ({path})", required=required)


def _python_package(name: str) -> Check:
    try:
        return Check(f"Python: {name}", True, metadata.version(name))
    except metadata.PackageNotFoundError:
        return Check(f"Python: {name}", False, "not installed", SETUP_HINT)


def _tool_scons() -> Check:
    piopm = project_dir() / ".pio" / "core" / "packages" / "tool-scons" / ".piopm"
    if not piopm.is_file():
        return Check("PlatformIO tool-scons", False, f"no {piopm}", SETUP_HINT)
    text = piopm.read_text()
    version = re.search(r'"version":\s*"([^"]+)"', text)
    if '"owner": "platformio"' not in text:
        return Check("PlatformIO tool-scons", False, f"{piopm} lacks owner platformio "
                     "(PlatformIO would try its registry)", SETUP_HINT)
    return Check("PlatformIO tool-scons", True, version.group(1) if version else "present")


def _tflm() -> Check:
    from platformio.project.config import ProjectConfig

    try:
        path = tflm_dir()
    except TinyhilError as error:
        return Check("TFLite-Micro tree", False, str(error),
                     "put tflite-micro-arduino-examples at ../shared/deps or set TINYHIL_TFLM_DIR")
    config = ProjectConfig(str(project_dir() / "platformio.ini"), parse_extra=False)
    return Check("TFLite-Micro tree", True, f"{config.get('env', 'custom_tflm_version')} ({path})")


def _board_json(board: BoardConfig) -> dict:
    from platformio.project.config import ProjectConfig

    config = ProjectConfig(str(project_dir() / "platformio.ini"), parse_extra=False)
    name = config.get(f"env:{board.name}", "board")
    return json.loads((project_dir() / "boards" / f"{name}.json").read_text())


def _cxx_headers(board: BoardConfig) -> Check:
    """The C++ headers TFLM includes, with this core's flags and newlib-nano."""
    what = f"C++ headers for {board.core} ({board.name})"
    gxx = shutil.which("arm-none-eabi-g++")
    if not gxx:
        return Check(what, False, "arm-none-eabi-g++ not found",
                     f"apt-get install gcc-arm-none-eabi, or {SETUP_HINT}")
    build = _board_json(board)["build"]
    flags = [f"-mcpu={build['cpu']}", "-mthumb", f"-mfloat-abi={build.get('float_abi', 'soft')}"]
    if build.get("fpu"):
        flags.append(f"-mfpu={build['fpu']}")
    source = "#include <cstdio>\n#include <cmath>\n#include <cstdint>\n#include <new>\n"
    result = subprocess.run([gxx, *flags, "--specs=nano.specs", "-std=gnu++17", "-x", "c++",
                             "-fsyntax-only", "-"], input=source, capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        missing = explain_missing(result.stderr)
        return Check(what, False, (result.stderr.strip().splitlines() or ["failed"])[0],
                     missing or SETUP_HINT)
    return Check(what, True, "<cstdio> <cmath> <cstdint> <new> compile")


def offline_buildable(board: BoardConfig) -> bool:
    """Built by the repository's own dev-platform (no PlatformIO registry needed)."""
    from platformio.project.config import ProjectConfig

    config = ProjectConfig(str(project_dir() / "platformio.ini"), parse_extra=False)
    platform = str(config.get(f"env:{board.name}", "platform", ""))
    return platform.startswith(("symlink://", "file://"))


def _probe(board: BoardConfig) -> Check:
    """Builds the probe with PlatformIO and, on an emulated board, boots it:
    the whole path but TFLM. A physical board's probe is built only."""
    import serial

    from tinyhil.device.qemu import QemuProcess, wait_for_pty

    what = f"probe built {'and booted ' if board.emulated else ''}for {board.name}"
    try:
        elf = build_toolchain_probe(board)
    except TinyhilError as error:
        return Check(what, False, str(error).splitlines()[0],
                     explain_missing(str(error)) or SETUP_HINT)
    if not board.emulated:
        return Check(what, True, f"{elf.stat().st_size:,} B ELF (no board here to boot it)")
    try:
        with QemuProcess(board.qemu_machine, elf, board.icount_shift,
                         serial_index=board.qemu_serial_index) as qemu:
            wait_for_pty(qemu.pty)
            heard = b""
            with serial.Serial(qemu.pty, 115200, timeout=0.2) as port:
                deadline = time.monotonic() + PROBE_SECONDS
                while time.monotonic() < deadline:
                    heard += port.read(256)
                    match = PROBE_OK.search(heard)
                    if match:
                        return Check(what, True, match.group(0).decode(errors="replace"))
    except (TinyhilError, OSError, serial.SerialException) as error:
        return Check(what, False, str(error), f"apt-get install qemu-system-arm, or {SETUP_HINT}")
    return Check(what, False, f"no 'tinyhil-probe ok' within {PROBE_SECONDS:g} s: "
                 f"{heard[-120:]!r}", "check the BSP and QEMU machine of the board")


def _tflm_library(boards: list[BoardConfig], on_stage=None) -> Check:
    """TFLM compiled for these boards' core (or found compiled): the firmware's
    biggest part, built once per machine, here rather than in the first run."""
    from tinyhil.image.firmware import library_path
    from tinyhil.image.tflm_library import MANIFEST

    names = ", ".join(b.name for b in boards)
    what = f"TFLM library for {boards[0].core} ({names})"
    try:
        archive = library_path(boards[0], tflm_dir(), on_stage)
    except TinyhilError as error:
        return Check(what, False, str(error).splitlines()[0], explain_missing(str(error)) or SETUP_HINT)
    manifest = json.loads((archive.parent / MANIFEST).read_text())
    return Check(what, True, f"{archive.parent.name}: {len(manifest['sources'])} files, compiled in "
                             f"{manifest['seconds']:.0f} s ({archive.parent})")


def run_checks(boards: list[BoardConfig] | None = None, probe: bool = True, tflm: bool = True,
               on_stage=None):
    """Yields each check as it completes (the build and boot take seconds; the
    TFLM library, once per machine and core, minutes)."""
    catalog = load_boards()
    if boards is None:  # every board this machine can build without a network
        boards = [b for b in catalog.values() if b.emulated or offline_buildable(b)]
    physical = any(not b.emulated for b in boards)
    yield Check("Python", True, sys.version.split()[0])
    yield _tool("QEMU", "qemu-system-arm", "qemu-system-arm")
    yield _tool("Arm C++ compiler", "arm-none-eabi-g++", "gcc-arm-none-eabi")
    yield _python_package("platformio")
    yield _tool_scons()
    yield _tflm()
    yield _python_package("tensorflow")
    yield _python_package("ai-edge-litert")
    yield _tool("openocd (flashes Nucleo boards)", "openocd", "openocd", required=physical)
    yield _tool("ser2net (labgrid remote boards)", "ser2net", "ser2net", required=False,
                version_flag="-v")
    for board in boards:
        if board.emulated or offline_buildable(board):
            yield _cxx_headers(board)
            if probe:
                yield _probe(board)
    if tflm:  # one library per core serves every board of it: each compiled (or found) once
        from tinyhil.image.tflm_library import library_recipe

        by_key: dict[str, list[BoardConfig]] = {}
        for board in boards:
            if board.emulated and board.offline:
                by_key.setdefault(library_recipe(board, tflm_dir()).key, []).append(board)
        for group in by_key.values():
            yield _tflm_library(group, on_stage)


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.required and not c.ok]
