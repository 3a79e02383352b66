"""A board's firmware fingerprint: what its images are made of, by content.

Every table names the fingerprint of the firmware that measured it; a table
whose fingerprint is not today's was measured by another firmware (tinyhil
lut verify re-measures it). So the fingerprint covers what reaches the timed
code: the TFLM library's key (compiler, flags, TFLM's content), the runner,
the shared includes, the board's own board-support library, the
dev-platform and the build script, the image templates, the board JSON and
the board's platformio.ini options. It leaves out what does not: paths (the
same firmware in another checkout or on another machine has the same
fingerprint), inventory files (boards/lab.yaml), comments and other boards'
sections of platformio.ini, the serial port.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from tinyhil.board_catalog import BoardConfig
from tinyhil.project import project_dir

# The firmware's own parts every board builds (relative to the project); the
# board-support libraries (firmware/bsp/<family>) count only for their boards.
SHARED_PARTS = ("firmware/runner", "firmware/include", "firmware/platform", "firmware/scripts",
                "host/tinyhil/image/templates")
# platformio.ini options that say where things are or how to reach a board, not what is built
NOT_FIRMWARE = ("upload_port", "upload_speed", "monitor_port", "monitor_speed", "custom_tflm_dir",
                "custom_tflm_git", "test_port", "debug_port")


def _files(root: Path, part: str) -> list[Path]:
    path = root / part
    found = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
    return [p for p in found if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")]


def bsp_dirs(lib_deps: list[str]) -> list[str]:
    """The firmware/bsp/<family> libraries among an environment's lib_deps (by library.json name)."""
    root = project_dir()
    wanted = {dep.strip() for dep in lib_deps}
    found = []
    for manifest in sorted((root / "firmware" / "bsp").glob("*/library.json")):
        if json.loads(manifest.read_text()).get("name") in wanted:
            found.append(manifest.parent.relative_to(root).as_posix())
    return found


def environment_options(board: BoardConfig) -> dict[str, object]:
    """The board's platformio.ini options as PlatformIO resolves them (extends, ${...})."""
    from platformio.project.config import ProjectConfig

    root = str(project_dir())

    class AtTheProject(ProjectConfig):
        # PlatformIO reads ${PROJECT_DIR} as the working directory: here it is the
        # project's, wherever tinyhil runs from (a cluster worker runs elsewhere)
        BUILTIN_VARS = {**ProjectConfig.BUILTIN_VARS, "PROJECT_DIR": lambda: root}

    config = AtTheProject(str(project_dir() / "platformio.ini"), parse_extra=False)
    options = dict(config.items(env=board.name, as_dict=True))
    # ${PROJECT_DIR} resolved is this checkout's path: put the name back
    return {k: json.loads(json.dumps(options[k]).replace(root, "${PROJECT_DIR}"))
            for k in sorted(options) if k not in NOT_FIRMWARE}


def firmware_fingerprint(board: BoardConfig, tree: Path) -> str:
    """16 hex digits naming the firmware `board` builds today (TFLM from `tree`)."""
    from tinyhil.image.tflm_library import tree_stamps

    root = project_dir()
    inputs = [root / "platformio.ini", *(p for part in ("firmware", "boards", "host/tinyhil/image/templates")
                                         for p in _files(root, part))]
    stamps = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in inputs)
    return _fingerprint(board, tree, stamps, tree_stamps(tree))


@lru_cache(maxsize=32)
def _fingerprint(board: BoardConfig, tree: Path, _stamps: tuple, _tree_stamps: tuple) -> str:
    """Computed again only when a file it may read changed (size or time)."""
    from tinyhil.image.tflm_library import library_recipe, tree_digest

    root = project_dir()
    options = environment_options(board)
    digest = hashlib.sha256()
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    # bare-metal boards link the host's TFLM library: its key covers compiler, flags and tree
    tflm = library_recipe(board, tree).key if board.offline else f"tree {tree_digest(tree)}"
    digest.update(tflm.encode() + b"\0")
    deps = options.get("lib_deps", [])
    parts = [*SHARED_PARTS, *bsp_dirs(deps if isinstance(deps, list) else [deps]),
             f"boards/{options.get('board', '')}.json"]
    for part in parts:
        for path in _files(root, part):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


__all__ = ["firmware_fingerprint"]
