"""Results written so that a reader, or a run killed mid-write, never sees half a file."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Writes `data` beside `path` under a name of this process's, then renames it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    os.replace(tmp, path)
    return path


def checksum_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def _checksum(data: bytes) -> str:
    return f"{hashlib.sha256(data).hexdigest()} {len(data)}\n"


def write_checksum(path: Path, data: bytes) -> None:
    """Records the SHA-256 and size of `data` as the cached file `path`'s:
    written just before `data` is put in place at `path`."""
    atomic_write(checksum_path(path), _checksum(data))


def checksum_problem(path: Path) -> str | None:
    """Why a cached file is not the one written: None when it is. Its checksum
    is written just before it, so a file without one is from an older tinyhil
    (or a crash between the two): it is made again."""
    recorded = checksum_path(path)
    if not recorded.is_file():
        return f"no checksum {recorded.name}"
    expected_hash, _, expected_size = recorded.read_text().strip().partition(" ")
    size = Path(path).stat().st_size
    if expected_size.isdigit() and size != int(expected_size):
        return f"{size} bytes where {expected_size} were written"
    if _checksum(Path(path).read_bytes()).split()[0] != expected_hash:
        return "its SHA-256 differs from the one written"
    return None
