"""Where the tinyhil project (platformio.ini, firmware/, boards/) is on disk."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from tinyhil.errors import TinyhilError


@lru_cache(maxsize=None)
def project_dir() -> Path:
    """$TINYHIL_PROJECT_DIR, else the checkout this package was installed from."""
    candidates = [os.environ.get("TINYHIL_PROJECT_DIR", ""), Path(__file__).resolve().parents[2]]
    for candidate in candidates:
        if candidate and (Path(candidate) / "platformio.ini").is_file():
            return Path(candidate).resolve()
    raise TinyhilError(
        "cannot find the tinyhil project (platformio.ini): set TINYHIL_PROJECT_DIR to the checkout"
    )


def cache_dir() -> Path:
    """Built images and other reusable results: $TINYHIL_CACHE_DIR or .tinyhil/ in the project."""
    path = Path(os.environ.get("TINYHIL_CACHE_DIR", "") or project_dir() / ".tinyhil")
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_cache_dir() -> Path:
    """What every checkout on this machine can share (TFLM compiled per core):
    $TINYHIL_MACHINE_CACHE, else $XDG_CACHE_HOME/tinyhil, else ~/.cache/tinyhil."""
    override = os.environ.get("TINYHIL_MACHINE_CACHE", "")
    if override:
        path = Path(override)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        path = (Path(xdg) if xdg else Path.home() / ".cache") / "tinyhil"
    path.mkdir(parents=True, exist_ok=True)
    return path
