"""Directly written single-op models against the converter's (the reference):
same graph, op versions, options, quantization scheme and CMSIS-NN kernel
path; the int8 model computes the float op; on the board, the same output as
the host interpreter and the converter model's instruction counts."""
import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tinyhil.errors import TinyhilError
from tinyhil.files import atomic_write, write_checksum
from tinyhil.models import single_op
from tinyhil.models.kernel_path import kernel_paths, operands_in_graph_order
from tinyhil.models.single_op import CONVERTER, DIRECT, chain_model, convert_op, write_chain, write_op
from tinyhil.models.tflite_model import TfliteModel
from tinyhil.models.tflite_writer import activation_quantization, conv_float, depthwise_float
from tinyhil.spaces import make_space, ops

# One op per kernel path and op type, with the paddings, strides, fused
# activations and shapes the search spaces use (and 3x3 / 1xN kernels).
CASES = {
    "conv-k3-s2-relu": ops.conv((128, 9, 1), 8, (3, 1), (2, 1)),
    "conv-k5-s1x2": ops.conv((64, 9, 12), 16, (5, 1), (1, 2)),
    "conv-1x1-fast": ops.conv((64, 9, 8), 16, (1, 1), activation="none"),
    "conv-1x1-odd-channels": ops.conv((100, 1, 6), 10, (1, 1)),
    "conv-1xn": ops.conv((1, 16, 4), 8, (1, 3)),
    "conv-valid": ops.conv((32, 5, 4), 8, (3, 3), padding="valid"),
    "depthwise-3x1": ops.depthwise((187, 1, 4), (3, 1)),
    "depthwise-3x3": ops.depthwise((16, 8, 6), (3, 3), activation="relu"),
    "dense-relu": ops.dense(600, 8),
    "dense-none": ops.dense(8, 4, "none"),
    "add": ops.add((64, 9, 8)),
    "max-pool": ops.pool(ops.MAX_POOL, (187, 1, 4), (2, 1)),
    "avg-pool-global": ops.global_avg_pool((16, 5, 8)),
    "softmax": ops.softmax(6),
    "reshape": ops.reshape((100, 1, 6), (600,)),
}


@pytest.fixture(scope="module")
def models():
    """name -> (op, converter's flatbuffer, direct flatbuffer)."""
    return {name: (op, convert_op(op), write_op(op)) for name, op in CASES.items()}


def unpack(flatbuffer: bytes):
    return schema.ModelT.InitFromPackedBuf(flatbuffer, 0)


def options(op) -> dict:
    return dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}


def tensor_form(graph, index: int):
    """What the runtime sees of a tensor, less its (weight-dependent) scales."""
    if index < 0:
        return None
    t = graph.tensors[index]
    q = t.quantization
    scales = 0 if q is None or q.scale is None else len(q.scale)
    weights_zero = None
    if t.buffer and scales > 1:  # per-channel constants are symmetric
        weights_zero = [int(z) for z in q.zeroPoint]
    return (tuple(int(d) for d in t.shape), t.type, scales, q.quantizedDimension if q else 0,
            weights_zero)


def quantization(graph, index: int):
    q = graph.tensors[index].quantization
    return [float(x) for x in q.scale], [int(x) for x in q.zeroPoint]


def activations(model) -> list:
    graph = model.subgraphs[0]
    return [tensor_form(graph, i) for i, t in enumerate(graph.tensors)
            if model.buffers[t.buffer].data is None]


