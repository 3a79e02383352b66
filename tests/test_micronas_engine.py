"""The MicroNAS engine: masks, the super-network's shapes and costs, the
hardware losses, extraction, and a short real search."""
import numpy as np
import pytest

from tinyhil.board_catalog import get_board
from tinyhil.errors import TinyhilError
from tinyhil.lut.table import Lut
from tinyhil.measure.characterize import Characterizer
from tinyhil.nas import data as datasets
from tinyhil.nas.micronas.search import (
    SearchConfig,
    extract,
    hardware_loss,
    priced_weights,
    search,
    smallest_architecture,
    smallest_choice,
)
from tinyhil.nas.micronas.supernet import filter_masks
from tinyhil.spaces import make_space
from tinyhil.spaces.micronas import build_architecture


def test_filter_masks_keep_the_first_g_times_i_filters():
    masks = filter_masks((4, 8, 12, 16), 16)
    assert masks.shape == (4, 16)
    assert masks.sum(axis=1).tolist() == [4, 8, 12, 16]
    assert masks[1, :8].all() and not masks[1, 8:].any()
    # a decision group's weights blend masks: 0.5 on 4 and 0.5 on 12 filters
    blended = np.array([0.5, 0, 0.5, 0]) @ masks
    assert blended[:4].tolist() == [1.0] * 4 and blended[4:12].tolist() == [0.5] * 8


def test_hardware_loss_switches_and_signs():
    import tensorflow as tf

    assert float(hardware_loss(tf.constant(50.0), None, 2.0)) == 0.0  # switched off
    above = float(hardware_loss(tf.constant(80.0), 40.0, 2.0))
    assert above == pytest.approx(2 * np.log(2))
    below = float(hardware_loss(tf.constant(20.0), 40.0, 2.0))
    assert -0.01 < below < 0  # the authors' small slope below the target


def test_hardware_is_priced_on_the_argmax_network_with_gradients_to_every_alpha():
    import tensorflow as tf

    from tinyhil.nas.micronas.supernet import Supernet

    net = Supernet(make_space("micronas", 32, 5, 3), None)
    rng = np.random.default_rng(1)
    for alpha in net.alphas.values():
        alpha.assign(rng.normal(size=alpha.shape).astype(np.float32))
    sampled = net.sample(1.0)
    with tf.GradientTape() as tape:
        argmax = priced_weights(net, sampled, "argmax")
        cost = tf.add_n([tf.reduce_sum(w * tf.range(w.shape[0], dtype=tf.float32)) for w in argmax.values()])
    hard = net.sample(1.0, hard=True)
    for name, w in argmax.items():  # forward: exactly the network extract() returns
        assert w.numpy().tolist() == hard[name].numpy().tolist()
    gradients = tape.gradient(cost, net.alpha_variables)
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in gradients)  # backward: softmax(alpha)
    on_sample = priced_weights(net, sampled, "sample")
    assert all(on_sample[n].numpy().argmax() == sampled[n].numpy().argmax() for n in sampled)


@pytest.fixture(scope="module")
def lut_32x5(tmp_path_factory):
    luts = tmp_path_factory.mktemp("luts")
    result = Characterizer(get_board("qemu-m4"), luts).run("micronas", 32, 5, 3)
    return Lut.load(result.lut_path)


@pytest.mark.parametrize("shape, cells", [((32, 5), (1, 3)), ((64, 9), (2, 3)), ((40, 12), (1, 3)),
                                          ((128, 30), (3, 6))])
def test_supernet_cell_shapes(shape, cells):
    import tensorflow as tf

    from tinyhil.nas.micronas.supernet import Supernet
    from tinyhil.spaces.micronas import SensorFusionCell, TimeReduceCell

    space = make_space("micronas", *shape, 4)
    net = Supernet(space, None)
    assert (space.n_time_reduce, space.n_sensor_fusion) == cells
    x = tf.zeros((2, *shape, 1))
    h = x
    for cell in net.cells:  # every cell's output has the space's planned shape
        w = net.sample(1.0)
        if isinstance(cell, TimeReduceCell):
            mask = tf.tensordot(w[f"tr{cell.index}.filters"], net.tr_masks, 1)
            h = tf.add_n([net._conv(c, h, mask, False) for c in cell.convs])
            assert tuple(h.shape[1:3]) == cell.convs[0].op(1, 4).output_shape[:2]
        else:
            h = net._sensor_fusion(cell, h, w)
            assert tuple(h.shape[1:3]) == cell.branches[0].input_shape[:2]
    assert net(x, net.sample(0.5)).shape == (2, 4)
    # only stride-1 cells can be skipped (the identity needs matching shapes)
    assert all((f"sf{c.index}.skip" in net.alphas) == (c.stride == 1)
               for c in net.cells if isinstance(c, SensorFusionCell))


