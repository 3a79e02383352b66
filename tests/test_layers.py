"""--compare-layers: every op's output on the board against the host
interpreter's, streamed op by op; the first diverging op found and run alone."""
import json

import numpy as np
import pytest

from conftest import make_int8_model
from tinyhil.board_catalog import get_board
from tinyhil.measure.layers import INPUT, attribute, compare_on_board, diff_layers, stream_tensors
from tinyhil.models.op_alone import op_alone
from tinyhil.models.tflite_model import TfliteModel, model_graph


@pytest.fixture(scope="module")
def har_cnn(models_dir):
    """The op types of the TinyTNAS and Tiny-TimeNAS networks on UCI-HAR's 128x9
    windows: convolutions with ReLU (one strided, one depthwise), pooling,
    dense layers, softmax; and Keras' global average pooling (TFLite's MEAN),
    whose TFLM kernel rounds some means one step off TFLite's. Its first
    convolution's output (126x64 B) takes two TENSOR frames."""
    import tensorflow as tf

    L = tf.keras.layers
    return make_int8_model(models_dir / "layers_har_cnn.tflite", [
        L.Conv1D(64, 3, activation="relu"), L.MaxPooling1D(2),
        L.SeparableConv1D(24, 3, activation="relu"), L.Conv1D(16, 5, strides=2, activation="relu"),
        L.GlobalAveragePooling1D(), L.Dense(12, activation="relu"), L.Dense(6), L.Softmax(),
    ], (128, 9))


@pytest.fixture(scope="module")
def pooled_cnn(models_dir):
    """No MEAN (average pooling over the whole window instead, as tinyhil's
    TinyTNAS space has it): a network whose every layer the board computes as
    the host does."""
    import tensorflow as tf

    L = tf.keras.layers
    return make_int8_model(models_dir / "layers_pooled_cnn.tflite", [
        L.Reshape((128, 1, 9)), L.Conv2D(16, (5, 1), activation="relu"), L.MaxPooling2D((2, 1)),
        L.DepthwiseConv2D((3, 1), padding="same"), L.Conv2D(16, 1, activation="relu"),
        L.AveragePooling2D((62, 1)), L.Flatten(), L.Dense(6), L.Softmax(),
    ], (128, 9))


def first_op(model: TfliteModel, name: str, after: int = -1) -> int:
    return next(i for i, op in enumerate(model_graph(model).ops) if op.name == name and i > after)


# ---- host side ------------------------------------------------------------------

def test_an_op_cut_out_alone_computes_what_it_computed_in_the_model(har_cnn):
    model = TfliteModel.load(har_cnn)
    x = model.random_input(3)
    host = model.reference_tensors(x)
    graph = model_graph(model)
    for index, op in enumerate(graph.ops):
        flatbuffer, inputs = op_alone(model.flatbuffer, index)
        alone = TfliteModel.from_bytes(flatbuffer, f"op{index}")
        assert alone.ops == (op.name,)
        assert set(inputs) <= set(graph.inputs) | {t for o in graph.ops[:index] for t in o.outputs}
        assert alone.reference_output(b"".join(host[t] for t in inputs)) == b"".join(host[t] for t in op.outputs)


