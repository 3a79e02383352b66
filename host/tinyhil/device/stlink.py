"""Nucleo boards through their ST-LINK: finding the virtual COM port by USB
ids, and resetting or flashing the board with Debian's openocd.

The ST-LINK on a Nucleo is one USB device with two faces: a debug probe
(openocd talks to it) and a CDC serial port (the target's UART). Both carry
the ST-LINK's USB serial number, which is how a port is matched to its probe
when several boards are plugged in.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from tinyhil.board_catalog import BoardConfig
from tinyhil.errors import TinyhilError, ToolMissing

ST_VID = 0x0483
# ST-LINK/V2-1 (Nucleo-64 such as the F446RE), STLINK-V3 variants (Nucleo-144
# such as the L552ZE-Q): every PID that exposes a virtual COM port.
STLINK_PIDS = {0x374B: "ST-LINK/V2-1", 0x3752: "ST-LINK/V2-1", 0x374E: "STLINK-V3",
               0x374F: "STLINK-V3", 0x3753: "STLINK-V3", 0x3754: "STLINK-V3"}
OPENOCD_SETUP = "sudo apt-get install openocd (`make setup` installs it)"


@dataclass(frozen=True)
class StlinkPort:
    device: str  # /dev/ttyACM0
    serial_number: str  # the ST-LINK's USB serial: openocd's `adapter serial`
    probe: str  # "ST-LINK/V2-1", "STLINK-V3"
    description: str


def _comports():
    from serial.tools import list_ports

    return list_ports.comports()


def stlink_ports() -> list[StlinkPort]:
    """Every ST-LINK virtual COM port on this machine, by USB ids."""
    found = []
    for info in _comports():
        if info.vid == ST_VID and info.pid in STLINK_PIDS:
            found.append(StlinkPort(info.device, info.serial_number or "", STLINK_PIDS[info.pid],
                                    info.description or ""))
    return sorted(found, key=lambda p: p.device)


def describe_port(device: str):
    """pyserial's ListPortInfo of a local port, or None (a URL, a pty, a pipe)."""
    for info in _comports():
        if info.device == device:
            return info
    return None


def check_is_stlink(config: BoardConfig, device: str) -> StlinkPort | None:
    """A USB port that belongs to another device than an ST-LINK is refused:
    openocd would flash whichever Nucleo it finds while we listen elsewhere.
    Ports that are no USB device (a pty, socket://) pass unchecked."""
    info = describe_port(device)
    if info is None or info.vid is None:
        return None
    if info.vid == ST_VID and info.pid in STLINK_PIDS:
        return StlinkPort(info.device, info.serial_number or "", STLINK_PIDS[info.pid],
                          info.description or "")
    others = ", ".join(p.device for p in stlink_ports()) or "none found"
    raise TinyhilError(
        f"port {device} is {info.description or 'a USB device'} "
        f"(USB {info.vid:04x}:{info.pid or 0:04x}), not the ST-LINK of a Nucleo "
        f"(USB {ST_VID:04x}:{'/'.join(f'{p:04x}' for p in sorted(STLINK_PIDS))}); "
        f"board {config.name} needs its ST-LINK port; ST-LINK ports here: {others}"
    )


def find_port(config: BoardConfig) -> str:
    """The one ST-LINK port attached, for a board named without --port."""
    ports = stlink_ports()
    if len(ports) == 1:
        return ports[0].device
    if not ports:
        raise TinyhilError(
            f"board {config.name} is physical and no --port was given, and no ST-LINK serial "
            f"port (USB {ST_VID:04x}) was found: plug the Nucleo's ST-LINK USB in (the CN1 "
            "connector), check `ls /dev/ttyACM*`, or pass --port /dev/ttyACM0"
        )
    listed = ", ".join(f"{p.device} ({p.probe} {p.serial_number})" for p in ports)
    raise TinyhilError(f"board {config.name}: {len(ports)} ST-LINK ports found ({listed}); "
                       "pass --port to choose one")


def openocd_command(config: BoardConfig, device: str, commands: str) -> list[str]:
    if not config.openocd_board:
        raise TinyhilError(f"board {config.name} has no openocd board script "
                           "(upload.openocd_board in its boards/*.json)")
    openocd = shutil.which("openocd")
    if not openocd:
        raise ToolMissing(f"openocd not found (board {config.name} is flashed and reset "
                          f"with it): {OPENOCD_SETUP}")
    command = [openocd, "-f", config.openocd_board]
    port = describe_port(device) if device else None
    if port is not None and port.vid == ST_VID and port.serial_number:
        command += ["-c", f"adapter serial {port.serial_number}"]
    return command + ["-c", commands]


def run_openocd(config: BoardConfig, device: str, commands: str, what: str,
                timeout: float = 60.0) -> None:
    command = openocd_command(config, device, commands)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise TinyhilError(f"openocd did not finish {what} of board {config.name} within "
                           f"{timeout:g} s ({' '.join(command)})") from error
    if result.returncode != 0:
        raise TinyhilError(openocd_failure(config, what, result.stderr + result.stdout))


def openocd_failure(config: BoardConfig, what: str, output: str) -> str:
    """openocd's own error lines, and what usually causes them."""
    errors = [line.strip() for line in output.splitlines() if line.lower().startswith("error")]
    text = " | ".join(errors[-4:]) or output.strip()[-400:]
    hint = ""
    if "open failed" in output or "No ST-LINK" in output or "unable to open" in output.lower():
        hint = (" -- no ST-LINK found: is the board plugged in (USB on the ST-LINK side)? As a "
                "user, openocd needs the udev rules of Debian's openocd package (replug the "
                "board after installing it) and membership of group plugdev")
    elif "unexpected idcode" in output.lower() or "device id" in output.lower():
        hint = f" -- the chip is not the one board {config.name} expects: another Nucleo?"
    return f"openocd failed to {what} board {config.name}: {text}{hint}"


def reset(config: BoardConfig, device: str) -> None:
    """The reset button, through the probe: the firmware restarts, flash untouched."""
    run_openocd(config, device, "init; reset run; shutdown", "reset")
