"""TFLM + CMSIS-NN compiled once per core and machine, as one static library.

Every bare-metal board of a core (qemu-m4, qemu-stm32f4 and nucleo_f446re are
all Cortex-M4 with the same FPU) compiles TFLM with the same flags and TFLM's
own defines (a board's defines belong to its BSP and the runner), so one
library serves them all, and every checkout on the machine. It lives in the
machine's cache (project.machine_cache_dir()/tflm/<key>/) under a key that
hashes exactly what changes its objects: the compiler, the flags, the sources
compiled, the tree's content and the prefix header; never the tree's path
(-ffile-prefix-map keeps it out of the objects too). Its manifest records the
archive's SHA-256: an entry that fails that check is compiled again, never
linked. Two processes that want the same entry build it once (a lock per key).

Compiling it is the first build's cost. Nearly every TFLM file includes the
flatbuffers schema (schema_generated.h: ~3 s and 350 MB of parsing per file
here), so the library is compiled with that header precompiled (GCC's PCH,
forced first with -include): 2.3x faster on this tree, and the objects are
byte-identical to those compiled without it but for two files, where only the
order of two outlined assertion paths differs.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from tinyhil.board_catalog import BoardConfig
from tinyhil.children import dies_with_us
from tinyhil.errors import BuildFailed, ToolMissing
from tinyhil.files import atomic_write
from tinyhil.image.toolchain import (
    SETUP_HINT,
    compile_flags,
    compiler_identity,
    explain_missing,
    tflm_settings,
    tflm_sources,
)
from tinyhil.project import machine_cache_dir
from tinyhil.stage_progress import StageProgress

FORMAT = 1  # of the cache entry: bumped when the way it is built changes its objects
ARCHIVE = "libtflm.a"
MANIFEST = "manifest.json"
# Precompiled, and forced first into every C++ file: what nearly all of them include.
PREFIX_HEADER = ('#include "tensorflow/lite/schema/schema_generated.h"\n'
                 '#include "tensorflow/lite/micro/kernels/kernel_util.h"\n')
PREFIX_MAP = "tflite-micro"  # what the tree's path reads as inside the objects



@dataclass(frozen=True)
class LibraryRecipe:
    """Everything that decides the library's objects (the key hashes all of it but `tree`)."""

    core: str
    tree: Path  # where the TFLM tree is: not part of the key
    compiler: str  # `g++ --version`'s first line
    c_compiler: str
    cxx_compiler: str
    c_flags: tuple[str, ...]
    cxx_flags: tuple[str, ...]
    defines: tuple[str, ...]
    includes: tuple[str, ...]  # relative to the tree's src/
    sources: tuple[str, ...]  # relative to the tree's src/
    tree_digest: str

    @property
    def key(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k != "tree"}
        text = json.dumps({**fields, "format": FORMAT, "prefix": PREFIX_HEADER}, sort_keys=True)
        return f"{self.core}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def command(self, source: str, obj: Path, prefix: Path | None) -> list[str]:
        src = self.tree / "src"
        cxx = not source.endswith(".c")
        return [self.cxx_compiler if cxx else self.c_compiler,
                *(self.cxx_flags if cxx else self.c_flags),
                f"-ffile-prefix-map={src}={PREFIX_MAP}",
                *(f"-D{d}" for d in self.defines),
                *(f"-I{src / i}" if i else f"-I{src}" for i in self.includes),
                *(["-include", str(prefix), "-Winvalid-pch"] if cxx and prefix else []),
                "-c", str(src / source), "-o", str(obj)]


def library_recipe(board: BoardConfig, tree: Path) -> LibraryRecipe:
    flags = compile_flags(board)
    settings = tflm_settings()
    return LibraryRecipe(
        core=flags.core, tree=tree, compiler=compiler_identity(flags.cxx_compiler),
        c_compiler=flags.c_compiler, cxx_compiler=flags.cxx_compiler, c_flags=flags.c, cxx_flags=flags.cxx,
        defines=tuple(settings["defines"]), includes=tuple(settings["includes"]),
        sources=tuple(tflm_sources(tree, settings["exclude"])), tree_digest=tree_digest(tree))