def test_a_difference_injected_into_one_layer_is_found_there(har_cnn):
    model = TfliteModel.load(har_cnn)
    x = model.random_input(0)
    host = model.reference_tensors(x)
    assert all(d.equal for d in diff_layers(model, host, host))
    graph = model_graph(model)
    conv = first_op(model, "CONV_2D", after=first_op(model, "CONV_2D"))  # the second convolution
    device = dict(host)
    out = np.frombuffer(host[graph.ops[conv].outputs[0]], np.int8).copy()
    for element, steps in ((3, 5), (40, 2)):  # up or down, whichever stays in int8
        out[element] += steps if out[element] <= 127 - steps else -steps
    device[graph.ops[conv].outputs[0]] = out.tobytes()
    for later in graph.ops[conv + 1:]:  # what the next ops made of it
        device[later.outputs[0]] = bytes(b ^ 1 for b in host[later.outputs[0]])
    layers = diff_layers(model, device, host)
    first = next(d for d in layers if not d.equal)
    assert first.index == conv and first.op == "CONV_2D" and first.kernel.startswith("arm_")
    assert (first.differing, first.max_steps, first.elements) == (2, 5, out.size)
    assert first.lut_key.startswith("conv2d/") and all(d.equal for d in layers[:conv + 1])

    device = dict(host)
    device[graph.inputs[0]] = bytes([host[graph.inputs[0]][0] ^ 0x80]) + host[graph.inputs[0]][1:]
    layers = diff_layers(model, device, host)
    assert layers[0].op == INPUT and layers[0].max_steps == 128 and all(d.equal for d in layers[1:])

    device = dict(host)
    device[graph.outputs[0]] = host[graph.outputs[0]][:-1]  # a tensor of another size
    assert diff_layers(model, device, host)[-1].verdict() == "sizes differ"


def test_the_deploy_report_lists_the_windows_that_differ_and_the_layers(tmp_path):
    from tinyhil.deploy.deployment import Deployment, compare_window, differing_windows
    from tinyhil.deploy.qat import Scores
    from tinyhil.measure.layers import LayerComparison, LayerDiff, OpAlone
    from tinyhil.nas.constraints import Profile
    from tinyhil.nas.engines import Targets
    from tinyhil.report.deployment import write_report
    from tinyhil.verdict import compare_output

    host = [bytes([0, 10, 250]), bytes([5, 6, 7]), bytes([1, 2, 3])]
    device = [bytes([0, 10, 250]), bytes([5, 9, 7]), bytes([1, 2, 4])]
    comparisons = [compare_output(d, h) for d, h in zip(device, host)]
    assert compare_window(None, [c.kind == "exact" for c in comparisons]) == 1  # the first that differs
    assert compare_window(2, [True] * 3) == 2 and compare_window(None, [True] * 3) == 0
    windows = differing_windows(comparisons, np.array([1, 2, 0]), np.array([1, 1, 2]), np.array([1, 1, 2]),
                                np.arange(3))
    assert [(w.window, w.max_steps, w.differing) for w in windows] == [(1, 3, 1), (2, 1, 1)]
    rows = (LayerDiff(0, INPUT, "", "", (0,), (1, 3), 3, 0, 0),
            LayerDiff(1, "CONV_2D", "conv2d/3x1x1-3x1x2/k1x1/s1x1/same/relu", "arm_convolve_1x1_s8_fast", (4,),
                      (1, 3, 1, 2), 6, 0, 0),
            LayerDiff(2, "MEAN", "", "TFLM reference_ops::QuantizedMeanOrSum", (5,), (1, 2), 2, 1, 1),
            LayerDiff(3, "FULLY_CONNECTED", "dense/2-3", "arm_fully_connected_s8", (6,), (1, 3), 3, 1, 3))
    layers = LayerComparison("m", "qemu-m4", "test window 1 of uci_har", rows, 500, 4, 1,
                             OpAlone(1, "MEAN", "TFLM reference_ops::QuantizedMeanOrSum", 2, 1, 1, True))
    scores = {k: Scores(0.9, 0.8) for k in ("float", "qat", "int8_host", "int8_device")}
    d = Deployment(str(tmp_path), "tinytnas", "qemu-m4", "uci_har", "abc", Targets(), Profile(1000, 2000, 3, 1.0),
                   25_000.0, (25_000.0,), 25_000_000, "qemu-icount", 1000, 2000, 9000, 9000, scores, 3, 1, 3, 3,
                   (), (), differing_windows=windows, layers_compared=layers)
    page = write_report([d], tmp_path / "report.html").read_text()
    assert "Test windows whose outputs differ (2)" in page
    assert f"tinyhil run {tmp_path}/model_int8.tflite --board qemu-m4 --compare-layers --data {tmp_path} " \
           "--test-window 1" in page
    assert page.count('<tr class="first">') == 1 and page.count('<tr class="differs">') == 1
    assert "first diverging op: 1 MEAN, 1 step(s), 1/2 (50.0%) differ" in page and "kernel difference" in page
    saved = json.loads(json.dumps(d.to_dict()))
    assert saved["layers_compared"]["first_diverging"] == 1 and saved["differing_windows"][0]["window"] == 1


