"""A board on another host, reached through labgrid, the lab's inventory and lock.

Through labgrid's public interfaces only: its command-line client for the
coordinator (`labgrid-client reserve --wait` by tags or by name, then
`acquire` of the place the reservation got, `release`), and its library's
environment (a target with the `RemotePlace`, its drivers) for what the place
exports:

- the serial port: the place's NetworkSerialPort (ser2net on the exporter),
  opened by tinyhil's driver over RFC 2217;
- flashing: where the place exports a debugger (a NetworkUSBDebugger, the
  exporter host's ST-LINK) labgrid's OpenOCDDriver loads the image through it
  (openocd runs on the exporter host, over SSH); a place without one runs a
  pinned image (INFO's build id must be the job's), and asking it to flash is
  an error naming what it lacks;
- reset and power: labgrid's ResetProtocol / PowerProtocol drivers the
  inventory gives the place (`drivers:`), else reconnecting.

A place another user holds is waited for, up to `wait_s`, in labgrid's own
reservation queue. labgrid's library keeps one coordinator session per
process, so every call into it runs on one thread (`_LABGRID`).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tinyhil.board_catalog import BoardConfig
from tinyhil.device.boards import Board
from tinyhil.device.driver import DeviceInfo
from tinyhil.errors import BoardNotResponding, TinyhilError

_LABGRID = ThreadPoolExecutor(1, thread_name_prefix="tinyhil-labgrid")
DEBUGGERS = ("NetworkUSBDebugger",)  # what labgrid's OpenOCDDriver flashes through


class LabgridError(TinyhilError):
    """The coordinator, the place, its serial port or its debugger could not be used."""


@dataclass(frozen=True)
class LabgridPlace:
    """Which place a board is: a named one, or any place with these tags."""

    coordinator: str  # host:port of labgrid-coordinator
    place: str = ""
    tags: tuple[tuple[str, str], ...] = ()  # reserve --wait k=v ...: any free place with them
    wait_s: float = 0.0  # how long to wait for a place another user holds
    flash: bool = False  # load each job's image through the place's debugger (else: pinned image)
    drivers: tuple[tuple[str, tuple], ...] = field(default=())  # labgrid drivers: (class, ((arg, value), ...))

    @property
    def selector(self) -> str:
        return self.place or ",".join(f"{k}={v}" for k, v in self.tags)

    @property
    def filters(self) -> list[str]:
        return [f"name={self.place}"] if self.place else [f"{k}={v}" for k, v in self.tags]


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise LabgridError(f"{name} not found (pip: labgrid)")
    return found


class LabgridClient:
    """The coordinator, through `labgrid-client` (labgrid's public command line)."""

    def __init__(self, coordinator: str):
        self.coordinator = coordinator

    def run(self, *args: str, timeout: float = 60.0, check: bool = True) -> str:
        command = [_tool("labgrid-client"), "-x", self.coordinator, *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise
        if check and done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise LabgridError(f"labgrid-client {' '.join(args)} (coordinator {self.coordinator}): "
                               + (said[-1] if said else f"exit status {done.returncode}"))
        return done.stdout

    def reserve(self, place: LabgridPlace) -> tuple[str, str]:
        """(token, place name): a place matching the filters, waited for up to
        place.wait_s if others hold them all, then acquired."""
        out = self.run("reserve", "--shell", *place.filters)
        match = re.search(r"LG_TOKEN=(\w+)", out)
        if not match:
            raise LabgridError(f"labgrid-client reserve {' '.join(place.filters)} gave no token: {out.strip()}")
        token = match.group(1)
        try:
            try:
                self.run("wait", token, timeout=max(place.wait_s, 2.0))
            except subprocess.TimeoutExpired:
                held = self._holders(place)
                raise LabgridError(f"no labgrid place with {' '.join(place.filters)} became free within "
                                   f"{place.wait_s:g} s" + (f" (held: {held})" if held else "")
                                   + "; wait longer (--wait) or release it") from None
            self.run("-p", f"+{token}", "acquire")
            shown = self.run("-p", f"+{token}", "show")
            name = re.search(r"Place '([^']+)'", shown)
            if not name:
                raise LabgridError(f"labgrid-client show of reservation {token}: no place in {shown[:200]!r}")
            return token, name.group(1)
        except BaseException:
            self.run("cancel-reservation", token, check=False)
            raise

    def _holders(self, place: LabgridPlace) -> str:
        if not place.place:
            return ""
        out = self.run("-p", place.place, "show", check=False)
        found = re.search(r"acquired:\s*(\S+)", out)
        return f"{place.place} by {found.group(1)}" if found else ""

    def release(self, name: str, token: str) -> None:
        self.run("-p", name, "release", check=False)
        self.run("cancel-reservation", token, check=False)


class LabgridTarget:
    """The acquired place as a labgrid target (labgrid's Environment and drivers)."""

    def __init__(self, coordinator: str, place: str, drivers: tuple):
        self.directory = tempfile.mkdtemp(prefix="tinyhil-labgrid-")
        config = {"options": {"coordinator_address": coordinator},
                  "targets": {"main": {"resources": [{"RemotePlace": {"name": place}}]}}}
        path = Path(self.directory) / "env.yaml"
        path.write_text(yaml.safe_dump(config))
        self.place = place
        self.drivers = drivers
        self.env = _LABGRID.submit(self._environment, path).result()
        self.target = self.env.get_target("main")

    @staticmethod
    def _environment(path: Path):
        from labgrid import Environment

        return Environment(str(path))

    def call(self, fn, *args):
        return _LABGRID.submit(fn, *args).result()

    def resource_classes(self) -> list[str]:
        return sorted({type(r).__name__ for r in self.target.resources})

    def serial_url(self, wait_s: float) -> str:
        def find():
            ports = [r for r in self.target.resources if type(r).__name__ == "NetworkSerialPort"]
            if not ports:
                return None
            deadline = time.monotonic() + wait_s
            while not ports[0].avail and time.monotonic() < deadline:
                self.target.update_resources()
                time.sleep(0.2)
            return ports[0]

        port = self.call(find)
        if port is None:
            raise LabgridError(f"labgrid place {self.place} has no NetworkSerialPort (it exports "
                               f"{', '.join(self.resource_classes()) or 'nothing'}): export the board's serial "
                               "port as RawSerialPort or USBSerialPort")
        if not port.avail or not port.port:
            raise LabgridError(f"labgrid place {self.place}: its serial port is not available")
        if getattr(port, "protocol", "rfc2217") == "raw":
            return f"socket://{port.host}:{port.port}"
        # ser2net cannot set DTR on every port; labgrid's SerialDriver ignores it too
        return f"rfc2217://{port.host}:{port.port}?ign_set_control&timeout=5"

    def driver(self, protocol: str, board: BoardConfig):
        """The active driver of a labgrid protocol (BootstrapProtocol, ResetProtocol,
        PowerProtocol) the place has, or None."""
        def make():
            from labgrid import driver as drivers
            from labgrid.exceptions import NoDriverFoundError

            try:
                found = self.target.get_driver(protocol, activate=False)
            except NoDriverFoundError:
                found = self._add(protocol, board, drivers)
                if found is None:
                    return None
            self.target.activate(found)
            return found
        return self.call(make)

    def _add(self, protocol: str, board: BoardConfig, drivers):
        """The inventory's drivers of the place, and OpenOCD on its debugger."""
        for name, args in self.drivers:
            cls = getattr(drivers, name, None)
            if cls is None:
                raise LabgridError(f"labgrid has no driver {name} (place {self.place})")
            if protocol in {base.__name__ for base in cls.__mro__}:
                return cls(self.target, name=None, **dict(args))
        has_debugger = any(type(r).__name__ in DEBUGGERS for r in self.target.resources)
        if protocol == "BootstrapProtocol" and has_debugger and board.openocd_board:
            return drivers.OpenOCDDriver(self.target, name=None,
                                         board_config=board.openocd_board.removeprefix("board/"))
        return None

    def close(self) -> None:
        try:
            self.call(self.target.cleanup)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class LabgridBoard(Board):
    def __init__(self, config: BoardConfig, place: LabgridPlace, timeout: float = 30.0,
                 retries: int = 2, port_wait_s: float = 15.0):
        super().__init__(config, timeout, retries)
        self.spec = place
        self.coordinator = place.coordinator
        self.place = place.place or ""  # the place acquired (a reservation by tags names it then)
        self.port_wait_s = port_wait_s
        self.client = LabgridClient(place.coordinator)
        self.token = ""
        self.lg: LabgridTarget | None = None
        self.flashed = ""  # image id last loaded through the debugger
        self.url = ""

    def _acquire(self) -> None:
        if self.lg is not None:
            return
        self.token, self.place = self.client.reserve(self.spec)
        try:
            self.lg = LabgridTarget(self.coordinator, self.place, self.spec.drivers)
        except Exception as error:
            self.client.release(self.place, self.token)
            if isinstance(error, TinyhilError):
                raise
            raise LabgridError(f"labgrid place {self.place}: {type(error).__name__}: {error}") from error

    # ---- Board strategy -----------------------------------------------------------
    def _power_on(self) -> str:
        self._acquire()
        if self.spec.flash and self.flashed != self.image.image_id:
            self._flash()
        self.url = self.lg.serial_url(self.port_wait_s)
        return self.url

    def _flash(self) -> None:
        bootstrap = self.lg.driver("BootstrapProtocol", self.config)
        if bootstrap is None:
            raise LabgridError(
                f"labgrid place {self.place} cannot flash {self.image.elf}: it has no debugger (no "
                f"{' or '.join(DEBUGGERS)} among its resources: {', '.join(self.lg.resource_classes())}) and no "
                "BootstrapProtocol driver in the inventory; export the board's ST-LINK as a USBDebugger, "
                "or drop `flash:` to run a pinned image")
        try:
            self.lg.call(bootstrap.load, str(self.image.elf))
        except Exception as error:  # labgrid's ExecutionError, CalledProcessError: openocd's own words
            output = getattr(error, "stdout", None) or getattr(error, "output", None) or ""
            if isinstance(output, (bytes, bytearray)):
                output = output.decode(errors="replace")
            lines = [line for line in str(output or error).splitlines() if line.strip()]
            said = " | ".join(line for line in lines if "rror" in line) or " | ".join(lines[-3:])
            raise LabgridError(f"labgrid place {self.place}: {type(bootstrap).__name__} could not flash "
                               f"{self.image.elf.name} (image {self.image.image_id}): {said}") from error
        self.flashed = self.image.image_id

    def flash_hint(self) -> str:
        if self.spec.flash:
            return f"labgrid place {self.place} was flashed with it, but runs another image"
        return (f"labgrid place {self.place} must run {self.image.elf} (a pinned image: the place is not flashed "
                "by tinyhil unless its inventory entry says `flash: true` and it exports a debugger)")

    def _power_off(self) -> None:
        pass  # the place stays acquired until close(): a reset must not hand it to others

    def reset(self) -> DeviceInfo:
        """labgrid's ResetProtocol where the place has one; else reconnecting."""
        if self.lg is not None:
            driver = self.lg.driver("ResetProtocol", self.config)
            if driver is not None:
                self._disconnect()
                self.lg.call(driver.reset)
                return self._bring_up()
        return self.power_cycle()

    def power_cycle(self) -> DeviceInfo:
        """labgrid's PowerProtocol where the place has one; else reconnecting."""
        self._disconnect()
        if self.lg is not None:
            driver = self.lg.driver("PowerProtocol", self.config)
            if driver is not None:
                self.lg.call(driver.cycle)
        return self._bring_up()

    def reflash(self) -> DeviceInfo:
        self.flashed = ""
        return self.power_cycle()

    def _bring_up(self) -> DeviceInfo:
        try:
            return super()._bring_up()
        except BoardNotResponding:
            raise
        except OSError as error:  # the socket to ser2net
            raise BoardNotResponding(f"board {self.config.name} at {self.url}: {error}") from error

    def ticks_to_cycles(self, ticks: int) -> float:
        from tinyhil.device.boards import QemuBoard

        if self.config.emulated:  # an exported QEMU counts instructions like a local one
            return QemuBoard.ticks_to_cycles(self, ticks)
        return ticks * self.info.clock_hz / self.info.counter_hz

    def close(self) -> None:
        super().close()
        if self.lg is not None:
            try:
                self.lg.close()
            finally:
                self.lg = None
                self.client.release(self.place, self.token)


__all__ = ["LabgridBoard", "LabgridClient", "LabgridError", "LabgridPlace"]
