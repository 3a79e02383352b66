"""The Nucleo boards' bare-metal images, built offline, checked against each
chip's memory map; their ST-LINK port discovery and openocd errors."""
import struct
from dataclasses import replace
from types import SimpleNamespace

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from conftest import make_int8_model
from tinyhil.board_catalog import get_board
from tinyhil.device import stlink
from tinyhil.device.boards import QemuBoard, SerialBoard
from tinyhil.device.flash import upload
from tinyhil.errors import ImageTooLarge, TinyhilError, ToolMissing
from tinyhil.image.elf import compiler_of
from tinyhil.image.firmware import build_image
from tinyhil.measure.model import model_image
from tinyhil.models.tflite_model import TfliteModel

FLASH = 0x08000000
SRAM = 0x20000000
# board: (flash bytes, RAM bytes, UART interrupt handler, its IRQ number) from RM0390 / RM0438
CHIPS = {
    "nucleo_f446re": (512 * 1024, 128 * 1024, "USART2_IRQHandler", 38),
    "nucleo_l552ze_q": (512 * 1024, 256 * 1024, "LPUART1_IRQHandler", 66),
}


@pytest.fixture(scope="module")
def small_conv(models_dir):
    import tensorflow as tf

    L = tf.keras.layers
    return make_int8_model(models_dir / "small_conv.tflite", [
        L.Conv1D(8, 3, activation="relu"), L.MaxPooling1D(2), L.Flatten(), L.Dense(4), L.Softmax(),
    ], (32, 3))


def inside(start, size, base, length):
    return base <= start and start + size <= base + length


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_image_fits_the_chip_memory_map(name, small_conv):
    flash_bytes, ram_bytes, uart_handler, uart_irq = CHIPS[name]
    config = get_board(name)
    assert (config.flash_bytes, config.ram_bytes) == (flash_bytes, ram_bytes)
    image = build_image(model_image(TfliteModel.load(small_conv), config), config)
    assert image.size.flash <= flash_bytes and image.size.ram <= ram_bytes
    assert "GCC" in compiler_of(image.elf)  # Debian's arm-none-eabi-gcc, no vendor toolchain

    with open(image.elf, "rb") as f:
        elf = ELFFile(f)
        for section in elf.iter_sections():
            flags, size = section["sh_flags"], section["sh_size"]
            if not flags & SH_FLAGS.SHF_ALLOC or size == 0:
                continue
            address = section["sh_addr"]
            if section["sh_type"] == "SHT_NOBITS" or section.name == ".data":
                assert inside(address, size, SRAM, ram_bytes), section.name
            else:  # code, constants, tables (.init_array is writable but lives in flash)
                assert inside(address, size, FLASH, flash_bytes), section.name
        for segment in elf.iter_segments():  # what is written to flash, .data's image included
            if segment["p_type"] == "PT_LOAD" and segment["p_filesz"]:
                assert inside(segment["p_paddr"], segment["p_filesz"], FLASH, flash_bytes)
        vectors = elf.get_section_by_name(".isr_vector")
        assert vectors["sh_addr"] == FLASH  # where the chip boots from (TZEN=0 on the L552)
        table = vectors.data()
        stack, reset = struct.unpack_from("<II", table)
        assert stack == SRAM + ram_bytes
        symbols = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
        assert reset == symbols["Reset_Handler"] | 1 and inside(reset & ~1, 2, FLASH, flash_bytes)
        (uart_vector,) = struct.unpack_from("<I", table, 4 * (16 + uart_irq))
        assert uart_vector == symbols[uart_handler] | 1
        (systick,) = struct.unpack_from("<I", table, 4 * 15)
        assert systick == symbols["SysTick_Handler"] | 1


def test_image_larger_than_the_chip_says_by_how_much(models_dir):
    """A model that fits alone but not with the runtime: the linker's overflow,
    per region, with the chip's size."""
    import tensorflow as tf

    path = make_int8_model(models_dir / "dense_505k.tflite", [tf.keras.layers.Dense(1000)], (505,))
    config = get_board("nucleo_f446re")
    with pytest.raises(ImageTooLarge, match=r"nucleo_f446re: FLASH by \d+ bytes \(of its 524288\)"):
        build_image(model_image(TfliteModel.load(path), config), config)


# ---- ST-LINK port discovery (pyserial's port list replaced by a given one) ----
def port(device, vid, pid, serial_number="", description=""):
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial_number,
                           description=description)


NUCLEO_F4 = port("/dev/ttyACM0", 0x0483, 0x374B, "066DFF535155", "STM32 STLink")
NUCLEO_L5 = port("/dev/ttyACM1", 0x0483, 0x374E, "0029003A3438", "STLINK-V3")
FTDI = port("/dev/ttyUSB0", 0x0403, 0x6001, "A50285BI", "FT232R USB UART")


def test_the_one_stlink_port_is_found(monkeypatch):
    monkeypatch.setattr(stlink, "_comports", lambda: [FTDI, NUCLEO_F4])
    assert stlink.find_port(get_board("nucleo_f446re")) == "/dev/ttyACM0"


def test_board_named_without_port_and_none_found(monkeypatch):
    monkeypatch.setattr(stlink, "_comports", lambda: [FTDI])
    with pytest.raises(TinyhilError, match="no --port was given, and no ST-LINK serial port"):
        SerialBoard(get_board("nucleo_l552ze_q"))


