"""Deployment: QAT -> int8 -> firmware from the C array -> device, against the
host interpreter; the pipeline on each engine; bad run directories."""
import dataclasses
import json

import numpy as np
import pytest

from tinyhil.board_catalog import get_board
from tinyhil.deploy.deployment import DeployError, DeployOptions, deploy, lut_differences, quantize
from tinyhil.deploy.qat import macro_f1, train_int8, windows
from tinyhil.lut.table import Lut
from tinyhil.models.single_op import BUILTIN
from tinyhil.models.tflite_model import TfliteModel
from tinyhil.nas.data import load
from tinyhil.nas.engines import DataSpec, RunDirError, SearchRun, Targets
from tinyhil.pipeline import EngineSettings, PipelineConfig, pipeline
from tinyhil.spaces import ops
from tinyhil.spaces.arch import Builder

QUICK = DeployOptions(epochs=8, qat_epochs=2, repeats=3)


def test_macro_f1_known_values():
    labels = np.array([0, 0, 1, 1])
    assert macro_f1(labels, labels, 2) == 1.0
    assert macro_f1(np.array([0, 0, 0, 0]), labels, 2) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1(np.array([0, 1, 0, 1]), labels, 3) == pytest.approx((0.5 + 0.5 + 1) / 3)


def tiny_architecture(window, channels, classes):
    b = Builder((window, channels, 1))
    b.add(ops.conv(b.shape(-1), 16, (9, 1), (1, 1), activation="relu"), -1)
    shape = b.shape(0)
    b.add(ops.pool(ops.AVG_POOL, shape, (shape[0], shape[1])))
    b.add(ops.reshape(b.shape(1), (16,)))
    b.add(ops.dense(16, classes, activation="none"))
    b.add(ops.softmax(classes))
    return b.build("micronas", {"tiny": True})


def test_qat_gives_a_full_integer_model_that_agrees_with_its_training():
    data = load("synthetic32x3c3n300")
    arch = tiny_architecture(32, 3, 3)
    trained = train_int8(arch, data, epochs=60, qat_epochs=5)
    model = TfliteModel.from_bytes(trained.flatbuffer, "tiny")
    assert model.inputs[0].dtype == "int8" and model.outputs[0].dtype == "int8"
    runtime_ops = [BUILTIN[op.op] for op in arch.runtime().ops]
    assert list(model.ops) == runtime_ops  # no QUANTIZE after the average pooling
    predicted = np.array([np.argmax(np.frombuffer(model.reference_output(x), np.int8))
                          for x in quantize(windows(data.x_test, arch), model)])
    int8_accuracy = float(np.mean(predicted == data.y_test))
    assert trained.qat_scores.accuracy > 0.6  # three well-separated classes: far above chance
    assert abs(int8_accuracy - trained.qat_scores.accuracy) <= 0.1


