"""Flashing a physical board with a built image: `pio run -t upload` (openocd
for the Nucleo boards). Building lives in the image stage; putting an image on
a board is the device stage's job."""
from __future__ import annotations

import subprocess

from tinyhil.children import run_group
from tinyhil.device import stlink
from tinyhil.errors import TinyhilError
from tinyhil.image.firmware import BuiltImage, build_lock, library_path, pio_environment, pio_executable, tflm_dir
from tinyhil.project import project_dir


def upload(image: BuiltImage, port: str) -> None:
    """Flashes a physical board: `pio run -t upload` on the image's sources."""
    command = [pio_executable(), "run", "--environment", image.board.name, "--target", "upload",
               "--project-dir", str(project_dir())]
    if port:
        command += ["--upload-port", port]
    if image.board.openocd_board:
        stlink.openocd_command(image.board, port, "")  # openocd missing: say so before pio runs
    tflm = tflm_dir()
    environment = pio_environment(image.source_dir, tflm, library_path(image.board, tflm))
    with build_lock():
        result = run_group(command, cwd=project_dir(), env=environment,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if image.board.openocd_board and "openocd" in output.lower():
            raise TinyhilError(stlink.openocd_failure(image.board, "flash", output))
        raise TinyhilError(f"flashing {image.board.name} failed:\n{output[-1500:]}")
