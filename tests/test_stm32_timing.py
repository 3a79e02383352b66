"""The STM32 board support's timed region on the twin: while a model is timed
no interrupt but the counter's runs, and one that wanted to is reported."""
import shutil
import subprocess

import pytest
import serial

from tinyhil.device.qemu import QemuProcess, wait_for_pty

pytestmark = pytest.mark.device

BSP = "firmware/bsp/stm32"


@pytest.fixture(scope="module")
def probe(root, tmp_path_factory):
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("no arm-none-eabi-gcc")
    elf = tmp_path_factory.mktemp("probe") / "probe.elf"
    sources = [root / "tests/c/stm32_timing_probe.c", *sorted((root / BSP).glob("*.c"))]
    subprocess.run(["arm-none-eabi-gcc", "-DTINYHIL_STM32F446", "-DTINYHIL_QEMU_TWIN",
                    "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-O2",
                    "-Wall", "-Werror", f"-I{root / 'firmware/include'}", f"-I{root / BSP}",
                    *map(str, sources), "-T", str(root / BSP / "stm32f446re.ld"),
                    "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
                    "-o", str(elf)], check=True)
    with QemuProcess("netduinoplus2", elf, 4, serial_index=1) as qemu:
        wait_for_pty(qemu.pty)
        with serial.Serial(qemu.pty, 115200, timeout=1) as port:
            for _ in range(60):  # until the probe's UART is on
                port.write(b"p")
                if port.read(1) == b"!":
                    break
            else:
                pytest.fail("the probe did not answer its ping")
            port.timeout = 30
            yield port


def reply(port, size: int) -> bytes:
    """The next `size` bytes, past late answers to the boot pings."""
    first = port.read(1)
    while first == b"!":
        first = port.read(1)
    return first + port.read(size - 1)


def test_quiet_region_reports_nothing(probe):
    probe.write(b"q")
    assert reply(probe, 4) == b"q00\n"


def test_byte_arriving_while_timed_waits_and_is_reported(probe):
    probe.write(b"b")
    assert reply(probe, 1) == b"R"
    probe.write(b"x")
    # end() says another interrupt wanted to run; the byte did not reach the ring inside
    assert probe.read(4) == b"b10\n"
    assert probe.read(1) == b"x"  # and it is not lost: delivered once the region ended
    probe.write(b"q")
    assert probe.read(4) == b"q00\n"
