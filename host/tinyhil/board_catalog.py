"""The board catalog: every PlatformIO environment of platformio.ini is a board.

The host reads the environment's `custom_*` options through PlatformIO's own
ProjectConfig (so `extends` and interpolation work exactly as for `pio run`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from tinyhil.errors import UnknownBoard
from tinyhil.project import project_dir


@dataclass(frozen=True)
class BoardConfig:
    name: str  # the PlatformIO environment
    transport: str  # "qemu" or "serial"
    core: str
    clock_hz: int
    counter: str  # "qemu-icount", "dwt-cycles", "ccount-cycles"
    flash_bytes: int
    ram_bytes: int
    qemu_machine: str = ""
    icount_shift: int = 0
    qemu_serial_index: int = 0  # which -serial (UART) carries the link
    upload_port: str = ""
    openocd_board: str = ""  # openocd's board script, for a Nucleo's reset and flashing
    offline: bool = False  # built by the project's own dev-platform (firmware/platform)
    flash_cache_bytes: int = 0  # flash data cache a calibration models (0: none modelled)

    @property
    def emulated(self) -> bool:
        return self.transport == "qemu"

    @property
    def exact_counts(self) -> bool:
        """Every run of the same code counts the same (QEMU's -icount: no
        caches, no wait states), the first as well: one timed run is the figure."""
        return self.counter == "qemu-icount"

    def default_runs(self) -> tuple[int, int]:
        """(warm-up, timed) runs per op when characterizing: (0, 1) on exact
        counts, (1, 3) on a board whose caches and flash make runs differ."""
        return (0, 1) if self.exact_counts else (1, 3)


def load_boards() -> dict[str, BoardConfig]:
    from platformio.project.config import ProjectConfig

    config = ProjectConfig(str(project_dir() / "platformio.ini"), parse_extra=False)
    boards = {}
    for env in config.envs():
        section = f"env:{env}"

        def get(name: str, default: str = "") -> str:
            return str(config.get(section, name, default))

        transport = get("custom_transport", "serial")
        # An emulated twin shares its physical board's JSON, not its probe.
        board_json = _board_json(get("board")) if transport == "serial" else {}
        boards[env] = BoardConfig(
            name=env,
            transport=transport,
            core=get("custom_core"),
            clock_hz=int(get("custom_clock_hz", "0")),
            counter=get("custom_counter"),
            flash_bytes=int(get("custom_flash_bytes", "0")),
            ram_bytes=int(get("custom_ram_bytes", "0")),
            qemu_machine=get("custom_qemu_machine"),
            icount_shift=int(get("custom_qemu_icount_shift", "0")),
            qemu_serial_index=int(get("custom_qemu_serial_index", "0")),
            upload_port=get("upload_port"),
            offline=get("platform").rstrip("/").endswith("/firmware/platform"),
            openocd_board=board_json.get("upload", {}).get("openocd_board", ""),
            flash_cache_bytes=int(get("custom_flash_cache_bytes", "0")),
        )
    return boards


def _board_json(board: str) -> dict:
    """The project's own board definition (boards/<board>.json), if it has one."""
    path = project_dir() / "boards" / f"{board}.json"
    return json.loads(path.read_text()) if board and path.is_file() else {}


def get_board(name: str) -> BoardConfig:
    boards = load_boards()
    if name not in boards:
        raise UnknownBoard(f"unknown board {name!r}; known boards: {', '.join(sorted(boards))}")
    return boards[name]
