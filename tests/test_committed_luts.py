"""The committed LUTs are what today's firmware measures: CI fails when one
names another firmware, and re-measures a seeded sample of every emulated
table on each run (catching a change the fingerprint would miss); a changed
timed instruction in a scratch copy of the firmware fails both checks."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tinyhil.board_catalog import get_board
from tinyhil.lut.table import read_meta
from tinyhil.measure.verify import staleness, verify_luts
from tinyhil.project import project_dir

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = 8  # rows per table and run, seeded by the commit: another sample every commit


def committed_tables(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / "luts").glob("*/*.csv") if p.with_suffix(".meta.json").is_file())


def emulated_board_dirs(root: Path = ROOT) -> list[Path]:
    return sorted({p.parent for p in committed_tables(root) if get_board(read_meta(p).board).emulated})


def commit_seed() -> int:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return int(head.stdout[:8], 16) if head.returncode == 0 and head.stdout[:8].isalnum() else 0


def describe(result) -> str:
    lines = []
    for check in result.checks:
        for d in check.diffs[:5]:
            lines.append(f"{check.path}: {d.key} {d.column}: committed {d.committed:g}, today {d.measured:g}")
        lines += [f"{check.path}: {name}: committed {a:g}, today {b:g}" for name, a, b in check.overheads]
    return "\n".join(lines)


def test_every_committed_lut_names_todays_firmware():
    stale = [reason for path in committed_tables() if (reason := staleness(path.relative_to(ROOT), read_meta(path)))]
    assert not stale, ("committed tables measured by another firmware; re-measure them with "
                       "`tinyhil lut verify luts/qemu-m4 luts/qemu-m33 --all --update`, then calibrate the "
                       "board tables again (README: Calibrate):\n" + "\n".join(stale))


@pytest.mark.device
def test_a_seeded_sample_of_every_committed_emulated_lut_reproduces():
    seed = commit_seed()
    result = verify_luts(emulated_board_dirs(), sample=SAMPLE, seed=seed)
    assert len(result.checks) == len(
        [p for p in committed_tables() if get_board(read_meta(p).board).emulated])
    assert result.ok, f"seed {seed}: committed rows today's firmware does not reproduce:\n{describe(result)}"


def _scratch_project(root: Path) -> Path:
    source = project_dir()
    for part in ("firmware", "boards", "platformio.ini", "host/tinyhil/image/templates"):
        target = root / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (source / part).is_dir() else shutil.copyfile)(source / part, target)
    packages = root / ".pio" / "core" / "packages"  # PlatformIO's offline tool-scons, as set-up made it
    shutil.copytree(source / ".pio" / "core" / "packages", packages, symlinks=True)
    table = source / "luts" / "qemu-m4" / "micronas-29x12-c9.csv"
    (root / "luts" / "qemu-m4").mkdir(parents=True)
    for path in (table, table.with_suffix(".meta.json")):
        shutil.copyfile(path, root / "luts" / "qemu-m4" / path.name)
    return root / "luts" / "qemu-m4" / table.name


@pytest.mark.device
def test_a_changed_timed_instruction_fails_both_checks(tmp_path, monkeypatch):
    from tinyhil.image.firmware import tflm_dir

    table = _scratch_project(tmp_path / "project")
    monkeypatch.setenv("TINYHIL_TFLM_DIR", str(tflm_dir()))  # the same tree, named as a copy of ours would
    monkeypatch.setenv("TINYHIL_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path / "cache"))
    project_dir.cache_clear()
    try:
        assert staleness(table, read_meta(table)) is None  # the copy is today's firmware
        runner = tmp_path / "project" / "firmware" / "runner" / "main.cc"
        timed = "    const TfLiteStatus status = interpreter.Invoke();\n"
        assert timed in runner.read_text()
        runner.write_text(runner.read_text().replace(timed, '    __asm volatile("nop");\n' + timed))
        assert "tinyhil lut verify" in staleness(table, read_meta(table))
        result = verify_luts([table], sample=4, seed=0)
        assert not result.ok
        (check,) = result.checks
        changes = {d.measured - d.committed for d in check.diffs if d.column == "cycles"}
        assert len({d.key for d in check.diffs}) == 4 and changes == {1.0}  # one instruction more, each op
    finally:
        project_dir.cache_clear()
        os.environ.pop("TINYHIL_PROJECT_DIR", None)


def test_a_search_leaves_a_committed_space_lut_as_it_is(tmp_path):
    """A complete space table is assembled again from its store before a search;
    only its write time differing (lut verify --update stamps each table), the
    committed files stay byte for byte as they are (git sees no change)."""
    import json

    from tinyhil.measure.characterize import Characterizer
    from tinyhil.spaces import make_space

    luts = tmp_path / "luts"
    shutil.copytree(project_dir() / "luts" / "qemu-m4", luts / "qemu-m4")
    table = luts / "qemu-m4" / "micronas-29x12-c9.csv"
    meta = table.with_suffix(".meta.json")
    stamped = json.loads(meta.read_text())
    stamped["created"] = "2000-01-01T00:00:00+00:00"
    meta.write_text(json.dumps(stamped, indent=2))
    before = (table.read_bytes(), meta.read_bytes())
    characterizer = Characterizer(get_board("qemu-m4"), luts)
    characterizer.write_space_lut("micronas", (29, 12), 9, make_space("micronas", 29, 12, 9).op_configs())
    assert (table.read_bytes(), meta.read_bytes()) == before
