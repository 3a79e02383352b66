"""Regression end to end: the task decides what the targets are; aeon's
regression sets, .npz and CSV with continuous targets; the pipeline deploys
and re-measures a regression model (MAE and RMSE for float, QAT, int8 host and
int8 device)."""
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tinyhil.cli import app
from tinyhil.deploy.qat import Scores
from tinyhil.nas import data as datasets
from tinyhil.nas.evaluate import evaluate_classification, evaluate_regression
from tinyhil.nas.timenas import load_dataset


def test_covid3month_loads_offline_from_aeon_as_regression():
    x_train, y_train, x_test, y_test = load_dataset("regression", data_name="Covid3Month")
    assert x_train.shape == (140, 84, 1) and x_test.shape == (61, 84, 1)
    assert y_train.dtype == np.float32 and not np.all(y_train == np.round(y_train))
    splits = datasets.load("Covid3Month", task="regression")
    assert splits.task == "regression" and splits.classes == 1
    assert len(splits.y_train) + len(splits.y_val) + len(splits.y_test) == 201
    with pytest.raises(datasets.DataError, match="Covid3Month is a regression data set, not classification: "
                                                 "use task regression"):
        datasets.load("Covid3Month")
    with pytest.raises(datasets.DataError, match="BasicMotions is a classification data set"):
        datasets.load("basic_motions", task="regression")


def test_the_task_decides_never_the_dtype(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 16, 2)).astype("float32")
    counts = rng.integers(0, 40, 50)  # integer-valued targets: 40 "classes" if the dtype decided
    np.savez(tmp_path / "counts.npz", features=x, labels=counts)
    splits = datasets.load(str(tmp_path / "counts.npz"), task="regression")
    assert splits.classes == 1 and splits.y_train.dtype == np.float32
    assert sorted(np.concatenate([splits.y_train, splits.y_val, splits.y_test])) == sorted(counts.astype(float))
    continuous = rng.normal(size=50)
    np.savez(tmp_path / "cont.npz", features=x, labels=continuous)
    with pytest.raises(datasets.DataError, match=r"cont.npz: task classification needs class labels; these "
                                                 r"targets are continuous .*use task regression"):
        datasets.load(str(tmp_path / "cont.npz"))
    frame = pd.DataFrame({"a": rng.normal(size=160), "b": rng.normal(size=160),
                          "target": np.repeat(rng.normal(size=10), 16)})
    frame.to_csv(tmp_path / "series.csv", index=False)
    splits = datasets.load(str(tmp_path / "series.csv"), window=16, task="regression")
    assert (splits.window, splits.channels, splits.classes) == (16, 2, 1)
    np.savez(tmp_path / "onehot.npz", features=x, labels=np.eye(5)[np.arange(50) % 5])
    with pytest.raises(datasets.DataError, match=r"regression needs one target per window; these are "
                                                 r"\(50, 5\) \(one-hot classes\?\)"):
        datasets.load(str(tmp_path / "onehot.npz"), task="regression")


def test_seed_metrics_by_hand():
    r = evaluate_regression([1.0, 2.0, 4.0], [1.0, 3.0, 2.0])
    assert r == pytest.approx({"mae": 1.0, "mse": 5 / 3, "rmse": np.sqrt(5 / 3)})
    c = evaluate_classification(np.array([0, 1, 1]), np.array([[.9, .1], [.2, .8], [.6, .4]]))
    assert c["accuracy"] == pytest.approx(2 / 3) and c["auc"] == pytest.approx(1.0)
    s = Scores.regression(np.array([1.0, 3.0, 2.0]), np.array([1.0, 2.0, 4.0]))
    assert (s.mae, s.rmse) == pytest.approx((1.0, np.sqrt(5 / 3))) and s.accuracy is None


def test_cli_wants_a_memory_unit_and_a_task_that_fits(tmp_path):
    runner = CliRunner()  # Tiny-TimeNAS's kB is no default here: every command wants the unit
    result = runner.invoke(app, ["search", "timenas", "--data", "basic_motions", "--memory", "128",
                                 "--candidates", "2", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--memory '128': a bare number is refused" in " ".join(result.output.split())
    assert not (tmp_path / "r").exists()
    result = runner.invoke(app, ["search", "timenas", "--data", "Covid3Month", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "Covid3Month is a regression data set" in result.output
    result = runner.invoke(app, ["pipeline", "--engine", "tinytnas", "--data", "Covid3Month",
                                 "--task", "regression", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "only timenas searches regression models" in result.output


@pytest.mark.device
@pytest.mark.slow
def test_regression_pipeline_on_covid3month_deploys_and_remeasures(tmp_path):
    import shutil
    from pathlib import Path

    from tinyhil.board_catalog import get_board
    from tinyhil.deploy.deployment import DeployOptions
    from tinyhil.nas.engines import DataSpec, Targets
    from tinyhil.pipeline import EngineSettings, PipelineConfig, pipeline

    luts = shutil.copytree(Path(__file__).resolve().parents[1] / "luts", tmp_path / "luts")
    config = PipelineConfig("timenas", DataSpec("Covid3Month", task="regression"),
                            Targets(latency_ms=50, ram_bytes=65536), tmp_path / "run",
                            EngineSettings(n_archs=4), DeployOptions(epochs=10, qat_epochs=2, repeats=3))
    result = pipeline(config, get_board("qemu-m4"), luts)
    d = result.deployment
    assert result.run.classes == 1 and result.run.architecture.ops[-1].output_shape == (1,)
    for name in ("float", "qat", "int8_host", "int8_device"):
        assert d.scores[name].mae >= 0 and d.scores[name].rmse >= d.scores[name].mae
    # the device's int8 output is the host interpreter's, within a step of CMSIS-NN rounding
    assert d.max_output_steps <= 1 and d.test_windows == 40  # 20 % of 201
    assert abs(d.scores["int8_device"].mae - d.scores["int8_host"].mae) < 0.05
    assert "MAE" in result.report.read_text() and "RMSE" in result.report.read_text()
