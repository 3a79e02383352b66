"""`tinyhil bench characterize --baseline REV`: its pieces (the summary read
back, tables compared, REV's tree exported), and a small run end to end."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from tinyhil.benchmarks.characterize_speed import compare_tables, export_tree, summary_rows

SUMMARY = """\
                 characterization -> luts/qemu-m4/timenas-100x6-c4.csv
┏━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃                        ┃ value                       ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ ops in space           │ 8379                        │
│ wall time              │ 244.4 s (2057 ops/min)      │
│ firmware builds        │ 96.2 s (overlaps measuring) │
│ measuring              │ 148.0 s                     │
│ emulator ceiling       │ 22.1 s (guest instructions / QEMU's pace); measuring took 31.0 s, 1.40x the ceiling │
└────────────────────────┴─────────────────────────────┘
"""


def test_the_summary_is_read_back_row_by_row():
    rows = summary_rows(SUMMARY)
    assert rows["wall time"] == "244.4 s (2057 ops/min)" and rows["measuring"] == "148.0 s"
    assert rows["emulator ceiling"].startswith("22.1 s") and "value" not in rows.values()


def write_lut(path, rows):
    path.write_text("key,op,cycles,kernel_cycles,arena_bytes,status\n" +
                    "".join(f"{k},conv2d,{c},{c - 50},{a},ok\n" for k, c, a in rows))
    return path


def test_tables_are_compared_row_by_row_and_column_by_column(tmp_path):
    rows = [("a", 1000.0, 100), ("b", 2000.0, 200)]
    a = write_lut(tmp_path / "a.csv", rows)
    assert compare_tables(a, write_lut(tmp_path / "same.csv", rows)).identical
    other = compare_tables(a, write_lut(tmp_path / "other.csv", [("a", 1000.0, 100), ("b", 2001.0, 208)]))
    assert not other.identical
    assert other.differing == {"cycles": ["b"], "kernel_cycles": ["b"], "arena_bytes": ["b"]}
    fewer = compare_tables(a, write_lut(tmp_path / "fewer.csv", rows[:1]))
    assert not fewer.identical and fewer.differing["key"] == ["b"]


def test_a_revisions_tree_is_exported_to_build_offline(tmp_path):
    tree = export_tree("HEAD", tmp_path / "tree")
    assert (tree / "platformio.ini").is_file() and (tree / "host" / "tinyhil" / "__init__.py").is_file()
    assert (tree / "firmware" / "runner" / "main.cc").is_file()
    assert not (tree / "luts").exists() or (tree / "luts").is_dir()  # whatever REV holds, as it holds it
    if (ROOT / ".pio" / "core" / "packages").is_dir():  # PlatformIO's offline packages, this checkout's
        assert (tree / ".pio" / "core" / "packages").resolve() == (ROOT / ".pio" / "core" / "packages").resolve()


@pytest.mark.device
@pytest.mark.slow
def test_before_and_after_in_one_run(tmp_path):
    """HEAD against this checkout on a few ops: both sides run, the figures
    come side by side, the ceiling on the side that reports it, the tables
    are identical (the same firmware and host code, unless the checkout has
    changes that move counts: then this test says so)."""
    env = dict(os.environ, COLUMNS="300")
    done = subprocess.run([sys.executable, "-m", "tinyhil", "bench", "characterize", "--space", "timenas",
                           "--input", "100x6", "--classes", "4", "--baseline", "HEAD", "--limit", "12",
                           "--keep", str(tmp_path / "kept")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "before (" in out and "after (this checkout)" in out and "emulator ceiling" in out
    assert "identical tables" in out, out[-3000:]
    assert (tmp_path / "kept" / "before-1" / "qemu-m4" / "timenas-100x6-c4.csv").is_file()
    assert (tmp_path / "kept" / "after-1" / "qemu-m4" / "timenas-100x6-c4.csv").is_file()
