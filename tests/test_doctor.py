"""`tinyhil doctor` and the set-up's proof: tools listed, headers and probe
checked per emulated core, a missing package named with its install command."""
import os
import shutil

import pytest
from typer.testing import CliRunner

from tinyhil.board_catalog import get_board
from tinyhil.cli import app
from tinyhil.doctor import _cxx_headers, failed, run_checks
from tinyhil.errors import ToolMissing
from tinyhil.image.firmware import build_toolchain_probe
from tinyhil.image.toolchain import explain_missing


@pytest.mark.parametrize("line, package", [
    ("src/tensorflow/lite/micro/micro_log.h:18:10: fatal error: cstdio: No such file or directory",
     "libstdc++-arm-none-eabi-newlib"),
    ("flatbuffers/base.h:4:10: fatal error: cstdint: No such file or directory",
     "libstdc++-arm-none-eabi-newlib"),
    ("startup_mps2.c:3:10: fatal error: string.h: No such file or directory",
     "libnewlib-arm-none-eabi"),
    ("arm-none-eabi-gcc: fatal error: cannot read spec file 'nano.specs': No such file or directory",
     "libnewlib-arm-none-eabi"),
    ("sh: 1: arm-none-eabi-g++: not found", "gcc-arm-none-eabi"),
])
def test_a_missing_header_or_tool_names_its_package(line, package):
    message = explain_missing(f"Compiling x.o\n{line}\n*** [x.o] Error 1\n")
    assert message and f"apt-get install {package}" in message and "make setup" in message


def test_an_ordinary_compile_error_names_no_package():
    assert explain_missing("main.cc:3:1: error: expected ';' before '}' token") is None


@pytest.fixture
def cxx_without_headers(tmp_path, monkeypatch):
    """arm-none-eabi-g++ as on a machine without libstdc++-arm-none-eabi-newlib."""
    real = shutil.which("arm-none-eabi-g++")
    if not real:
        pytest.skip("arm-none-eabi-g++ not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "arm-none-eabi-g++"
    wrapper.write_text(f'#!/bin/sh\nexec {real} -nostdinc++ "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # Private caches: a cached object built with the headers would hide their absence.
    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PLATFORMIO_BUILD_CACHE_DIR", str(tmp_path / "pio-cache"))
    return bin_dir


def test_headers_check_names_the_cxx_package(cxx_without_headers):
    check = _cxx_headers(get_board("qemu-m4"))
    assert not check.ok
    assert "cstdio" in check.found
    assert "apt-get install libstdc++-arm-none-eabi-newlib" in check.fix


@pytest.mark.device
def test_probe_build_names_the_cxx_package(cxx_without_headers):
    with pytest.raises(ToolMissing, match="apt-get install libstdc\\+\\+-arm-none-eabi-newlib"):
        build_toolchain_probe(get_board("qemu-m33"))


@pytest.mark.device
def test_doctor_builds_and_boots_the_probe_on_every_emulated_board():
    checks = list(run_checks())
    assert not failed(checks), failed(checks)
    whats = {c.what for c in checks}
    assert {"QEMU", "Arm C++ compiler", "Python: platformio", "PlatformIO tool-scons",
            "TFLite-Micro tree"} <= whats
    booted = [c for c in checks if c.what.startswith("probe built and booted")]
    assert {c.what.rsplit(" ", 1)[1] for c in booted} >= {"qemu-m4", "qemu-m33", "qemu-stm32f4"}
    for c in booted:
        assert "tinyhil-probe ok" in c.found and "sqrt2_milli=1414" in c.found
    built = {c.what.rsplit(" ", 1)[1] for c in checks if c.what.startswith("probe built for")}
    assert built >= {"nucleo_f446re", "nucleo_l552ze_q"}  # physical: built, no board to boot
    libraries = {c.what.split()[3]: c for c in checks if c.what.startswith("TFLM library for")}
    assert set(libraries) == {"cortex-m4", "cortex-m33"}  # one per core, whatever the boards
    assert "qemu-stm32f4" in libraries["cortex-m4"].what and "files, compiled in" in libraries["cortex-m4"].found


def test_doctor_cli_fails_naming_the_package(cxx_without_headers):
    result = CliRunner().invoke(app, ["doctor", "--board", "qemu-m4", "--no-probe"])
    assert result.exit_code == 1
    assert "libstdc++-arm-none-eabi-newlib" in result.output
    assert "Traceback" not in result.output


def test_physical_board_makes_openocd_required(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing at all on the PATH
    checks = list(run_checks([get_board("nucleo_f446re")], probe=False))
    openocd = next(c for c in checks if c.what.startswith("openocd"))
    assert openocd.required and not openocd.ok and "apt-get install openocd" in openocd.fix
