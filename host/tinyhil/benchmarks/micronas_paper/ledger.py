"""What a benchmark of many hours has finished, kept as it finishes, so a
rerun resumes after it (and the run can be done in parts).

One JSON file per finished piece (a search, a trained model, a measurement,
a whole (method, row, seed)), written atomically: a piece is either wholly
there or not at all, whenever the process is stopped. Each file carries the
ledger's key (the settings its figures depend on); a file with another key
is done again, never reused.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from tinyhil.files import atomic_write

LEDGER_FORMAT = 1  # bumped whenever a record changes meaning


class Ledger:
    def __init__(self, directory: Path, key: dict):
        self.directory = Path(directory)
        self.key = {"format": LEDGER_FORMAT, **key}

    def path(self, kind: str, name: str) -> Path:
        return self.directory / kind / f"{_safe(name)}.json"

    def get(self, kind: str, name: str) -> dict | None:
        """The record, if one was written with this ledger's key (a damaged or
        foreign one is as good as none: it is done again)."""
        path = self.path(kind, name)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("key") != self.key or not isinstance(data.get("record"), dict):
            return None
        return data["record"]

    def put(self, kind: str, name: str, record: dict) -> Path:
        text = json.dumps({"key": self.key, "record": record}, indent=2, default=_plain)
        return atomic_write(self.path(kind, name), text)

    def records(self, kind: str) -> list[dict]:
        """Every record of `kind` made with this key, in name order."""
        found = []
        for path in sorted((self.directory / kind).glob("*.json")):
            record = self.get(kind, path.stem)
            if record is not None:
                found.append(record)
        return found


def file_digest(path: Path) -> str:
    """A short checksum of a file (a LUT's): records say what they were priced on."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def _plain(value):
    """numpy numbers and paths as JSON."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
