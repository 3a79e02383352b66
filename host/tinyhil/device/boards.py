"""Boards that run a built image and answer the protocol.

Each board class is a strategy in labgrid's sense: it knows how to bring its
resource (a QEMU process, a serial port) to the state "firmware answering",
and how to get back there (reset, power-cycle); the talking is done by the
BenchDriver it hands out.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable

import serial

from tinyhil.board_catalog import BoardConfig
from tinyhil.device import stlink
from tinyhil.device.driver import LINK_ERRORS, BenchDriver, DeviceInfo, boot_waits
from tinyhil.device.flash import upload
from tinyhil.device.qemu import QemuProcess, wait_for_pty
from tinyhil.errors import BoardNotResponding, TinyhilError
from tinyhil.image.firmware import BuiltImage, build_image, cached_image_problem

SERIAL_BAUD = 115200
# Guest instructions per host second below which an emulated board is taken
# for dead (QEMU does ~600 M here; 12x slack for a loaded host).
SLOWEST_GUEST_IPS = 50e6


# Steps a board's strategy tries, in order, when it stops answering: each
# one heavier than the last. Board methods of the same names do them.
RECOVERY_STEPS = ("reset", "power_cycle", "reflash")


class Board(ABC):
    def __init__(self, config: BoardConfig, timeout: float = 30.0, retries: int = 2):
        self.config = config
        self.timeout = timeout
        self.retries = retries
        self.image: BuiltImage | None = None
        self.port: serial.SerialBase | None = None
        self.driver: BenchDriver | None = None
        self.info: DeviceInfo | None = None
        # Maps the board's serial port to the one the host opens: the
        # identity, or a fault-injecting proxy in front of it (tests, bench).
        self.link: Callable[[str], str] = lambda port: port
        self.recoveries: Counter[str] = Counter()  # recovery steps taken, by name
        # Counter ticks of one inference per benchmark of the booted image: scales RUN timeouts
        self.inference_ticks: dict[int, int] = {}

    @abstractmethod
    def _power_on(self) -> str:
        """Starts the image; returns the serial port to talk to."""

    @abstractmethod
    def _power_off(self) -> None: ...

    @abstractmethod
    def ticks_to_cycles(self, ticks: int) -> float:
        """Counter ticks as core cycles (instructions on an emulated board)."""

    def boot(self, image: BuiltImage) -> DeviceInfo:
        if self.image is None or self.image.image_id != image.image_id:
            self.inference_ticks = {}
        self.image = image
        return self._bring_up()

    def ticks_per_host_second(self) -> float:
        """Counter ticks per host second when the board runs slowest: a
        physical board counts in real time."""
        assert self.info is not None
        return float(self.info.counter_hz)

    def reset(self) -> DeviceInfo:
        """Back to a freshly started firmware, same image."""
        return self.power_cycle()

    def power_cycle(self) -> DeviceInfo:
        self._disconnect()
        self._power_off()
        return self._bring_up()

    def reflash(self) -> DeviceInfo:
        """Writes the image again (a flash corrupted by a brown-out, say)."""
        return self.power_cycle()

    def recover(self, step: str) -> DeviceInfo:
        if step not in RECOVERY_STEPS:
            raise ValueError(f"unknown recovery step {step!r}; known: {', '.join(RECOVERY_STEPS)}")
        self.recoveries[step] += 1
        return getattr(self, step)()

    def close(self) -> None:
        self._disconnect()
        self._power_off()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _bring_up(self) -> DeviceInfo:
        assert self.image is not None, "boot() an image first"
        port_name = self._power_on()
        try:
            # A device path or a URL (socket://host:port of a remote board)
            self.port = serial.serial_for_url(self.link(port_name), SERIAL_BAUD, timeout=0.05)
        except LINK_ERRORS as error:  # gone again already (QEMU killed while booting)
            raise BoardNotResponding(f"board {self.config.name}: cannot open its serial port "
                                     f"{port_name} ({error})") from error
        return self._handshake()

    def _handshake(self) -> DeviceInfo:
        """INFO, and the check that the board runs the image we built."""
        # Booting needs no long timeout: the runner answers INFO at once, once it is up.
        boot_driver = BenchDriver(self.port, self.config.name)
        self.info = boot_driver.info(boot_waits(min(5.0, self.timeout), 3 * min(5.0, self.timeout)))
        self.driver = BenchDriver(self.port, self.config.name, self.timeout, self.retries,
                                  self.ticks_per_host_second(), self.inference_ticks)
        self.driver._seq = boot_driver._seq
        if self.info.board != self.config.name:
            raise TinyhilError(
                f"{self.where()} answers as board {self.info.board} (image "
                f"{self.info.build_id}), not {self.config.name}: {self.wrong_board_hint()}"
            )
        if self.info.build_id != self.image.image_id:
            raise TinyhilError(
                f"board {self.config.name} runs image {self.info.build_id}, "
                f"expected {self.image.image_id}: {self.flash_hint()}"
            )
        return self.info

    def flash_hint(self) -> str:
        return "flashing did not take"

    def where(self) -> str:
        return f"board {self.config.name}"

    def wrong_board_hint(self) -> str:
        return "the image was built for another board"

    def _disconnect(self) -> None:
        if self.port is not None:
            try:
                self.port.close()
            except LINK_ERRORS:
                pass  # the other end is already gone: closed all the same
            self.port = None


class QemuBoard(Board):
    """An emulated board: QEMU with -icount, UART0 on a pty."""

    def __init__(self, config: BoardConfig, timeout: float = 30.0, retries: int = 2):
        super().__init__(config, timeout, retries)
        self.qemu: QemuProcess | None = None

    def _power_on(self) -> str:
        assert self.image is not None
        self.qemu = QemuProcess(self.config.qemu_machine, self.image.elf, self.config.icount_shift,
                                serial_index=self.config.qemu_serial_index)
        pty = self.qemu.start()
        wait_for_pty(pty)
        return pty

    def _power_off(self) -> None:
        if self.qemu is not None:
            self.qemu.stop()
            self.qemu = None

    def reset(self) -> DeviceInfo:
        """The reset button (QMP system_reset); a dead QEMU is started again."""
        if self.qemu is None or not self.qemu.alive():
            return self.power_cycle()
        try:
            self.qemu.system_reset()
        except (OSError, ValueError):  # ValueError: QMP's answer cut short by QEMU's death
            return self.power_cycle()
        return self._handshake()

    def ticks_per_host_second(self) -> float:
        # Counter ticks are virtual time: one guest instruction is 2**shift ns.
        # QEMU runs TFLM at ~600 M guest instructions per host second here; a
        # loaded host slows it, so assume SLOWEST_GUEST_IPS.
        assert self.info is not None
        ticks_per_instruction = (1 << self.config.icount_shift) * self.info.counter_hz / 1e9
        return SLOWEST_GUEST_IPS * ticks_per_instruction
    def reflash(self) -> DeviceInfo:
        """QEMU's flash is the cached ELF: one damaged since it was built is built
        again (by its checksum), then started afresh."""
        assert self.image is not None
        if cached_image_problem(self.image.elf) is not None:
            self.image = build_image(self.image.spec, self.image.board)
        return self.power_cycle()

    def ticks_to_cycles(self, ticks: int) -> float:
        # SysTick counts virtual time at counter_hz; under -icount every guest
        # instruction advances virtual time by 2**shift ns. When an instruction
        # spans more than two ticks the read-out error (one tick) is under half
        # an instruction, and rounding recovers the exact instruction count.
        assert self.info is not None
        instructions = ticks * (1e9 / self.info.counter_hz) / (1 << self.config.icount_shift)
        ticks_per_instruction = (1 << self.config.icount_shift) * self.info.counter_hz / 1e9
        return float(round(instructions)) if ticks_per_instruction > 2 else instructions


class SerialBoard(Board):
    """A physical board on a serial port, flashed with `pio run -t upload`.

    A Nucleo (its board JSON names an openocd script) is reset through its
    ST-LINK with openocd, and its port is found from the ST-LINK's USB ids
    when none is given."""

    RESET_METHODS = ("flash", "dtr", "rts", "openocd")

    def __init__(self, config: BoardConfig, port: str = "", timeout: float = 30.0,
                 retries: int = 2, settle_seconds: float = 2.0, reset_method: str = ""):
        super().__init__(config, timeout, retries)
        self.port_name = port or config.upload_port
        self.settle_seconds = settle_seconds
        reset_method = reset_method or ("openocd" if config.openocd_board else "flash")
        if reset_method not in self.RESET_METHODS:
            raise TinyhilError(f"board {config.name}: unknown reset method {reset_method!r}; "
                               f"use one of {', '.join(self.RESET_METHODS)}")
        if reset_method == "openocd" and not config.openocd_board:
            raise TinyhilError(f"board {config.name} has no openocd board script: reset it "
                               "with flash, dtr or rts")
        self.reset_method = reset_method
        if config.openocd_board:
            if not self.port_name:
                self.port_name = stlink.find_port(config)
            stlink.check_is_stlink(config, self.port_name)
        if not self.port_name:
            raise TinyhilError(
                f"board {config.name} needs a serial port: pass --port /dev/ttyACM0 "
                "or set upload_port in platformio.ini"
            )

    def where(self) -> str:
        return f"the board on {self.port_name}"

    def wrong_board_hint(self) -> str:
        return ("is --port the right board's? Two boards plugged in: see `ls -l /dev/serial/by-id` "
                "and pass that board's port")

    def flash_hint(self) -> str:
        return (f"flashing did not take, or {self.port_name} belongs to another board "
                "(see `ls -l /dev/serial/by-id`)")

    def _power_on(self) -> str:
        assert self.image is not None
        upload(self.image, self.port_name)  # flashing also resets the board
        time.sleep(self.settle_seconds)  # USB CDC re-enumerates after reset
        return self.port_name

    def _power_off(self) -> None:
        pass  # a physical board stays powered; reset re-flashes it

    def reset(self) -> DeviceInfo:
        """The reset line: through the ST-LINK (openocd), or pulsing the line
        wired to the board's reset (DTR or RTS, as the Arduino and ESP32
        auto-reset circuits are), else flashing again."""
        if self.reset_method == "flash" or self.port is None:
            return self.power_cycle()
        if self.reset_method == "openocd":
            stlink.reset(self.config, self.port_name)
            time.sleep(0.5)  # the firmware's clock and UART set-up; the VCP stays up
            return self._handshake()
        line = "dtr" if self.reset_method == "dtr" else "rts"
        setattr(self.port, line, True)
        time.sleep(0.1)
        setattr(self.port, line, False)
        time.sleep(self.settle_seconds)
        return self._handshake()

    def ticks_to_cycles(self, ticks: int) -> float:
        assert self.info is not None
        return ticks * self.info.clock_hz / self.info.counter_hz


def open_board(config: BoardConfig, port: str = "", timeout: float = 30.0, retries: int = 2, *,
               reset: str = "", labgrid=None) -> Board:
    """The one place a board connection is made: QEMU for an emulated board, a
    serial port for a physical one (`reset`: "" its own method), or a labgrid
    place (a device.labgrid_board.LabgridPlace)."""
    if labgrid:
        from tinyhil.device.labgrid_board import LabgridBoard

        return LabgridBoard(config, labgrid, timeout, retries)
    if config.emulated:
        return QemuBoard(config, timeout, retries)
    return SerialBoard(config, port, timeout, retries, reset_method=reset)


__all__ = ["Board", "QemuBoard", "SerialBoard", "open_board", "BoardNotResponding",
           "RECOVERY_STEPS"]
