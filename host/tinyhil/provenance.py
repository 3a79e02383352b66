"""Where a result came from: the tinyhil version and the checkout's commit,
the command line and the date, and for a measurement the firmware that made
it (TFLM version, compiler, firmware fingerprint, image). Reports print it on
the page; the JSON records keep it beside the figures."""
from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from tinyhil import __version__
from tinyhil.project import project_dir


@dataclass(frozen=True)
class Provenance:
    tinyhil: str
    commit: str  # the checkout's commit ("-dirty": with uncommitted changes); "" outside git
    command: str  # the command line, as typed
    date: str  # UTC, ISO 8601
    tflm: str = ""  # as the firmware reports it
    compiler: str = ""  # as the image's ELF names it
    firmware: str = ""  # the board's firmware fingerprint (image/fingerprint.py)
    image: str = ""  # the image id

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) for each known part, in a page's order."""
        names = {"tinyhil": "tinyhil version", "commit": "git commit", "command": "command line",
                 "date": "date", "tflm": "TFLM", "compiler": "compiler", "firmware": "firmware fingerprint",
                 "image": "firmware image"}
        return [(names[k], v) for k, v in asdict(self).items() if v]

    def to_dict(self) -> dict:
        return asdict(self)


def git_commit(root: Path | None = None) -> str:
    """The short commit of the checkout, '-dirty' when tracked files changed; '' without git."""
    root = root or project_dir()
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode:
            return ""
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def command_line(argv: list[str] | None = None) -> str:
    """sys.argv as a shell would take it, the program by its name (`tinyhil`, not a path)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and (Path(argv[0]).name in ("tinyhil", "__main__.py") or argv[0] == "-m"):
        argv[0] = "tinyhil"
    return shlex.join(argv)


def collect(tflm: str = "", compiler: str = "", firmware: str = "", image: str = "") -> Provenance:
    """Now, in this process, with what the caller knows of the firmware."""
    return Provenance(__version__, git_commit(), command_line(),
                      datetime.now(timezone.utc).isoformat(timespec="seconds"), tflm, compiler, firmware, image)