def assert_same_graph(reference: bytes, direct: bytes):
    ref, new = unpack(reference), unpack(direct)
    codes = lambda m: [(c.builtinCode, c.deprecatedBuiltinCode, c.version) for c in m.operatorCodes]  # noqa: E731
    assert codes(new) == codes(ref)
    (ref_graph,), (new_graph,) = ref.subgraphs, new.subgraphs
    assert len(new_graph.operators) == len(ref_graph.operators)
    for ref_op, new_op in zip(ref_graph.operators, new_graph.operators):
        assert new_op.opcodeIndex == ref_op.opcodeIndex
        assert new_op.builtinOptionsType == ref_op.builtinOptionsType
        assert options(new_op) == options(ref_op)
        for ref_list, new_list in ((ref_op.inputs, new_op.inputs), (ref_op.outputs, new_op.outputs)):
            assert [tensor_form(new_graph, i) for i in new_list] == \
                   [tensor_form(ref_graph, i) for i in ref_list]
    for ref_list, new_list in ((ref_graph.inputs, new_graph.inputs), (ref_graph.outputs, new_graph.outputs)):
        assert [tensor_form(new_graph, i) for i in new_list] == [tensor_form(ref_graph, i) for i in ref_list]
    # TFLM plans the activation tensors in index order: the same order, the same forms
    assert activations(new) == activations(ref)
    assert kernel_paths(direct) == kernel_paths(reference)


@pytest.mark.parametrize("name", CASES)
def test_direct_model_has_the_converters_graph_and_kernel_path(models, name):
    op, reference, direct = models[name]
    assert_same_graph(reference, direct)
    # a single op's tensors in the converter's order: inputs, constants, output
    types = lambda flatbuffer: [t.type for t in unpack(flatbuffer).subgraphs[0].tensors]  # noqa: E731
    assert types(direct) == types(reference)
    ref_model = TfliteModel.from_bytes(reference, name)
    model = TfliteModel.from_bytes(direct, name)  # the host interpreter takes it
    assert model.ops == ref_model.ops == (single_op.BUILTIN[op.op],)
    # The same calibration samples: the inputs' quantization is the converter's, bit for bit.
    assert [(t.scale, t.zero_point) for t in model.inputs] == \
           [(t.scale, t.zero_point) for t in ref_model.inputs]
    if op.op in (ops.ADD, ops.MAX_POOL, ops.AVG_POOL, ops.SOFTMAX, ops.RESHAPE):  # no weights: all of it
        assert [(t.scale, t.zero_point) for t in model.outputs] == \
               [(t.scale, t.zero_point) for t in ref_model.outputs]
    if op.activation == "relu":  # the fused ReLU's range starts at 0
        assert model.outputs[0].zero_point == ref_model.outputs[0].zero_point == -128
    # the same kind of bias: int32 at input scale x weight scale per channel, or none
    graph = unpack(direct).subgraphs[0]
    operator = graph.operators[0]
    if op.op in (ops.CONV, ops.DEPTHWISE):
        bias_scales, _ = quantization(graph, operator.inputs[2])
        weight_scales, _ = quantization(graph, operator.inputs[1])
        input_scale = quantization(graph, operator.inputs[0])[0][0]
        expected = (np.float32(input_scale) * np.array(weight_scales, np.float32)).tolist()
        assert bias_scales == expected


def test_kernel_paths_cover_cmsis_nn_s_choices(models):
    """The cases exercise each path the dispatch can pick for these ops."""
    found = {kernel_paths(direct)[0] for _, _, direct in models.values()}
    assert {"arm_convolve_s8", "arm_convolve_1x1_s8_fast", "arm_convolve_1_x_n_s8",
            "arm_depthwise_conv_s8_opt", "arm_depthwise_conv_3x3_s8", "arm_fully_connected_s8",
            "arm_elementwise_add_s8", "arm_max_pool_s8", "arm_avgpool_s8",
            "arm_softmax_s8"} <= found


def weights(model, index: int) -> np.ndarray:
    t = model.subgraphs[0].tensors[index]
    return np.frombuffer(bytes(model.buffers[t.buffer].data), np.int8).reshape(tuple(t.shape))


@pytest.mark.parametrize("name", ["conv-k3-s2-relu", "conv-k5-s1x2", "conv-1x1-fast", "conv-valid",
                                  "depthwise-3x1", "depthwise-3x3", "dense-relu", "dense-none", "add"])