def tree_stamps(tree: Path) -> tuple:
    """(name, size, mtime) of every file under the tree's src/: what tells a change."""
    src = tree / "src"
    return tuple((p.relative_to(src).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                 for p in sorted(src.rglob("*")) if p.is_file())


def tree_digest(tree: Path) -> str:
    """The content of every file under the tree's src/ (names relative to it)."""
    return _digest(tree / "src", tree_stamps(tree))


@lru_cache(maxsize=8)
def _digest(src: Path, stamps: tuple) -> str:  # read again only when a file's size or time changed
    digest = hashlib.sha256()
    for relative, _, _ in stamps:
        digest.update(relative.encode() + b"\0" + (src / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def library_dir(recipe: LibraryRecipe) -> Path:
    return machine_cache_dir() / "tflm" / recipe.key


_verified: dict[Path, tuple[int, int]] = {}  # archives checked by this process: (size, mtime)


def entry_problem(directory: Path) -> str | None:
    """Why a cache entry must not be linked (None: it is whole)."""
    archive, manifest = directory / ARCHIVE, directory / MANIFEST
    if not archive.is_file() or not manifest.is_file():
        return f"{directory} lacks {ARCHIVE} or {MANIFEST}"
    stat = archive.stat()
    if _verified.get(archive) == (stat.st_size, stat.st_mtime_ns):
        return None
    try:
        recorded = json.loads(manifest.read_text())["archive_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{manifest} is unreadable ({error})"
    if hashlib.sha256(archive.read_bytes()).hexdigest() != recorded:
        return f"{archive}'s SHA-256 differs from its manifest's"
    _verified[archive] = (stat.st_size, stat.st_mtime_ns)
    return None


def tflm_library(board: BoardConfig, tree: Path, on_stage: StageProgress | None = None,
                 log: Callable[[str], None] | None = None) -> Path:
    """The library `board` links: taken from the machine's cache, or compiled
    (once, whoever else asks for it meanwhile) and put there."""
    recipe = library_recipe(board, tree)
    directory = library_dir(recipe)
    if entry_problem(directory) is None:
        return directory / ARCHIVE
    with _key_lock(directory, recipe.core, on_stage):
        problem = entry_problem(directory)  # another process may have built it while we waited
        if problem is None:
            return directory / ARCHIVE
        if directory.exists():
            if log:
                log(f"TFLM library {recipe.key}: {problem}: compiled again")
            shutil.rmtree(directory)
        _build(recipe, directory, on_stage)
    return directory / ARCHIVE


class _key_lock:
    """One builder per cache entry across processes; the others wait, saying for what."""

    def __init__(self, directory: Path, core: str, on_stage: StageProgress | None):
        self.path = directory.with_name(directory.name + ".lock")
        self.core, self.on_stage = core, on_stage

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w")
        said = False
        while True:
            try:  # polled, so that Ctrl-C and a worker thread's cancellation are seen
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if self.on_stage and not said:
                    self.on_stage(f"waiting for another tinyhil compiling TFLM for {self.core}", 0, 0)
                    said = True
                time.sleep(0.2)

    def __exit__(self, *exc):
        self.file.close()


_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()
# When stop_compiles() last ran: a build that started before it starts no more
# compilers (a stop that came between a build's start and its first compiler,
# e.g. while the prefix header's command was made, found nothing to kill).
_stopped_at = float("-inf")


def stop_compiles() -> None:
    """Kills the compilers of every library build of this process (Ctrl-C in
    another thread): the build then fails at once and leaves nothing behind."""
    global _stopped_at
    with _running_lock:
        _stopped_at = time.monotonic()
        for process in list(_running):
            process.kill()


def _compile(recipe: LibraryRecipe, command: list[str], source: str, build_started: float) -> float:
    started = time.monotonic()
    with _running_lock:  # started and registered at once: stop_compiles() sees it or stops it here
        if _stopped_at >= build_started:
            raise BuildFailed(f"compiling TFLM's {source} was stopped")
        try:
            process = subprocess.Popen(dies_with_us(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)
        except FileNotFoundError:
            raise ToolMissing(f"{command[0]} not found: {SETUP_HINT}") from None
        _running.add(process)
    try:
        output, _ = process.communicate()
    finally:
        with _running_lock:
            _running.discard(process)
    if process.returncode < 0:
        raise BuildFailed(f"compiling TFLM's {source} was stopped")
    if process.returncode != 0:
        missing = explain_missing(output)
        if missing:
            raise ToolMissing(f"cannot compile TFLM for {recipe.core}: {missing}")
        tail = "\n".join(output.splitlines()[-15:])
        raise BuildFailed(f"compiling TFLM's {source} for {recipe.core} failed:\n{tail}")
    return time.monotonic() - started


def _object_name(source: str) -> str:
    # unique in the archive: the tree has three pairs of files with one base name
    return source.replace("/", "__").rsplit(".", 1)[0] + ".o"


def _remove_abandoned(directory: Path) -> None:
    """Half-built entries of processes that died mid-build (their pid is gone)."""
    for partial in directory.parent.glob(f".{directory.name}.*.partial"):
        pid = partial.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(partial, ignore_errors=True)


def _build(recipe: LibraryRecipe, directory: Path, on_stage: StageProgress | None) -> None:
    _remove_abandoned(directory)
    partial = directory.with_name(f".{directory.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    objects = partial / "obj"
    objects.mkdir(parents=True)
    what = f"compiling TFLM for {recipe.core} (once per machine): {{done}}/{{total}} files"
    total = len(recipe.sources) + 1
    started = time.monotonic()
    try:
        if on_stage:
            on_stage(what, 0, total)
        prefix = partial / "tflm_prefix.h"
        prefix.write_text(PREFIX_HEADER)
        pch = [recipe.cxx_compiler, *recipe.cxx_flags, f"-ffile-prefix-map={recipe.tree / 'src'}={PREFIX_MAP}",
               *(f"-D{d}" for d in recipe.defines),
               *(f"-I{recipe.tree / 'src' / i}" if i else f"-I{recipe.tree / 'src'}" for i in recipe.includes),
               "-x", "c++-header", str(prefix), "-o", str(prefix) + ".gch"]
        seconds = {"(prefix header)": _compile(recipe, pch, "prefix header", started)}
        done = 1
        if on_stage:
            on_stage(what, done, total)
        with ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="tinyhil-tflm") as pool:
            futures = {pool.submit(_compile, recipe, recipe.command(s, objects / _object_name(s), prefix), s, started): s
                       for s in recipe.sources}
            try:
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                    for future in finished:
                        seconds[futures[future]] = future.result()  # raises the first failure
                        done += 1
                    if finished and on_stage:
                        on_stage(what, done, total)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                stop_compiles()
                raise
        (Path(str(prefix) + ".gch")).unlink()  # hundreds of MB, needed only while compiling
        archive = partial / ARCHIVE
        members = [str(objects / _object_name(s)) for s in recipe.sources]
        result = subprocess.run([recipe.c_compiler.replace("gcc", "gcc-ar"), "rcs", str(archive), *members],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildFailed(f"archiving TFLM for {recipe.core} failed: {result.stderr[-1500:]}")
        shutil.rmtree(objects)
        manifest = {**asdict(recipe), "tree": str(recipe.tree), "key": recipe.key, "format": FORMAT,
                    "archive_sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
                    "seconds": round(time.monotonic() - started, 1), "jobs": os.cpu_count() or 1,
                    "seconds_per_file": {k: round(v, 2) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])}}
        atomic_write(partial / MANIFEST, json.dumps(manifest, indent=1))
        os.replace(partial, directory)  # atomic: an entry is whole, or not there
    finally:
        shutil.rmtree(partial, ignore_errors=True)


__all__ = ["LibraryRecipe", "entry_problem", "library_recipe", "stop_compiles", "tflm_library"]
