"""Image builds after the first without PlatformIO (emulated boards).

One image differs from the next only in its two generated sources (image.cc:
the models; op_resolver.cc: the ops). A verbose PlatformIO build prints the
commands that compile image.cc and link the ELF; tinyhil keeps them, with
the size and time of every other object and library the link reads, and
while none of those has changed builds the next image with just those
compiles and the link: a fraction of a second, where `pio run` spends
seconds checking the whole TFLM tree. Anything changed (firmware sources,
flags, a clean build) and the next build goes through PlatformIO again,
which records the commands anew. Physical boards always build (and flash)
with PlatformIO.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
from pathlib import Path

from tinyhil.board_catalog import BoardConfig
from tinyhil.files import atomic_write
from tinyhil.project import cache_dir, project_dir

RECIPE = "tinyhil-relink.json"
OBJECT, SOURCE, SOURCE_DIR, ELF, MAP, IMAGE_O, RESOLVER_O = (
    "{object}", "{source}", "{source_dir}", "{elf}", "{map}", "{image_o}", "{resolver_o}")


def recipe_path(board: BoardConfig) -> Path:
    # in PlatformIO's build directory: a clean build takes the recipe with it
    return project_dir() / ".pio" / "build" / board.name / RECIPE


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def record(board: BoardConfig, log_text: str, source_dir: Path, firmware: str) -> bool:
    """Keeps the compile and link commands of a verbose PlatformIO build;
    False when the log lacks them (image.o taken from a cache: nothing
    compiled to learn from)."""
    build = f".pio/build/{board.name}"
    compile_line = link_line = None
    for line in log_text.splitlines():
        words = line.split(" ", 3)
        if len(words) < 4 or words[1] != "-o":
            continue
        if words[2] == f"{build}/image/image.o" and " -c " in line:
            compile_line = line
        elif words[2] == f"{build}/firmware.elf":
            link_line = line
    if not (compile_line and link_line):
        return False
    compile_argv, link_argv = shlex.split(compile_line), shlex.split(link_line)
    # only images of image.cc and op_resolver.cc: another image object (a deployment's
    # model array) would be linked into every later image
    image_objects = {a for a in link_argv if a.startswith(f"{build}/image/")}
    if image_objects != {f"{build}/image/image.o", f"{build}/image/op_resolver.o"}:
        return False
    # PlatformIO names sources inside the project relative to it
    named = str(source_dir)
    if source_dir.is_relative_to(project_dir()):
        named = str(source_dir.relative_to(project_dir()))
    if compile_argv[-1] not in (f"{source_dir}/image.cc", f"{named}/image.cc") \
            or f"{build}/image/op_resolver.o" not in link_argv:
        return False
    compile_template = [OBJECT if i == 2 else SOURCE if i == len(compile_argv) - 1 else
                        arg.replace(named, SOURCE_DIR) for i, arg in enumerate(compile_argv)]
    replace = {f"{build}/image/image.o": IMAGE_O, f"{build}/image/op_resolver.o": RESOLVER_O}
    link_template = [ELF if i == 2 else MAP if arg.startswith("-Wl,-Map,") else replace.get(arg, arg)
                     for i, arg in enumerate(link_argv)]
    root = project_dir()
    inputs = {}
    for arg in link_template[3:]:
        path = root / arg
        if arg not in replace.values() and not arg.startswith("-") and path.is_file():
            inputs[arg] = _stamp(path)
    atomic_write(recipe_path(board), json.dumps(dict(
        firmware=firmware, compile=compile_template, link=link_template, inputs=inputs)).encode())
    return True


def relink(board: BoardConfig, source_dir: Path, out_dir: Path, firmware: str, log_path: Path) -> Path | None:
    """The image's ELF built from the recorded commands, or None when there is
    no valid recipe (or a command fails): then PlatformIO builds it."""
    path = recipe_path(board)
    if not board.emulated or not path.is_file():
        return None
    recipe = json.loads(path.read_text())
    root = project_dir()
    if recipe["firmware"] != firmware or any(
            not (root / arg).is_file() or _stamp(root / arg) != stamp
            for arg, stamp in recipe["inputs"].items()):
        return None
    objects = out_dir / "obj"
    objects.mkdir(parents=True, exist_ok=True)
    log = []

    def compile_to(source: Path, target: Path) -> bool:
        argv = [target.as_posix() if a == OBJECT else source.as_posix() if a == SOURCE else
                a.replace(SOURCE_DIR, str(source_dir)) for a in recipe["compile"]]
        return _run(argv, log)

    image_o = objects / "image.o"
    if not compile_to(source_dir / "image.cc", image_o):
        return _give_up(log, log_path)
    # Images with the same ops share the resolver's object (its compile is the TFLM headers).
    resolver_source = source_dir / "op_resolver.cc"
    key = hashlib.sha256(json.dumps(recipe["compile"]).encode() + resolver_source.read_bytes()).hexdigest()[:20]
    resolver_o = cache_dir() / "resolvers" / board.name / f"{key}.o"
    if not resolver_o.is_file():
        resolver_o.parent.mkdir(parents=True, exist_ok=True)
        partial = resolver_o.with_suffix(f".{os.getpid()}.tmp")
        if not compile_to(resolver_source, partial):
            return _give_up(log, log_path)
        os.replace(partial, resolver_o)
    elf = out_dir / "relinked.elf"
    names = {ELF: elf.as_posix(), MAP: f"-Wl,-Map,{out_dir / 'firmware.map'}", IMAGE_O: image_o.as_posix(),
             RESOLVER_O: resolver_o.as_posix()}
    if not _run([names.get(a, a) for a in recipe["link"]], log):
        return _give_up(log, log_path)
    log_path.write_text("\n".join(log) + "\nrelinked from the recorded PlatformIO commands\n")
    return elf


def _run(argv: list[str], log: list[str]) -> bool:
    result = subprocess.run(argv, cwd=project_dir(), capture_output=True, text=True)
    log += [shlex.join(argv), result.stdout, result.stderr]
    return result.returncode == 0


def _give_up(log: list[str], log_path: Path) -> None:
    log_path.write_text("\n".join(log) + "\nrelink failed: building with PlatformIO\n")
    return None