def test_direct_int8_model_computes_the_float_op(models, name):
    """Dequantized, the int8 model's output is the float op on its own
    dequantized weights and inputs, within the output's quantization: wrong
    scales, zero points, layouts or bias scales would miss by far more."""
    op, _, direct = models[name]
    model = TfliteModel.from_bytes(direct, name)
    parsed = unpack(direct)
    graph = parsed.subgraphs[0]
    rng = np.random.default_rng(3)
    raw = rng.integers(-128, 128, model.input_bytes, dtype=np.int8).tobytes()
    out_spec = model.outputs[0]
    got = (np.frombuffer(model.reference_output(raw), np.int8).astype(np.float32)
           - out_spec.zero_point) * out_spec.scale
    xs, offset = [], 0
    for spec in model.inputs:
        q = np.frombuffer(raw, np.int8, spec.nbytes, offset).reshape(spec.shape).astype(np.float32)
        xs.append((q - spec.zero_point) * spec.scale)
        offset += spec.nbytes
    operator = graph.operators[0]
    if op.op == ops.ADD:
        expected = xs[0] + xs[1]
    else:
        w_scales = np.array(quantization(graph, operator.inputs[1])[0], np.float32)
        w = weights(parsed, operator.inputs[1]).astype(np.float32)
        if op.op == ops.CONV:  # OHWI -> HWIO
            expected = conv_float(xs[0], (w * w_scales[:, None, None, None]).transpose(1, 2, 3, 0), op)
        elif op.op == ops.DEPTHWISE:  # 1HWC -> HWC1
            expected = depthwise_float(xs[0], (w * w_scales)[0][..., None], op)
        else:
            expected = xs[0] @ (w * w_scales[0]).T
            expected = np.maximum(expected, 0) if op.activation == "relu" else expected
    low = (-128 - out_spec.zero_point) * out_spec.scale
    high = (127 - out_spec.zero_point) * out_spec.scale
    expected = np.clip(expected.reshape(got.shape), low, high)  # saturation is the int8 model's right
    assert np.max(np.abs(got - expected)) <= 1.01 * out_spec.scale


def test_overhead_chain_matches_the_converters():
    for length in (1, 4):
        reference, direct = chain_model(length), write_chain(length)
        assert_same_graph(reference, direct)
        ref_model, model = TfliteModel.from_bytes(reference, "r"), TfliteModel.from_bytes(direct, "d")
        assert model.ops == ref_model.ops == ("CONV_2D",) * length
        assert model.inputs[0].scale == ref_model.inputs[0].scale


def test_activation_quantization_by_hand():
    q = activation_quantization(0.0, 2.55)  # a ReLU's range: zero at the bottom
    assert int(q.zero_point[0]) == -128 and q.scale[0] == pytest.approx(0.01)
    q = activation_quantization(0.5, 2.0)  # stretched to hold 0
    assert int(q.zero_point[0]) == -128 and q.scale[0] == pytest.approx(2.0 / 255)
    q = activation_quantization(-1.0, 3.0)  # 0 lands at -128 + 63.75: nudged to -64
    assert int(q.zero_point[0]) == -64 and q.scale[0] == pytest.approx(4.0 / 255)
    q = activation_quantization(0.0, 0.0)  # all zeros
    assert (q.scale[0], int(q.zero_point[0])) == (1.0, -128)


def operand_forms(flatbuffer: bytes) -> list:
    """Per operand of the single op, as it reaches the kernel: which graph
    input it is (so which calibration sample and which seeded input bytes),
    the name the signature gives it, its shape and its quantization."""
    graph = unpack(flatbuffer).subgraphs[0]
    graph_inputs = [int(i) for i in graph.inputs]
    signature = {int(e.tensorIndex): e.name for e in unpack(flatbuffer).signatureDefs[0].inputs}
    forms = []
    for index in graph.operators[0].inputs:
        index = int(index)
        if index not in graph_inputs:
            continue
        scales, zero_points = quantization(graph, index)
        forms.append((graph_inputs.index(index), signature[index], tuple(int(d) for d in graph.tensors[index].shape),
                      scales, zero_points))
    return forms