@pytest.mark.device
def test_expected_hardware_matches_the_estimators_for_one_hot_choices(lut_32x5):
    import tensorflow as tf

    from tinyhil.estimate import lut_latency
    from tinyhil.nas.micronas.hardware import HardwareModel
    from tinyhil.nas.micronas.supernet import Supernet

    space = make_space("micronas", 32, 5, 3)
    net = Supernet(space, HardwareModel(space, lut_32x5))
    rng = np.random.default_rng(0)
    for alpha in net.alphas.values():
        alpha.assign(rng.normal(0, 3, alpha.shape[0]))
    arch = extract(net, space)
    lat_ms, mem = net.expected_hardware(net.sample(1.0, hard=True))
    assert float(lat_ms) == pytest.approx(lut_latency(arch, lut_32x5) / 25e6 * 1e3, rel=1e-4)
    assert float(mem) > 0
    # the smallest network's options (the search's fallback weights) price as the smallest network
    smallest = {name: tf.one_hot(option, net.alphas[name].shape[0]) for name, option in smallest_choice(space).items()}
    lat_ms, _ = net.expected_hardware(smallest)
    assert float(lat_ms) == pytest.approx(lut_latency(smallest_architecture(space), lut_32x5) / 25e6 * 1e3, rel=1e-4)


@pytest.mark.device
def test_short_real_search_meets_its_targets(lut_32x5):
    space = make_space("micronas", 32, 5, 3)
    splits = datasets.synthetic(n=180, window=32, channels=5, classes=3, seed=1)
    small = smallest_architecture(space)
    from tinyhil.estimate import arena_estimate, lut_latency

    floor_ms = lut_latency(small, lut_32x5) / 25e6 * 1e3
    config = SearchConfig(lat_target_ms=floor_ms * 3, mem_target_bytes=arena_estimate(small, lut_32x5) * 2,
                          epochs=4, batch_size=32)
    result = search(splits, space, lut_32x5, config)
    assert len(result.history) == 4
    assert result.estimated_latency_ms <= config.lat_target_ms
    assert result.estimated_arena_bytes <= config.mem_target_bytes
    assert result.architecture == build_architecture(space, result.architecture.choices)
    # the curves name the network returned: the epoch whose argmax network it is, after the warm-up
    assert result.warmup_epochs == 4 // 3
    if result.chosen_epoch is None:
        assert result.architecture == smallest_architecture(space)
    else:
        assert result.warmup_epochs < result.chosen_epoch <= 4
        assert result.val_accuracy == result.history[result.chosen_epoch - 1].val_accuracy


@pytest.mark.device
def test_impossible_targets_say_what_is_achievable(lut_32x5):
    space = make_space("micronas", 32, 5, 3)
    splits = datasets.synthetic(n=60, window=32, channels=5, classes=3)
    with pytest.raises(TinyhilError, match=r"smallest network takes [\d.]+ ms.*needs \d+ B"):
        search(splits, space, lut_32x5, SearchConfig(lat_target_ms=0.001, mem_target_bytes=10))


def test_data_loaders_and_their_errors(tmp_path):
    x = np.random.default_rng(0).standard_normal((30, 16, 3)).astype("float32")
    y = np.arange(30) % 3
    np.savez(tmp_path / "ok.npz", features=x, labels=y)
    splits = datasets.load(str(tmp_path / "ok.npz"))
    assert splits.classes == 3 and splits.window == 16 and splits.channels == 3
    assert len(splits.x_train) + len(splits.x_val) + len(splits.x_test) == 30
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(datasets.DataError, match="not a readable .npz"):
        datasets.load(str(tmp_path / "corrupt.npz"))
    np.savez(tmp_path / "nan.npz", features=np.full((4, 8, 2), np.nan), labels=[0, 1, 0, 1])
    with pytest.raises(datasets.DataError, match="NaN"):
        datasets.load(str(tmp_path / "nan.npz"))
    np.savez(tmp_path / "short.npz", features=x, labels=y[:10])
    with pytest.raises(datasets.DataError, match="30 windows but 10 labels"):
        datasets.load(str(tmp_path / "short.npz"))
    np.savez(tmp_path / "obj.npz", features=np.array([{"a": 1}] * 3, dtype=object), labels=[0, 1, 0])
    with pytest.raises(datasets.DataError):
        datasets.load(str(tmp_path / "obj.npz"))  # pickled objects are never loaded


def test_basic_motions_from_aeon():
    splits = datasets.load("basic_motions")
    assert (splits.window, splits.channels, splits.classes) == (100, 6, 4)
    assert np.isfinite(splits.x_train).all()


@pytest.mark.device
def test_violations_use_the_full_estimates(lut_32x5):
    from tinyhil.estimate import arena_estimate, lut_latency
    from tinyhil.nas.micronas.search import violations

    small = smallest_architecture(make_space("micronas", 32, 5, 3))
    ms, arena = lut_latency(small, lut_32x5) / 25e6 * 1e3, arena_estimate(small, lut_32x5)
    assert violations(small, lut_32x5, SearchConfig(ms * 1.01, arena + 1)) == {}
    assert violations(small, lut_32x5, SearchConfig(ms * 0.99, arena - 1)) == {
        "latency_ms": pytest.approx(ms), "arena_bytes": arena}
    assert violations(small, lut_32x5, SearchConfig(None, None)) == {}
