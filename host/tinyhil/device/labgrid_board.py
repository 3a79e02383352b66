"""A board on another host, reached through labgrid: the place is acquired
from the coordinator, its serial port (exported by labgrid-exporter through
ser2net as a NetworkSerialPort) is opened over RFC 2217, and the place is
released when the board is closed.

Flashing stays with the place's host: the board must already run the image
a job needs (INFO's build id says so); tinyhil names the image otherwise.
For an emulated board exported this way that image is the one `tinyhil
regress` packs for its lane (`regress.farm.lane_image`).
"""
from __future__ import annotations

import argparse
import asyncio
import time

from tinyhil.board_catalog import BoardConfig
from tinyhil.device.boards import Board
from tinyhil.device.driver import DeviceInfo
from tinyhil.errors import BoardNotResponding, TinyhilError


class LabgridError(TinyhilError):
    """The coordinator, the place or its serial port could not be used."""


class LabgridBoard(Board):
    def __init__(self, config: BoardConfig, coordinator: str, place: str, timeout: float = 30.0,
                 retries: int = 2, port_wait_s: float = 15.0):
        super().__init__(config, timeout, retries)
        self.coordinator = coordinator
        self.place = place
        self.port_wait_s = port_wait_s
        self._session = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.url = ""

    # ---- labgrid client --------------------------------------------------------
    def _client(self):
        from labgrid.remote.client import Error as ClientError
        from labgrid.remote.client import start_session

        if self._session is None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)  # grpc.aio binds to this thread's loop
            try:
                self._session = start_session(self.coordinator, loop=self._loop)
            except Exception as error:  # grpc raises its own kinds; all mean "cannot reach"
                self._loop.close()
                self._loop = None
                raise LabgridError(f"labgrid coordinator {self.coordinator} for board "
                                   f"{self.config.name} (place {self.place}): {error}") from error
            self._session.args = argparse.Namespace(place=self.place, allow_unmatched=False,
                                                    kick=False)
        return self._session, ClientError

    def _run(self, coroutine):
        return self._loop.run_until_complete(coroutine)

    def _acquire(self) -> None:
        session, ClientError = self._client()
        try:
            place = session.get_place(self.place)
            mine = f"{session.gethostname()}/{session.getuser()}"
            if place.acquired != mine:
                self._run(session.acquire())
        except ClientError as error:
            raise LabgridError(f"labgrid place {self.place}: {error}") from error

    def _serial_url(self) -> str:
        """The place's NetworkSerialPort, once its exporter has started ser2net."""
        session, ClientError = self._client()
        deadline = time.monotonic() + self.port_wait_s
        while True:
            try:
                resources = session.get_target_resources(session.get_place(self.place))
            except ClientError as error:
                raise LabgridError(f"labgrid place {self.place}: {error}") from error
            ports = [r for (_, cls), r in sorted(resources.items()) if cls == "NetworkSerialPort"]
            if not ports:
                raise LabgridError(f"labgrid place {self.place} has no NetworkSerialPort "
                                   "(export the board's serial port as RawSerialPort or USBSerialPort)")
            args = ports[0].args
            if ports[0].avail and args.get("port"):
                host = args.get("host", "127.0.0.1")
                if args.get("protocol", "rfc2217") == "raw":
                    return f"socket://{host}:{args['port']}"
                # ser2net cannot set DTR on every port; labgrid's SerialDriver ignores it too
                return f"rfc2217://{host}:{args['port']}?ign_set_control&timeout=5"
            if time.monotonic() > deadline:
                raise LabgridError(f"labgrid place {self.place}: its serial port is not available")
            self._run(asyncio.sleep(0.2))

    # ---- Board strategy -----------------------------------------------------------
    def _power_on(self) -> str:
        self._acquire()
        self.url = self._serial_url()
        return self.url

    def flash_hint(self) -> str:
        return (f"labgrid place {self.place} must run {self.image.elf} "
                "(flash it on the place's host; tinyhil does not flash remote boards)")

    def _power_off(self) -> None:
        pass  # the place stays acquired until close(): a reset must not hand it to others

    def reset(self) -> DeviceInfo:
        """Reconnects (ser2net keeps the board running); heavier steps need the place's host."""
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
        if self._session is not None:
            session, ClientError = self._client()
            try:
                place = session.get_place(self.place)
                if place.acquired == f"{session.gethostname()}/{session.getuser()}":
                    self._run(session.release())
            except ClientError:
                pass  # released by someone else meanwhile
            finally:
                try:
                    self._run(session.stop())
                    self._run(session.close())
                except Exception:  # noqa: BLE001 - closing a dead channel
                    pass
                self._loop.close()
                self._session = None
                self._loop = None
