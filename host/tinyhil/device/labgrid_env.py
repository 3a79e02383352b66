"""One action on an acquired labgrid place, through labgrid's environment API,
in a process of its own: `python -m tinyhil.device.labgrid_env REQUEST-JSON`.

labgrid's library keeps one coordinator session per process and remembers
every remote resource it ever saw (places made later, exporters restarted:
its view goes stale in a long-lived process). A short process per action
sees the lab as it is now, on any coordinator. The action's answer is the
last line of stdout, as JSON: {"ok": ...} or {"error": "..."}.

Actions: `serial` (the NetworkSerialPort's URL once ser2net answers),
`resources` (the classes the place exports), `flash` (BootstrapProtocol:
OpenOCD on the place's NetworkUSBDebugger, or an inventory driver), `reset`
(ResetProtocol), `power_cycle` (PowerProtocol).
"""
from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import yaml

DEBUGGERS = ("NetworkUSBDebugger",)  # what labgrid's OpenOCDDriver flashes through


def _target(request: dict):
    from labgrid import Environment

    directory = tempfile.mkdtemp(prefix="tinyhil-labgrid-")
    path = Path(directory) / "env.yaml"
    path.write_text(yaml.safe_dump({"options": {"coordinator_address": request["coordinator"]},
                                    "targets": {"main": {"resources": [{"RemotePlace": {"name": request["place"]}}]}}}))
    return Environment(str(path)).get_target("main")


def _classes(target) -> list[str]:
    return sorted({type(r).__name__ for r in target.resources})


def _serial(target, request: dict) -> str:
    deadline = time.monotonic() + float(request.get("wait_s", 15))
    while True:
        target.update_resources()
        ports = [r for r in target.resources if type(r).__name__ == "NetworkSerialPort"]
        if not ports:
            raise LookupError(f"labgrid place {request['place']} has no NetworkSerialPort (it exports "
                              f"{', '.join(_classes(target))}): export the board's serial port as RawSerialPort "
                              "or USBSerialPort")
        port = ports[0]
        if port.avail and port.port:
            try:
                socket.create_connection((port.host, port.port), timeout=1.0).close()
                if getattr(port, "protocol", "rfc2217") == "raw":
                    return f"socket://{port.host}:{port.port}"
                # ser2net cannot set DTR on every port; labgrid's SerialDriver ignores it too
                return f"rfc2217://{port.host}:{port.port}?ign_set_control&timeout=5"
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise LookupError(f"labgrid place {request['place']}: its serial port is not available")
        time.sleep(0.2)


def _driver(target, protocol: str, request: dict):
    """The place's active driver of a labgrid protocol: of the inventory's drivers
    (made in order, so one binds to those before it, as a DigitalOutputResetDriver
    to its output), else OpenOCD on the place's debugger; None if it has none."""
    from labgrid import driver as drivers
    from labgrid.exceptions import NoDriverFoundError

    for name, args in request.get("drivers", []):
        cls = getattr(drivers, name, None)
        if cls is None:
            raise LookupError(f"labgrid has no driver {name} (place {request['place']})")
        cls(target, name=None, **dict(args))
    try:
        return target.get_driver(protocol)
    except NoDriverFoundError:
        pass
    debugger = any(type(r).__name__ in DEBUGGERS for r in target.resources)
    if protocol == "BootstrapProtocol" and debugger and request.get("openocd_board"):
        found = drivers.OpenOCDDriver(target, name=None, board_config=request["openocd_board"].removeprefix("board/"))
        target.activate(found)
        return found
    return None


def act(request: dict):
    target = _target(request)
    try:
        action = request["action"]
        if action == "serial":
            return _serial(target, request)
        if action == "resources":
            return _classes(target)
        protocol, method = {"flash": ("BootstrapProtocol", "load"), "reset": ("ResetProtocol", "reset"),
                            "power_cycle": ("PowerProtocol", "cycle")}[action]
        driver = _driver(target, protocol, request)
        if driver is None:
            return {"missing": protocol, "resources": _classes(target)}
        try:
            getattr(driver, method)(*([request["elf"]] if action == "flash" else []))
        except Exception as error:  # labgrid's ExecutionError, CalledProcessError: the tool's own words
            what = f"flash {Path(request['elf']).name}" if action == "flash" else action.replace("_", " ")
            raise ActionFailed(f"{type(driver).__name__} could not {what}: {_said(error)}") from error
        return {"done": type(driver).__name__}
    finally:
        target.cleanup()


class ActionFailed(Exception):
    """A driver's action failed; the message says which and why."""


def _said(error: BaseException) -> str:
    """What the failing tool said (openocd's own lines), else the error."""
    output = getattr(error, "stdout", None) or getattr(error, "output", None) or getattr(error, "msg", None) or ""
    if isinstance(output, (bytes, bytearray)):
        output = output.decode(errors="replace")
    lines = [line.strip() for line in str(output or error).splitlines() if line.strip()]
    return " | ".join(line for line in lines if "rror" in line) or " | ".join(lines[-3:]) or type(error).__name__


def main(argv: list[str]) -> int:
    try:
        answer = {"ok": act(json.loads(argv[1]))}
    except Exception as error:  # noqa: BLE001 - named to the board, which raises LabgridError
        answer = {"error": str(error) if isinstance(error, (LookupError, ActionFailed))
                  else f"{type(error).__name__}: {_said(error)}"}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
