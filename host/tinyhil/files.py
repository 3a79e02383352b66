"""Results written so that a reader, or a run killed mid-write, never sees half a file,
and output places checked before anything is measured into them; text read back
as UTF-8, a byte that is not named by its line."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from tinyhil.errors import TinyhilError


class OutputError(TinyhilError):
    """A result cannot be written where it belongs (read-only, full, not a directory)."""


def _why(error: OSError, path: Path) -> str:
    """The reason of a failed write in words, naming a regular file that stands where a
    directory must be."""
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        for parent in (path, *path.parents):
            if parent.exists() and not parent.is_dir():
                return f"{parent} is a file, not a directory"
    return error.strerror or str(error)


def _probe(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".tinyhil-probe-"):
        pass


def writable_dir(directory: Path, what: str) -> Path:
    """Makes `directory` if it is missing and proves a file can be created in it, so that
    a read-only or misplaced output is refused before any measurement, not after."""
    directory = Path(directory)
    try:
        _probe(directory)
    except OSError as error:
        raise OutputError(f"{directory}: cannot write {what} there ({_why(error, directory)})") from None
    return directory


@contextlib.contextmanager
def output_dir(directory: Path, what: str):
    """`writable_dir` for a run that may yet be refused: the directories made for it
    are removed again, if still empty, when the block raises (no empty run left)."""
    directory = Path(directory)
    made = [d for d in (directory, *directory.parents) if not d.exists()]  # innermost first
    writable_dir(directory, what)
    try:
        yield directory
    except BaseException:
        for made_dir in made:
            try:
                made_dir.rmdir()  # only an empty one
            except OSError:
                break
        raise


def writable_file(path: Path, what: str) -> Path:
    """`writable_dir` for the file's directory, and an existing file must take appends."""
    path = Path(path)
    try:
        _probe(path.parent)
        if path.exists():
            with open(path, "a"):
                pass
    except OSError as error:
        raise OutputError(f"{path}: cannot write {what} ({_why(error, path)})") from None
    return path


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def _remove_stale_temporaries(path: Path) -> None:
    """Temporaries of `path` left by processes that died mid-write (their pid is gone)."""
    prefix = f".{path.name}."
    try:
        with os.scandir(path.parent) as entries:  # names only: no stat, no regex, per sibling
            names = [entry.name for entry in entries if entry.name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        match = TEMPORARY.match(name)
        if match and match.group("name") == path.name:
            pid = int(match.group("pid"))
            if pid != os.getpid() and not _alive(pid):
                (path.parent / name).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Writes `data` beside `path` under a name of this process's, then renames it over
    `path`. A failed write (disk full, read-only) leaves neither half a file nor its
    temporary, and is an OutputError naming the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, path)
    except OSError as error:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise OutputError(f"{path}: cannot write it ({_why(error, path)})") from None
    return path


def not_utf8(data: bytes, error: UnicodeDecodeError) -> tuple[int, str]:
    """Where in `data` the byte that is no UTF-8 is: its line, and the byte in
    words ("byte 0xff (column 7) is not UTF-8")."""
    line = data.count(b"\n", 0, error.start) + 1
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
    return line, f"byte 0x{data[error.start]:02x} (column {column}) is not UTF-8"


def read_text(path: Path, error: type[TinyhilError]) -> str:
    """A text file tinyhil reads (YAML, CSV, JSON), decoded as UTF-8: a byte that is
    not raises `error` naming the file, the line and the byte, never a traceback."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        line, what = not_utf8(data, problem)
        raise error(f"{path}: line {line}: {what}; save it as UTF-8 (or restore it)") from None


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


def append_durably(path: Path, text: str, sync: bool = True) -> None:
    """Appends `text` in one write (append-only result files: a row is either
    whole and kept, or not there) and, with `sync`, waits until it is on disk.
    Without it the row survives the process (killed, Ctrl-C) but not the
    machine until a later sync_file. Raises OSError."""
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def sync_file(path: Path) -> None:
    """Waits until what was written to `path` is on disk. Raises OSError."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