def test_the_cli_refuses_an_input_it_cannot_choose(pooled_cnn, tmp_path):
    from typer.testing import CliRunner

    from tinyhil.cli import app

    (tmp_path / "short.bin").write_bytes(bytes(100))
    for args, message in (
            (["--test-window", "3"], "--test-window and --data go together"),
            (["--input", str(tmp_path / "short.bin"), "--test-window", "1", "--data", "uci_har"], "not both"),
            (["--input", str(tmp_path / "short.bin")], "100 bytes, layers_pooled_cnn takes 1152"),
            (["--input", str(tmp_path / "none.npy")], "no such file"),
            (["--report", str(tmp_path / "r.html")], "--report is the --compare-layers report")):
        result = CliRunner().invoke(app, ["run", str(pooled_cnn), *args], env={"COLUMNS": "300"})
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    result = CliRunner().invoke(app, ["deploy", str(tmp_path), "--test-window", "2"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "give both" in result.output


# ---- on the emulated board ---------------------------------------------------------

def perturbed(flatbuffer: bytes, op: int, delta: int) -> bytes:
    """The model with `delta` added to every bias of op `op`, in place."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(flatbuffer)
    model = schema.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    bias = graph.Tensors(graph.Operators(op).Inputs(2))
    values = model.Buffers(bias.Buffer()).DataAsNumpy().view(np.int32)
    values += delta  # a view into `data`
    return bytes(data)


@pytest.mark.device
def test_every_layer_equal_then_the_cli_report(pooled_cnn, tmp_path):
    from typer.testing import CliRunner

    from tinyhil.cli import app

    window = np.random.default_rng(5).standard_normal((128, 9)).astype(np.float32)
    np.save(tmp_path / "window.npy", window)
    report, js = tmp_path / "layers.html", tmp_path / "layers.json"
    result = CliRunner().invoke(app, ["run", str(pooled_cnn), "--repeats", "2", "--compare-layers", "--input",
                                      str(tmp_path / "window.npy"), "--report", str(report), "--json", str(js)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    model = TfliteModel.load(pooled_cnn)
    ops = len(model.ops)  # Keras' reshapes bring SHAPE, STRIDED_SLICE and PACK ops (int32 tensors) along
    assert ops >= 10 and f"every layer equal: all {ops} ops' outputs on qemu-m4" in result.output
    layers = json.loads(js.read_text())["layers"]
    assert layers["first_diverging"] is None and len(layers["layers"]) == ops + 1
    assert all(d["differing"] == 0 for d in layers["layers"]) and layers["requests"] == 1
    assert layers["layers"][0]["elements"] == 128 * 9 and json.loads(js.read_text())["input"].endswith("window.npy")
    page = report.read_text()
    assert page.count('<tr class="">') == ops + 1 and "<svg" in page
    assert model.quantize(window) == model.quantize(window.reshape(128, 1, 9))  # any shape of its size


@pytest.mark.device
def test_a_layer_changed_in_the_image_only_is_found_and_not_blamed_on_its_kernel(har_cnn):
    """The board runs a model whose second convolution has other biases than
    the host's: that op is the first to differ, and alone (the host's op, on
    the tensors it read on the board) it gives the host's output on the board:
    the difference is the image's, not the kernel's."""
    from tinyhil.device.boards import open_board
    from tinyhil.device.recovery import boot_with_recovery
    from tinyhil.image.firmware import build_image
    from tinyhil.image.sources import Benchmark, ImageSpec

    config = get_board("qemu-m4")
    model = TfliteModel.load(har_cnn)
    conv = first_op(model, "CONV_2D", after=first_op(model, "CONV_2D"))
    wrong = Benchmark("injected", perturbed(model.flatbuffer, conv, 3000), model.ops, model.input_bytes)
    image = build_image(ImageSpec(config.name, (wrong,)), config)
    with open_board(config) as board:
        boot_with_recovery(board, image)
        comparison, tensors = compare_on_board(board, model, model.random_input(1), "seed 1")
    first = comparison.first_diverging
    assert first.index == conv and first.op == "CONV_2D" and first.max_steps > 1
    assert all(d.equal for d in comparison.layers[:conv + 1])
    attributed = attribute(comparison, config, model, tensors, lambda: open_board(config))
    assert attributed.alone.index == conv and not attributed.alone.reproduced
    assert not attributed.alone.same_as_in_model
    assert "only in context" in attributed.summary() and f"op {conv} CONV_2D" in attributed.summary()


@pytest.mark.device
def test_a_kernel_that_rounds_otherwise_is_named(har_cnn):
    """TFLM's MEAN rounds some averages one step off TFLite's: on the inputs
    where the outputs differ, MEAN is the first op to, and alone it does again."""
    from tinyhil.device.boards import open_board
    from tinyhil.device.recovery import boot_with_recovery
    from tinyhil.image.firmware import build_image
    from tinyhil.measure.model import model_image

    config = get_board("qemu-m4")
    model = TfliteModel.load(har_cnn)
    mean = first_op(model, "MEAN")
    differing = []
    with open_board(config) as board:
        boot_with_recovery(board, build_image(model_image(model, config), config))
        for seed in range(12):
            comparison, tensors = compare_on_board(board, model, model.random_input(seed), f"seed {seed}")
            if not comparison.equal:
                differing.append((comparison, tensors))
    # the converter's calibration may move a scale by a float ulp from run to run, and then
    # a dense layer (CMSIS-NN's rounding) may be the first to differ for some input: one step too
    assert any(c.first_diverging.index == mean for c, _ in differing), "no input of 12 made MEAN round differently"
    assert all(c.first_diverging.max_steps == 1 for c, _ in differing)
    comparison, tensors = next((c, t) for c, t in differing if c.first_diverging.index == mean)
    attributed = attribute(comparison, config, model, tensors, lambda: open_board(config))
    alone = attributed.alone
    assert alone.reproduced and alone.same_as_in_model and alone.differing == comparison.first_diverging.differing
    assert "kernel difference" in attributed.summary() and "reference_ops::" in alone.kernel


@pytest.mark.device
def test_the_stream_survives_a_faulty_line(har_cnn):
    """Garbled, dropped, duplicated and stalled frames (both ways): every
    tensor still comes back as on a clean line, by asking again for what is missing."""
    from collections import Counter

    from tinyhil.device.boards import QemuBoard
    from tinyhil.device.fault_proxy import FaultPlan, FaultProxy
    from tinyhil.device.recovery import boot_with_recovery
    from tinyhil.image.firmware import build_image
    from tinyhil.measure.model import model_image

    config = get_board("qemu-m4")
    model = TfliteModel.load(har_cnn)
    proxy = FaultProxy(FaultPlan(seed=11, to_host=0.35, to_board=0.1, stall_s=0.3))
    board = QemuBoard(config, timeout=1.0)
    board.link = proxy
    faults, requests = Counter(), 0
    with board:
        proxy.enabled = False
        boot_with_recovery(board, build_image(model_image(model, config), config))
        for seed in range(3):
            x = model.random_input(seed)
            proxy.enabled = False
            clean, _, one = stream_tensors(board, model, x)
            assert one == 1
            before = Counter(proxy.faults)
            proxy.enabled = True
            faulty, capture, asked = stream_tensors(board, model, x)
            faults += Counter(proxy.faults) - before
            requests += asked
            assert faulty == clean  # every tensor, byte for byte
            assert capture.reply.units == len(model_graph(model).ops) + 1
    proxy.close()
    assert {"garble", "drop", "duplicate"} <= set(faults), faults
    assert requests > 3  # lost frames were asked for again
