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
