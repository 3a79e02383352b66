"""The Arm toolchain as the firmware build uses it: the flags a board compiles
with, the compiler's identity, and what a failed build lacks.

The flags are the offline dev-platform's own (firmware/platform/builder/
tinyhil_toolchain.py, which its SCons builder reads too), the board JSON's core
(cpu, fpu, float ABI) and platformio.ini's build_flags: so TFLM compiled by the
host (image/tflm_library.py) gets exactly what PlatformIO would give it.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tinyhil.board_catalog import BoardConfig
from tinyhil.errors import ToolMissing
from tinyhil.project import project_dir

SETUP_HINT = "run `make setup` (scripts/setup.sh)"

# What a build log says when a Debian package is missing, and that package.
# The C++ headers come first: TFLM is C++, and no C package pulls them in.
MISSING_PACKAGES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"fatal error: (c[a-z]+|new|cstdint|algorithm|limits|type_traits|utility|"
                r"initializer_list|functional|memory|array): No such file"),
     "libstdc++-arm-none-eabi-newlib", "the Arm C++ standard headers"),
    (re.compile(r"fatal error: ([a-z_/]+\.h): No such file"),
     "libnewlib-arm-none-eabi", "the Arm C library headers (newlib)"),
    (re.compile(r"(nano|nosys)\.specs.*(No such file|cannot read spec file)|"
                r"cannot read spec file '(nano|nosys)\.specs'"),
     "libnewlib-arm-none-eabi", "newlib-nano's spec files"),
    (re.compile(r"arm-none-eabi-(gcc|g\+\+|gcc-ar|ar|objcopy|size)[^\n]*(not found|No such file)"),
     "gcc-arm-none-eabi", "the Arm GCC toolchain"),
    (re.compile(r"Could not find the package with '?platformio/tool-scons|tool-scons"
                r"[^\n]*(not found|Could not)"),
     "", "PlatformIO's tool-scons (packaged from PyPI's scons by the set-up)"),
)


def explain_missing(log_text: str) -> str | None:
    """Names the package a failed build lacks, with the command that installs it."""
    for pattern, package, what in MISSING_PACKAGES:
        match = pattern.search(log_text)
        if match:
            found = match.group(0).strip()
            install = f"apt-get install {package}, or " if package else ""
            return f"{what} missing ({found}): {install}{SETUP_HINT}"
    return None


def platform_toolchain():
    """The dev-platform's flags module (firmware/platform/builder/tinyhil_toolchain.py)."""
    path = project_dir() / "firmware" / "platform" / "builder" / "tinyhil_toolchain.py"
    spec = importlib.util.spec_from_file_location("tinyhil_platform_toolchain", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class CompileFlags:
    """What every C and C++ file of a board's firmware is compiled with, less
    defines and include paths (those belong to what is compiled)."""

    core: str  # for messages: cortex-m4
    c_compiler: str
    cxx_compiler: str
    c: tuple[str, ...]
    cxx: tuple[str, ...]


def _not_compile_flag(flag: str) -> bool:
    # what SCons's ParseFlags sends elsewhere than CCFLAGS: defines, paths, libraries, link flags
    return flag.startswith(("-D", "-U", "-I", "-L", "-l", "-Wl,", "-T"))


def compile_flags(board: BoardConfig) -> CompileFlags:
    """The flags PlatformIO compiles `board`'s sources with (bare-metal boards of
    the project's dev-platform)."""
    from platformio.project.config import ProjectConfig

    config = ProjectConfig(str(project_dir() / "platformio.ini"), parse_extra=False)
    section = f"env:{board.name}"
    board_json = json.loads((project_dir() / "boards" / f"{config.get(section, 'board')}.json").read_text())
    build = board_json.get("build", {})
    unflags = set(shlex.split(" ".join(config.get(section, "build_unflags", []))))
    build_flags = [f for f in shlex.split(" ".join(config.get(section, "build_flags", [])))
                   if not _not_compile_flag(f) and f not in unflags]
    tools = platform_toolchain()
    common = [*tools.core_flags(build.get("cpu"), build.get("float_abi", "soft"), build.get("fpu", "")),
              *tools.COMMON, *build_flags]
    return CompileFlags(board.core or build.get("cpu", ""), tools.C_COMPILER, tools.CXX_COMPILER,
                        tuple(common + tools.C_ONLY), tuple(common + tools.CXX_ONLY))


@lru_cache(maxsize=4)
def compiler_identity(compiler: str) -> str:
    """The compiler's own first line of --version (its Debian package version included)."""
    found = shutil.which(compiler)
    if not found:
        raise ToolMissing(f"{compiler} not found: {SETUP_HINT}")
    result = subprocess.run([found, "--version"], capture_output=True, text=True)
    return (result.stdout.splitlines() or [found])[0].strip()


def tflm_settings() -> dict:
    """firmware/scripts/tflm.json: TFLM's includes, defines and the files left out."""
    return json.loads((project_dir() / "firmware" / "scripts" / "tflm.json").read_text())


def tflm_sources(tree: Path, exclude: list[str]) -> list[str]:
    """The tree's C/C++ sources (relative to src/) less those left out."""
    src = tree / "src"
    found = []
    for path in src.rglob("*"):
        relative = path.relative_to(src).as_posix()
        if path.suffix in (".c", ".cc", ".cpp") and path.is_file() and not any(
                relative == e or (e.endswith("/") and relative.startswith(e))
                for e in exclude):
            found.append(relative)
    return sorted(found)


__all__ = ["CompileFlags", "SETUP_HINT", "compile_flags", "compiler_identity", "explain_missing",
           "tflm_settings", "tflm_sources"]