def test_direct_add_reads_its_inputs_as_the_converters_add(models):
    """The converter lists a model's inputs by the fingerprints of their names
    and calibrates (and tinyhil feeds the seeded bytes) in that order: with
    Keras' counting default names an ADD read its inputs swapped in some
    worker states and not in others, and counted up to 0.6 % apart from the
    direct model. Converted after any number of earlier Keras tensors, the
    ADD's operands are the direct model's: same graph input, name, shape and
    quantization, operand by operand, and the same output quantization."""
    import tensorflow as tf

    op, _, direct = models["add"]
    expected = operand_forms(direct)
    assert [position for position, *_ in expected] == [0, 1]  # the writer: operands in graph order
    assert len({(tuple(scales), tuple(zeros)) for *_, scales, zeros in expected}) == 2  # two samples, two ranges
    for earlier_tensors in range(8):  # the default names' counter moves on with each Keras tensor
        for _ in range(earlier_tensors):
            tf.keras.layers.Input((1,))
        converted = convert_op(op)
        assert operand_forms(converted) == expected, f"after {earlier_tensors} more Keras tensors"
        assert operands_in_graph_order(converted)
        ref, new = TfliteModel.from_bytes(converted, "ref"), TfliteModel.from_bytes(direct, "new")
        assert [(t.scale, t.zero_point) for t in new.outputs] == [(t.scale, t.zero_point) for t in ref.outputs]


def test_a_cached_add_that_reads_its_inputs_swapped_is_made_again(tmp_path, monkeypatch):
    """A converter ADD cached before the inputs were named may read them
    swapped: it is made again (and said so), not measured."""
    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path))
    op = CASES["add"]
    model = unpack(write_op(op))
    model.subgraphs[0].operators[0].inputs = model.subgraphs[0].operators[0].inputs[::-1]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    swapped = bytes(builder.Output())
    assert not operands_in_graph_order(swapped)
    path = single_op.model_path(op.key)
    path.parent.mkdir(parents=True)
    write_checksum(path, swapped)
    atomic_write(path, swapped)
    repaired = []
    assert single_op.cached_models([op.key], repaired) == {}
    assert not path.exists() and "inputs are read swapped" in repaired[0]
    # a cached ADD in the operands' order is used as it is
    write_checksum(path, write_op(op))
    atomic_write(path, write_op(op))
    assert single_op.cached_models([op.key], repaired) == {op.key: path}


def test_every_op_of_the_spaces_is_written():
    """Every op configuration the three spaces enumerate (smaller inputs)
    gets a model the host interpreter runs, holding just its op."""
    seen = set()
    for space, window, channels, classes in (("micronas", 32, 5, 3), ("tinytnas", 40, 1, 3),
                                             ("timenas", 24, 3, 4)):
        for op in make_space(space, window, channels, classes).op_configs():
            kind = (op.op, op.kernel, op.strides, op.padding, op.activation)
            if kind in seen:
                continue
            seen.add(kind)
            model = TfliteModel.from_bytes(write_op(op), op.key)
            assert model.ops == (single_op.BUILTIN[op.op],)
            assert model.inputs[0].shape[1:] == op.input_shape
            assert model.outputs[0].shape[1:] == op.output_shape
    assert len(seen) > 10


def test_makers_cache_apart_and_unknown_maker_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path))
    op = CASES["softmax"]
    direct = single_op.generate_models([op], maker=DIRECT)[op.key]
    assert direct.read_bytes() == write_op(op)
    assert not single_op.model_path(op.key).exists()  # the converter's cache slot is untouched
    with pytest.raises(TinyhilError, match="unknown model maker 'keras'.*direct, converter"):
        single_op.generate_models([op], maker="keras")
    assert CONVERTER in single_op.MODEL_MAKERS


