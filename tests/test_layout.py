"""The package layout keeps its promises: imports run down the data path (the
import-linter contract in pyproject.toml), and each `cli/` module stays thin."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "host" / "tinyhil" / "cli"


def test_imports_run_down_the_data_path(monkeypatch):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT / "host"))
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0  # EXIT_STATUS_SUCCESS


@pytest.mark.parametrize("module", sorted(CLI.rglob("*.py")), ids=lambda p: str(p.relative_to(CLI)))
def test_cli_modules_are_thin(module):
    lines = len(module.read_text().splitlines())
    assert lines < 250, f"{module.name}: {lines} lines; move the logic down to the stage that owns it"


def test_the_measuring_stages_stay_out_of_tables_and_estimators():
    """Reading a LUT or estimating must not load the image, device or measuring stages."""
    import subprocess
    import sys

    code = ("import sys, tinyhil.lut.table, tinyhil.lut.calibration.board_lut, tinyhil.estimate.latency, "
            "tinyhil.estimate.memory, tinyhil.report.validation, tinyhil.spaces; "
            "print(sorted(m for m in sys.modules if m.startswith(('tinyhil.device', 'tinyhil.measure', "
            "'tinyhil.image'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "host"), "PATH": "/usr/bin:/bin",
                              "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_tensorflow_is_imported_with_onednn_off():
    """Any stage that trains (here deploy's QAT) gets TensorFlow without oneDNN's
    kernels, which crash training some MicroNAS networks (TensorFlow reads the
    variable when imported and logs 'oneDNN custom operations are on' if they are)."""
    import subprocess
    import sys

    code = "import os, tinyhil.deploy.qat, tensorflow; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "host"), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert out.stdout.split() == ["0"]
    assert "oneDNN custom operations are on" not in out.stderr
