"""Images built on one host and run on another (`tinyhil build --image`, a
cluster's client building for its workers).

An image travels as its ELF plus a sidecar (`image.elf.json`) naming the board,
the image id and the firmware fingerprint it was built with. The host with the
board takes it only if it would build the very same image: its own firmware
fingerprint for the board must be the image's, and the image id the one its
own spec gives (the same models, in the same order). It then sits in the
local image cache as if built here, checksum and all.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tinyhil import __version__
from tinyhil.board_catalog import BoardConfig
from tinyhil.errors import TinyhilError
from tinyhil.files import atomic_write, write_checksum
from tinyhil.image.fingerprint import firmware_fingerprint
from tinyhil.image.firmware import BuiltImage, build_image, tflm_dir
from tinyhil.image.sources import ImageSpec
from tinyhil.project import cache_dir


class ImageMismatch(TinyhilError):
    """An image built elsewhere that this host would not build the same way."""


def sidecar(elf: Path) -> Path:
    return elf.with_name(elf.name + ".json")


def export_image(image: BuiltImage, out: Path) -> Path:
    """Copies a built image's ELF to `out`, with its sidecar."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.elf, out)
    atomic_write(sidecar(out), json.dumps({"board": image.board.name, "image_id": image.image_id,
                                           "firmware": image.firmware, "tinyhil": __version__}, indent=2))
    return out


def install(board: BoardConfig, image_id: str, firmware: str, elf_bytes: bytes, expected_id: str | None = None) -> None:
    """Puts an image built elsewhere into this host's cache, if this host builds the same."""
    here = firmware_fingerprint(board, tflm_dir())
    if firmware != here:
        raise ImageMismatch(f"image {image_id} for {board.name} was built with firmware {firmware}, this host "
                            f"builds {here}: build it here, or give both hosts the same checkout and TFLM tree")
    if expected_id is not None and image_id != expected_id:
        raise ImageMismatch(f"image {image_id} does not hold the benchmarks asked for (they make image "
                            f"{expected_id} with this firmware): was it built from another model?")
    elf = cache_dir() / "images" / board.name / image_id / "firmware.elf"
    elf.parent.mkdir(parents=True, exist_ok=True)
    tmp = elf.with_suffix(".tmp")
    tmp.write_bytes(elf_bytes)
    write_checksum(elf, elf_bytes)
    os.replace(tmp, elf)


def import_image(path: Path, spec: ImageSpec, board: BoardConfig) -> BuiltImage:
    """The image at `path` (built by `tinyhil build`), for `spec` on `board`."""
    path = Path(path)
    try:
        meta = json.loads(sidecar(path).read_text())
    except (OSError, ValueError) as error:
        raise ImageMismatch(f"{path}: no readable {sidecar(path).name} beside it (made by `tinyhil build "
                            f"--image`): {error}") from error
    if meta.get("board") != board.name:
        raise ImageMismatch(f"{path} was built for {meta.get('board')}, not {board.name}")
    firmware = firmware_fingerprint(board, tflm_dir())
    install(board, meta["image_id"], meta["firmware"], path.read_bytes(), spec.image_id(firmware))
    return build_image(spec, board)  # found in the cache: nothing is built
