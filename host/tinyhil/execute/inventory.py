"""The board inventory of a lab (YAML): which boards there are and how to reach them.

    boards:
      - name: m4-a                 # unique in the inventory
        board: qemu-m4             # PlatformIO environment (`tinyhil boards`)
      - name: f446-1
        board: nucleo_f446re
        port: /dev/ttyACM0         # local serial board
        reset: dtr                 # flash | dtr | rts | openocd (default: openocd for a
                                   # Nucleo, else flash)
      - name: rack2-m4
        board: qemu-m4
        labgrid:                   # a place of a labgrid coordinator
          coordinator: 10.0.0.5:20408
          place: tinyhil-m4        # a named place, or
          # reserve: {board: nucleo_f446re}   # any free place with these tags
          # wait: 600              # seconds to wait for a place another user holds
          # flash: true            # flash each job's image through the place's debugger
          # drivers: {ModbusCoilDriver: {}}   # labgrid drivers for reset/power of the place

A labgrid board that is flashed (`flash: true`) serves its environment's lane
like a local board; one that is not runs a pinned image, and is a lane of its
own (named place) or of the places its tags reserve (`env@board=...`).

Emulated boards may be listed any number of times: each entry is one more
QEMU instance, i.e. one more worker.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from tinyhil.board_catalog import BoardConfig, get_board, load_boards
from tinyhil.device.boards import Board, SerialBoard, open_board
from tinyhil.device.labgrid_board import LabgridPlace
from tinyhil.errors import TinyhilError
from tinyhil.files import read_text

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KINDS = ("qemu", "serial", "labgrid")


class InventoryError(TinyhilError):
    """The board inventory file is missing, malformed, or names unknown boards."""


@dataclass(frozen=True)
class FarmBoard:
    """One board of the farm: a name, what it is, and how to reach it."""

    name: str
    config: BoardConfig
    kind: str  # qemu | serial | labgrid
    port: str = ""
    reset: str = ""  # "": the board's own (openocd for a Nucleo, else flash)
    labgrid: LabgridPlace | None = None

    @property
    def environment(self) -> str:
        return self.config.name

    @property
    def pinned(self) -> bool:
        """A board tinyhil does not flash (a labgrid place without `flash:`): it
        runs one image, holding its lane's whole suite."""
        return self.kind == "labgrid" and not (self.labgrid and self.labgrid.flash)

    @property
    def lane(self) -> str:
        """Boards of one lane are interchangeable and share its work queue:
        local boards of an environment and flashed labgrid places do; pinned
        places of one tag reservation share theirs; a named pinned place is a
        lane of its own."""
        if not self.pinned:
            return self.environment
        if self.labgrid and self.labgrid.tags:
            return f"{self.environment}@{self.labgrid.selector}"
        return f"{self.environment}@{self.name}"

    def open(self, timeout: float = 30.0, retries: int = 2) -> Board:
        return open_board(self.config, self.port, timeout, retries, reset=self.reset, labgrid=self.labgrid)


def with_wait(boards: list[FarmBoard], seconds: float | None) -> list[FarmBoard]:
    """The boards, each labgrid place waited for up to `seconds` when another user holds it."""
    if seconds is None:
        return boards
    return [replace(b, labgrid=replace(b.labgrid, wait_s=float(seconds))) if b.labgrid else b for b in boards]


def emulated_farm(board: str, n: int) -> list[FarmBoard]:
    """N emulated boards of one environment (benchmarks and tests of the farm)."""
    config = get_board(board)
    return [FarmBoard(f"{board}-{i}", config, "qemu") for i in range(n)]


def board_counts(text: str) -> list[FarmBoard]:
    """Emulated boards from `qemu-m4=2,qemu-m33=1` (a worker's boards, as Dask
    resources are written); a physical board needs an inventory entry (its port)."""
    boards = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        env, _, count = part.partition("=")
        if not count.strip().isdigit() or int(count) < 1:
            raise InventoryError(f"--boards {text!r}: expected ENV=COUNT[,ENV=COUNT], e.g. qemu-m4=2")
        config = get_board(env.strip())
        if not config.emulated:
            raise InventoryError(f"--boards: {env} is a physical board: list it in an inventory "
                                 "(--inventory lab.yaml) with its port")
        boards += [FarmBoard(f"{config.name}-{i}", config, "qemu") for i in range(int(count))]
    if not boards:
        raise InventoryError(f"--boards {text!r}: no boards")
    return boards


