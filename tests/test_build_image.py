"""`tinyhil build`: an image built without a board on one host, booted on another
(`tinyhil run --image`) only if that host builds the very same firmware and image."""
import json

import pytest
from typer.testing import CliRunner

from tinyhil.board_catalog import get_board
from tinyhil.cli import app
from tinyhil.image.shipped import ImageMismatch
from tinyhil.measure.model import run_model
from tinyhil.models.single_op import prepare_direct_models
from tinyhil.spaces import make_space

pytestmark = pytest.mark.device


@pytest.fixture
def two_models(tmp_path):
    ops = make_space("micronas", 29, 12, 9).op_configs()[:2]
    paths = []
    for n, (_, path) in enumerate(((m.op, m.path) for m in prepare_direct_models(ops, workers=0))):
        paths.append(tmp_path / f"op{n}.tflite")
        paths[-1].write_bytes(path.read_bytes())
    return paths


def test_an_image_built_here_runs_on_another_host_with_the_same_firmware(tmp_path, two_models, monkeypatch):
    model, other_model = two_models
    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path / "build-host"))
    result = CliRunner().invoke(app, ["build", str(model), "--board", "qemu-m4", "--image", str(tmp_path / "image.elf")])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "image.elf.json").read_text())
    assert meta["board"] == "qemu-m4" and len(meta["firmware"]) == 16

    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path / "board-host"))  # nothing built there
    report = run_model(model, get_board("qemu-m4"), repeats=1, image_path=tmp_path / "image.elf")
    assert report.cached_build and report.image_id == meta["image_id"] and report.output_matches
    assert not list((tmp_path / "board-host").rglob("build.log"))  # booted, never built

    with pytest.raises(ImageMismatch, match="does not hold the benchmarks"):
        run_model(other_model, get_board("qemu-m4"), repeats=1, image_path=tmp_path / "image.elf")
    with pytest.raises(ImageMismatch, match="built for qemu-m4, not qemu-m33"):
        run_model(model, get_board("qemu-m33"), repeats=1, image_path=tmp_path / "image.elf")
    (tmp_path / "image.elf.json").write_text(json.dumps({**meta, "firmware": "0123456789abcdef"}))
    with pytest.raises(ImageMismatch, match="built with firmware 0123456789abcdef, this host builds [0-9a-f]{16}"):
        run_model(model, get_board("qemu-m4"), repeats=1, image_path=tmp_path / "image.elf")