@pytest.fixture(scope="module")
def micronas_pipeline(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "micronas"
    config = PipelineConfig("micronas", DataSpec("basic_motions"), Targets(latency_ms=40, ram_bytes=32768),
                            out, EngineSettings(search_epochs=4), QUICK)
    messages = []
    return pipeline(config, get_board("qemu-m4"), _luts(), log=messages.append), config


def _luts():
    from tinyhil.project import project_dir

    return project_dir() / "luts"


@pytest.mark.device
def test_micronas_pipeline_device_equals_host_and_estimate_holds(micronas_pipeline):
    result, config = micronas_pipeline
    d = result.deployment
    assert d.test_windows == 16  # BasicMotions: 80 windows, 20 % held out
    assert d.outputs_equal == d.test_windows and d.predictions_equal == d.test_windows
    assert d.scores["int8_device"] == d.scores["int8_host"]
    assert abs(d.latency_error_pct) < 3
    assert all(r.lut_key for r in d.layers if r.op != "QUANTIZE")
    record = json.loads((config.out / "deployment.json").read_text())
    assert record["measured"]["cycles"] == d.cycles and record["measured"]["arena_bytes"] == d.arena_used
    assert record["board"] == "qemu-m4" and (config.out / "model_int8.tflite").is_file()
    html = result.report.read_text()
    assert "Per layer: latency and memory" in html and d.architecture_id in html
    assert 'class="figure architecture"' in html and html.count('class="layer"') == len(
        [r for r in d.layers if r.lut_key])
    # the firmware compiled the generated C array
    assert (config.out / "firmware" / "g_model.cc").is_file()


@pytest.mark.device
def test_pipeline_resumes_without_searching_or_training_again(micronas_pipeline):
    _, config = micronas_pipeline
    messages = []
    again = pipeline(config, get_board("qemu-m4"), _luts(), log=messages.append)
    assert any("reusing the search" in m for m in messages)
    assert any("reusing the QAT model" in m for m in messages)
    assert again.deployment.outputs_equal == again.deployment.test_windows


@pytest.mark.device
def test_a_model_that_no_longer_fits_says_by_how_much(micronas_pipeline):
    _, config = micronas_pipeline
    small = dataclasses.replace(get_board("qemu-m4"), flash_bytes=2000)
    lut = Lut.load(_luts() / "qemu-m4" / "micronas-100x6-c4.csv")
    with pytest.raises(DeployError, match=r"no longer fits qemu-m4.*over by \d+ bytes"):
        deploy(config.out, small, lut, QUICK)


@pytest.mark.device
@pytest.mark.parametrize("engine, data, board, targets, settings", [
    ("tinytnas", "synthetic187x1c5n150", "qemu-m33", Targets(latency_ms=15, ram_bytes=20480, macs=60000),
     EngineSettings(budget_s=15, candidate_epochs=1)),
    ("timenas", "basic_motions", "qemu-m4", Targets(latency_ms=20, ram_bytes=65536),
     EngineSettings(n_archs=12)),
])
@pytest.mark.slow
def test_short_pipeline_per_engine(tmp_path, engine, data, board, targets, settings):
    config = PipelineConfig(engine, DataSpec(data), targets, tmp_path / engine, settings, QUICK)
    d = pipeline(config, get_board(board), _luts()).deployment
    assert d.engine == engine and d.board == board
    assert d.predictions_equal == d.test_windows > 0
    # CMSIS-NN's fully connected layers may round a step off TFLite's reference kernels
    assert (d.max_output_steps == 0) == (d.outputs_equal == d.test_windows)
    assert abs(d.latency_error_pct) < 3
    assert d.checks()["latency"] and d.checks()["ram"]


def test_bad_run_directories(tmp_path):
    with pytest.raises(RunDirError, match="no run.json"):
        SearchRun.load(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunDirError, match="not valid JSON"):
        SearchRun.load(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"engine": "micronas", "tinyhil": "0.0.1"}))
    with pytest.raises(RunDirError, match="written by tinyhil 0.0.1"):
        SearchRun.load(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"run_format": 1, "engine": "micronas", "board": "qemu-m4"}))
    with pytest.raises(RunDirError, match="incomplete: no data, classes"):
        SearchRun.load(tmp_path)


def test_lut_from_another_board_or_tflm_is_named():
    lut = Lut.load(_luts() / "qemu-m4" / "micronas-100x6-c4.csv")
    board = get_board("qemu-m33")
    info = type("Info", (), {"core": "cortex-m33", "tflm": "tflite-micro@other", "counter": lut.meta.counter})
    warnings = lut_differences(lut, board, info, "qemu-m4")
    assert any("board is qemu-m4, the device's is qemu-m33" in w for w in warnings)
    assert any("TFLM is tflite-micro-arduino-examples@7948b85, the device's is tflite-micro@other" in w
               for w in warnings)
    assert any("core is cortex-m4" in w for w in warnings)


def test_cli_names_a_bad_run_directory_and_engine(tmp_path):
    from typer.testing import CliRunner

    from tinyhil.cli import app

    result = CliRunner().invoke(app, ["deploy", str(tmp_path)])
    assert result.exit_code != 0 and "no run.json" in result.output
    result = CliRunner().invoke(app, ["pipeline", "--engine", "darts", "--data", "basic_motions"])
    assert result.exit_code != 0 and "--engine must be one of micronas, tinytnas, timenas" in result.output