def test_two_stlinks_need_a_choice(monkeypatch):
    monkeypatch.setattr(stlink, "_comports", lambda: [NUCLEO_F4, NUCLEO_L5])
    with pytest.raises(TinyhilError, match=r"2 ST-LINK ports found .*ttyACM0.*ttyACM1.*--port"):
        SerialBoard(get_board("nucleo_f446re"))
    board = SerialBoard(get_board("nucleo_f446re"), port="/dev/ttyACM1")
    assert board.port_name == "/dev/ttyACM1" and board.reset_method == "openocd"


def test_port_that_is_not_a_nucleo(monkeypatch):
    monkeypatch.setattr(stlink, "_comports", lambda: [FTDI, NUCLEO_F4])
    with pytest.raises(TinyhilError, match=r"/dev/ttyUSB0 is FT232R USB UART \(USB 0403:6001\), "
                                           r"not the ST-LINK of a Nucleo.*here: /dev/ttyACM0"):
        SerialBoard(get_board("nucleo_f446re"), port="/dev/ttyUSB0")


def test_openocd_is_told_which_probe(monkeypatch):
    monkeypatch.setattr(stlink, "_comports", lambda: [NUCLEO_F4, NUCLEO_L5])
    command = stlink.openocd_command(get_board("nucleo_l552ze_q"), "/dev/ttyACM1", "init")
    assert command[1:] == ["-f", "board/st_nucleo_l5.cfg", "-c", "adapter serial 0029003A3438",
                           "-c", "init"]


def test_openocd_missing_names_the_setup_command(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissing, match=r"openocd not found.*apt-get install openocd"):
        stlink.reset(get_board("nucleo_f446re"), "")


def test_openocd_failing_gives_its_message():
    """The real openocd, with no ST-LINK on this machine: its error and the usual causes."""
    pytest.importorskip("shutil").which("openocd") or pytest.skip("openocd not installed")
    with pytest.raises(TinyhilError, match=r"openocd failed to reset board nucleo_f446re: "
                                           r"Error: open failed.*no ST-LINK found.*udev"):
        stlink.reset(get_board("nucleo_f446re"), "")


def test_nucleo_boards_need_no_registry():
    """Their environments use the project's own dev-platform, no framework."""
    from platformio.project.config import ProjectConfig

    from tinyhil.project import project_dir

    config = ProjectConfig(str(project_dir() / "platformio.ini"), parse_extra=False)
    for name in ("nucleo_f446re", "nucleo_l552ze_q", "qemu-stm32f4"):
        assert config.get(f"env:{name}", "platform").endswith("/firmware/platform")
        assert not config.get(f"env:{name}", "framework", [])
    assert get_board("nucleo_l552ze_q").clock_hz == 80_000_000  # as the MicroNAS paper measured


@pytest.mark.device
def test_board_answering_as_another_board_is_named(small_conv):
    """The twin's firmware says qemu-stm32f4; a host expecting the F446RE refuses it."""
    twin = get_board("qemu-stm32f4")
    image = build_image(model_image(TfliteModel.load(small_conv), twin), twin)
    with QemuBoard(replace(twin, name="nucleo_f446re"), timeout=5.0) as board:
        with pytest.raises(TinyhilError, match=r"answers as board qemu-stm32f4 \(image "
                                               rf"{image.image_id}\), not nucleo_f446re"):
            board.boot(image)


def test_flashing_without_a_probe_gives_openocds_message(small_conv):
    """`pio run -t upload` runs the dev-platform's openocd upload; with no
    ST-LINK here, openocd's own error comes back with the usual causes."""
    pytest.importorskip("shutil").which("openocd") or pytest.skip("openocd not installed")
    config = get_board("nucleo_f446re")
    image = build_image(model_image(TfliteModel.load(small_conv), config), config)
    with pytest.raises(TinyhilError, match=r"openocd failed to flash board nucleo_f446re: "
                                           r".*open failed.*no ST-LINK found"):
        upload(image, "")


def test_missing_toolchain_is_named_for_the_nucleos(monkeypatch):
    from tinyhil.image import firmware

    monkeypatch.setenv("PATH", "/nonexistent")
    for name in ("nucleo_f446re", "nucleo_l552ze_q"):
        with pytest.raises(ToolMissing, match=rf"arm-none-eabi-gcc not found \(board {name}\)"):
            firmware.check_toolchain(get_board(name))


def test_the_twin_has_no_probe():
    """The twin shares the F446RE's board file but is emulated: no port, no openocd."""
    twin = get_board("qemu-stm32f4")
    assert twin.emulated and not twin.openocd_board and twin.qemu_serial_index == 1
    assert get_board("nucleo_f446re").openocd_board == "board/st_nucleo_f4.cfg"


def test_a_nucleo_in_the_lab_inventory_resets_through_openocd():
    from tinyhil.execute.inventory import parse_inventory

    (nucleo, other) = parse_inventory({"boards": [
        {"name": "f446-1", "board": "nucleo_f446re", "port": "/dev/ttyACM7"},
        {"name": "ble-1", "board": "nano33ble", "port": "/dev/ttyACM8"}]})
    assert nucleo.open().reset_method == "openocd"
    assert other.open().reset_method == "flash"
