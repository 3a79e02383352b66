"""`tinyhil deploy RUN --board qemu-m4 --predict nucleo_f446re`: the latency
target is the physical board's, so the verdict is the predicted board latency
at its bound, not the emulated board's milliseconds (issue 30: a network the
F446RE runs in 14.3 ms at p95 was judged "NO" by qemu-m4's 61 ms at 25 MHz)."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tinyhil.cli import app
from tinyhil.deploy.deployment import Deployment
from tinyhil.deploy.qat import Scores
from tinyhil.estimate.predict import BoardLatency
from tinyhil.nas.constraints import Profile
from tinyhil.nas.engines import DataSpec, SearchRun, Targets
from tinyhil.report.deployment import figure_rows, summary_rows
from tinyhil.spaces import make_space
from tinyhil.spaces.micronas import sample_architecture

F446RE = BoardLatency("nucleo_f446re", "p95", 14.007, 14.336, "luts/nucleo_f446re/micronas-128x9-c6.csv")


def deployment(targets: Targets, predicted: BoardLatency | None, measured_ms: float = 61.46,
               arena: int = 7140) -> Deployment:
    scores = Scores(0.94, 0.94)
    return Deployment(
        run_dir="r", engine="micronas", board="qemu-m4", data="uci_har", architecture_id="a", targets=targets,
        estimate=Profile(7100, 20000, 100000, 61.4), estimated_cycles=61.4 * 25e3,
        measured_cycles=(measured_ms * 25e3,), clock_hz=25_000_000, counter="qemu-icount", arena_used=arena,
        model_bytes=20000, image_flash_bytes=90000, image_ram_bytes=60000,
        scores={"float": scores, "qat": scores, "int8_host": scores, "int8_device": scores}, test_windows=10,
        outputs_equal=10, max_output_steps=0, predictions_equal=10, layers=(), warnings=(), predicted=predicted)


def test_the_predicted_board_bound_judges_the_latency_target():
    targets = Targets(latency_ms=14.45, ram_bytes=11520)
    judged = deployment(targets, F446RE)
    assert judged.checks() == {"latency": True, "ram": True, "flash": None} and judged.under_targets
    rows = {row[0]: row for row in figure_rows(judged)}
    emulated, board = rows["latency on qemu-m4 (ms)"], rows["latency on nucleo_f446re (ms), predicted, at p95"]
    assert emulated[2] == "61.46" and emulated[4:] == ("-", "- (judged on nucleo_f446re)")
    assert board[1] == "14.01, at p95 14.34" and board[4:] == ("14.45", "yes")
    assert "nucleo_f446re at p95: 14.34" in summary_rows([judged])[0]["target ms"]

    # the point estimate is under the target, its bound is not: over
    tight = deployment(Targets(latency_ms=14.2), F446RE)
    assert tight.checks()["latency"] is False and not tight.under_targets
    assert {row[0]: row for row in figure_rows(tight)}["latency on nucleo_f446re (ms), predicted, at p95"][5] == "NO"
    # the arena is still the one measured here
    assert deployment(targets, F446RE, arena=12000).checks()["ram"] is False

    # no prediction: the emulated board's measurement is the judge, as before
    plain = deployment(targets, None)
    assert plain.checks()["latency"] is False
    assert figure_rows(plain)[0] == ("latency (ms)", "61.40", "61.46", "-0.10 %", "14.4", "NO")
    assert json.loads(json.dumps(judged.to_dict(), default=float))["under_targets"]["latency"] is True


def test_deploy_cli_hands_the_prediction_to_the_verdict(tmp_path, monkeypatch):
    """The CLI predicts before deploying and the deployment it prints is judged by
    that prediction (the deployment itself, training and QEMU, replaced here)."""
    import tinyhil.deploy.deployment as deployment_module
    from tinyhil.cli import console
    from tinyhil.estimate import lut_latency
    from tinyhil.lut.table import Lut
    from tinyhil.project import project_dir

    luts = project_dir() / "luts"
    arch = sample_architecture(make_space("micronas", 128, 9, 6), np.random.default_rng(0))
    board_lut = Lut.load(luts / "nucleo_f446re" / "micronas-128x9-c6.csv")
    bound_ms = lut_latency(arch, board_lut, at="p95") / board_lut.meta.clock_hz * 1e3
    SearchRun("micronas", "nucleo_f446re", DataSpec("uci_har"), 6, (128, 9), arch,
              Targets(latency_ms=round(bound_ms * 1.001, 2)), Profile(1, 1, 1, 1.0),
              str(luts / "nucleo_f446re" / "micronas-128x9-c6.csv")).write(tmp_path)
    handed = []

    def deploy(run_dir, board, lut, options, log, on_stage, predicted=None):
        handed.append(predicted)
        found = SearchRun.load(run_dir)  # measured on qemu-m4: 4x the F446RE's milliseconds
        return deployment(found.targets, predicted, measured_ms=bound_ms * 4)

    monkeypatch.setattr(deployment_module, "deploy", deploy)
    monkeypatch.setattr(console, "_width", 250)  # one line per table row, whatever width a test left
    out = CliRunner().invoke(app, ["deploy", str(tmp_path), "--board", "qemu-m4", "--predict", "nucleo_f446re",
                                   "--luts", str(luts)], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    (predicted,) = handed
    assert predicted.board == "nucleo_f446re" and predicted.bound == "p95"
    assert predicted.ms_bound == pytest.approx(bound_ms, rel=1e-9)
    line = next(line for line in out.output.splitlines() if "predicted, at p95" in line)
    assert line.rstrip(" │").endswith("yes")
    assert "judged on nucleo_f446re" in out.output
