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
reservation queue. Each action on the place runs labgrid's environment API in
a short process of its own (labgrid_env.py): labgrid's library keeps one
coordinator session per process, whose view of the lab goes stale.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tinyhil.board_catalog import BoardConfig
from tinyhil.device.boards import Board
from tinyhil.device.driver import DeviceInfo
from tinyhil.errors import BoardNotResponding, TinyhilError

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
    """The acquired place as a labgrid target: each action (serial port, flash,
    reset, power) runs labgrid's environment API in a short process of its own
    (device/labgrid_env.py), which sees the lab as it is now."""

    def __init__(self, coordinator: str, place: str, drivers: tuple, openocd_board: str = ""):
        self.request = {"coordinator": coordinator, "place": place, "openocd_board": openocd_board,
                        "drivers": [[name, [list(a) for a in args]] for name, args in drivers]}
        self.place = place

    def act(self, action: str, timeout: float = 120.0, **extra):
        command = [sys.executable, "-m", "tinyhil.device.labgrid_env",
                   json.dumps({**self.request, "action": action, **extra})]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))}
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LabgridError(f"labgrid place {self.place}: {action} took over {timeout:g} s") from None
        lines = done.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1])
        except (IndexError, ValueError):
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise LabgridError(f"labgrid place {self.place}: {action} failed: {tail}") from None
        if "error" in answer:
            raise LabgridError(f"labgrid place {self.place}: {answer['error']}")
        return answer["ok"]

    def serial_url(self, wait_s: float) -> str:
        return self.act("serial", timeout=wait_s + 60, wait_s=wait_s)

    def close(self) -> None:
        pass


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
        self.lg = LabgridTarget(self.coordinator, self.place, self.spec.drivers, self.config.openocd_board)

    # ---- Board strategy -----------------------------------------------------------
    def _power_on(self) -> str:
        self._acquire()
        if self.spec.flash and self.flashed != self.image.image_id:
            self._flash()
        self.url = self.lg.serial_url(self.port_wait_s)
        return self.url

    def _flash(self) -> None:
        try:
            done = self.lg.act("flash", elf=str(self.image.elf))
        except LabgridError as error:  # the driver's tool said why (openocd's own lines)
            raise LabgridError(f"{error} (flashing image {self.image.image_id})") from None
        if isinstance(done, dict) and done.get("missing"):
            raise LabgridError(
                f"labgrid place {self.place} cannot flash image {self.image.image_id}: it has no debugger (no "
                f"{' or '.join(DEBUGGERS)} among its resources: {', '.join(done['resources'])}) and no "
                "BootstrapProtocol driver in the inventory; export the board's ST-LINK as a USBDebugger, "
                "or drop `flash:` to run a pinned image")
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
        if self.lg is not None and self.spec.drivers:
            self._disconnect()
            done = self.lg.act("reset")
            if not (isinstance(done, dict) and done.get("missing")):
                return self._bring_up()
        return self.power_cycle()

    def power_cycle(self) -> DeviceInfo:
        """labgrid's PowerProtocol where the place has one; else reconnecting."""
        self._disconnect()
        if self.lg is not None and self.spec.drivers:
            self.lg.act("power_cycle")
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