@pytest.mark.device
def test_direct_models_run_on_the_board_as_the_converters(tmp_path):
    """One op per kernel path, measured on the emulated board with each
    maker's models: the board's outputs equal the host interpreter's, and
    the direct models' instruction counts, kernel counts and arena bytes are
    the converter models' (within 0.5 %), as are the interpreter overheads."""
    from tinyhil.board_catalog import get_board
    from tinyhil.lut.table import OK, read_meta, read_rows
    from tinyhil.measure.characterize import Characterizer

    op_list = list(CASES.values())
    rows, metas = {}, {}
    for maker in (CONVERTER, DIRECT):
        Characterizer(get_board("qemu-m4"), tmp_path / maker, model_maker=maker).measure_ops(op_list)
        store = tmp_path / maker / "qemu-m4" / "ops.csv"
        rows[maker], metas[maker] = read_rows(store), read_meta(store)
    direct, converter = rows[DIRECT], rows[CONVERTER].loc[rows[DIRECT].index]
    assert len(direct) == len(op_list)
    assert (direct["status"] == OK).all(), direct.loc[direct["status"] != OK, "status"].to_dict()
    # the converter's ADD reads its inputs in graph order, as the direct model's does
    assert all(operands_in_graph_order(single_op.model_path(op.key).read_bytes()) for op in op_list)
    for column in ("cycles", "kernel_cycles"):
        difference = (direct[column] - converter[column]).abs() / converter[column]
        assert difference.max() <= 0.005, difference.sort_values().tail(3).to_dict()
    assert (direct["arena_bytes"] == converter["arena_bytes"]).all()
    assert metas[DIRECT].invoke_cycles == pytest.approx(metas[CONVERTER].invoke_cycles, rel=0.005)
    assert metas[DIRECT].dispatch_cycles == pytest.approx(metas[CONVERTER].dispatch_cycles, rel=0.005)
    assert metas[DIRECT].extra["chain_arena_bytes"] == metas[CONVERTER].extra["chain_arena_bytes"]


def test_models_prepared_by_workers_come_in_order_with_the_hosts_outputs(tmp_path, monkeypatch):
    """prepare_direct_models: made, read and run on the host in worker
    processes, in the ops' order, equal to what this process makes; a caller
    that stops taking them leaves no worker behind."""
    import multiprocessing
    import time

    from tinyhil.models.single_op import CHUNK_OPS, prepare_direct_models, prepare_model
    from tinyhil.protocol import seeded_bytes

    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path))
    every = make_space("timenas", 100, 6, 4).op_configs()
    op_list = every[:3 * CHUNK_OPS] + [op for op in every if op.op != ops.CONV][:2 * CHUNK_OPS]
    seconds = []
    prepared = list(prepare_direct_models(op_list, workers=2, on_seconds=seconds.append))
    assert [p.op for p in prepared] == op_list
    assert len(seconds) == -(-len(op_list) // CHUNK_OPS) and all(s > 0 for s in seconds)
    for p in prepared[::5]:
        here = prepare_model(p.op)
        assert p.model == here.model and p.path == here.path
        assert p.reference == here.reference == here.model.reference_output(
            seeded_bytes(single_op.op_seed(p.op), here.model.input_bytes))
    stream = prepare_direct_models(every[100:400], workers=2)
    next(stream)
    stream.close()
    deadline = time.monotonic() + 30
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children()


def test_models_are_prepared_from_a_plain_script(tmp_path):
    """A script without `if __name__ == "__main__"` (the seeds' walk-throughs
    are such) may prepare models: the spawned workers do not run it again."""
    import os
    import subprocess
    import sys

    script = tmp_path / "walk_through.py"
    script.write_text("from tinyhil.models.single_op import prepare_direct_models\n"
                      "from tinyhil.spaces import make_space\n"
                      "ops = make_space('timenas', 100, 6, 4).op_configs()[:40]\n"
                      "print(len(list(prepare_direct_models(ops, workers=2))))\n")
    env = dict(os.environ, TINYHIL_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "40"