def read_yaml(path: Path, error: type[TinyhilError]):
    """A YAML file's data, loaded safely; a file that is no YAML (or not UTF-8)
    raises `error` naming it."""
    text = read_text(path, error)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as problem:
        raise error(f"{path}: not valid YAML ({problem})") from problem


def load_inventory(path: Path) -> list[FarmBoard]:
    path = Path(path)
    if not path.is_file():
        raise InventoryError(f"{path}: no such board inventory")
    return parse_inventory(read_yaml(path, InventoryError), str(path))


def parse_place(lg, where: str) -> LabgridPlace:
    if not isinstance(lg, dict) or not lg.get("coordinator") or bool(lg.get("place")) == bool(lg.get("reserve")):
        raise InventoryError(f"{where}: labgrid needs `coordinator: host:port` and either `place: NAME` "
                             "or `reserve: {TAG: VALUE}`")
    unknown = set(lg) - {"coordinator", "place", "reserve", "wait", "flash", "drivers"}
    if unknown:
        raise InventoryError(f"{where}: unknown labgrid key(s) {', '.join(sorted(unknown))}")
    if not re.match(r"^[\w.-]+:\d{1,5}$", str(lg["coordinator"])):
        raise InventoryError(f"{where}: coordinator {lg['coordinator']!r} must be host:port")
    if lg.get("place") and not NAME.match(str(lg["place"])):
        raise InventoryError(f"{where}: place {lg['place']!r} is not a valid name")
    tags = lg.get("reserve") or {}
    if not isinstance(tags, dict) or not all(NAME.match(str(k)) and NAME.match(str(v)) for k, v in tags.items()):
        raise InventoryError(f"{where}: reserve must map tags to values, e.g. {{board: qemu-m4}}")
    wait = lg.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 86400:
        raise InventoryError(f"{where}: wait must be seconds from 0 to 86400, got {wait!r}")
    drivers = lg.get("drivers") or {}
    if not isinstance(drivers, dict) or not all(isinstance(a, dict) for a in (drivers or {}).values()):
        raise InventoryError(f"{where}: drivers must map labgrid driver classes to their arguments")
    return LabgridPlace(str(lg["coordinator"]), str(lg.get("place") or ""),
                        tuple(sorted((str(k), str(v)) for k, v in tags.items())), float(wait),
                        bool(lg.get("flash", False)),
                        tuple((str(c), tuple(sorted(a.items()))) for c, a in drivers.items()))


def parse_inventory(data, source: str = "inventory") -> list[FarmBoard]:
    if not isinstance(data, dict) or not isinstance(data.get("boards"), list) or not data["boards"]:
        raise InventoryError(f"{source}: expected a mapping with a non-empty list `boards:`")
    catalog = load_boards()
    boards, seen = [], set()
    for n, entry in enumerate(data["boards"], 1):
        where = f"{source}: board #{n}"
        if not isinstance(entry, dict):
            raise InventoryError(f"{where}: expected a mapping, got {entry!r}")
        unknown = set(entry) - {"name", "board", "port", "reset", "labgrid", "kind"}
        if unknown:
            raise InventoryError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        name = str(entry.get("name", ""))
        if not NAME.match(name):
            raise InventoryError(f"{where}: name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if name in seen:
            raise InventoryError(f"{where}: name {name!r} appears twice")
        seen.add(name)
        env = str(entry.get("board", ""))
        if env not in catalog:
            raise InventoryError(f"{where} ({name}): unknown board {env!r}; known: "
                                 f"{', '.join(sorted(catalog))}")
        config = catalog[env]
        kind = "labgrid" if "labgrid" in entry else ("qemu" if config.emulated else "serial")
        if entry.get("kind", kind) != kind:
            raise InventoryError(f"{where} ({name}): kind {entry['kind']!r} does not fit "
                                 f"board {env} (it is {kind})")
        place = None
        if kind == "labgrid":
            place = parse_place(entry["labgrid"], f"{where} ({name})")
        port = str(entry.get("port", ""))
        if kind == "serial" and not (port or config.upload_port):
            raise InventoryError(f"{where} ({name}): a serial board needs `port:` (e.g. /dev/ttyACM0)")
        reset = str(entry.get("reset", ""))
        if reset and reset not in SerialBoard.RESET_METHODS:
            raise InventoryError(f"{where} ({name}): reset {reset!r} is not one of "
                                 f"{', '.join(SerialBoard.RESET_METHODS)}")
        boards.append(FarmBoard(name, config, kind, port, reset, place))
    return boards
