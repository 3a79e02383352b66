"""The MicroNAS space as the paper and the authors' code have it: separate
bottleneck and block widths, skippable non-reducing cells, no branch drops
the bottleneck; the super-network's masks, skip and Eq. 2 gradients."""
from pathlib import Path

import numpy as np
import pytest

from tinyhil.spaces import make_space
from tinyhil.spaces.micronas import SensorFusionCell, SpaceError, build_architecture

ROOT = Path(__file__).resolve().parents[1]


def choices(space, **sf):
    """Smallest TR cells and the same Sensor-Fusion choice in every cell
    (skip only where a cell can be skipped)."""
    tr = [{"kernel": 3, "filters": 4}] * space.n_time_reduce
    cells = [c for c in space.cells if isinstance(c, SensorFusionCell)]
    base = {"bottleneck": 8, "filters": 8, "branches": [3], "residual": False, "skip": False} | sf
    return {"tr": tr, "sf": [base | {"skip": base["skip"] and c.skippable} for c in cells]}


def test_architecture_counts_are_the_papers():
    # UCI-HAR: 3 TR cells (3 kernels x 4 widths), 1 reducing + 2 skippable SF cells
    # (8 bottleneck x 8 block widths x 2^3 branches x residual, x skip)
    uci = make_space("micronas", 128, 9, 6)
    assert uci.architecture_count() == 12 ** 3 * 1024 * 2048 ** 2
    assert f"{uci.architecture_count():.1e}" == "7.4e+12"
    # SkodaR: 2 TR cells, 2 reducing + 4 skippable SF cells: the paper's "about 1e22"
    skoda = make_space("micronas", 64, 30, 11)
    assert skoda.architecture_count() == 12 ** 2 * 1024 ** 2 * 2048 ** 4
    assert 1e21 < skoda.architecture_count() < 1e22
    groups = uci.decision_groups()
    assert groups["sf0.bottleneck"] == groups["sf0.filters"] == 8
    assert "sf0.skip" not in groups and groups["sf1.skip"] == 2


def test_bottleneck_and_block_widths_are_separate():
    space = make_space("micronas", 32, 5, 3)
    arch = build_architecture(space, choices(space, bottleneck=16, filters=40, branches=[3, 7]))
    convs = [op for op in arch.ops if op.op == "conv2d"]
    bottleneck = [op for op in convs if op.kernel == (1, 5)][0]
    assert bottleneck.output_shape[-1] == 16
    branches = [op for op in convs if op.kernel in ((3, 1), (7, 1)) and op.strides == (1, 1)]
    assert {(op.input_shape[-1], op.output_shape[-1]) for op in branches} == {(16, 40)}


def test_no_branch_drops_the_bottleneck_and_keeps_the_residual():
    space = make_space("micronas", 32, 5, 3)
    arch = build_architecture(space, choices(space, branches=[], residual=False))
    kernels = [op.kernel for op in arch.ops if op.op == "conv2d"]
    assert (1, 5) not in kernels and (1, 3) not in kernels  # no bottleneck anywhere
    assert kernels.count((1, 1)) == 3 + 1  # each SF cell's residual, and the classifier


def test_skip_replaces_the_cell():
    space = make_space("micronas", 32, 5, 3)
    full = build_architecture(space, choices(space))
    skipped = build_architecture(space, choices(space, skip=True))
    # 32x5: one reducing cell (never skipped) and two skippable cells of 2 convs each
    assert len(full.nodes) - len(skipped.nodes) == 4
    head = [n for n in skipped.nodes if n.op.op == "conv2d" and n.op.output_shape[-1] == 3][0]
    assert head.op.input_shape[-1] == 8  # the reducing cell's width goes straight on
    bad = choices(space)
    bad["sf"][0]["skip"] = True
    with pytest.raises(SpaceError, match="cannot be skipped"):
        build_architecture(space, bad)


def test_space_command_prints_count_and_ops():
    from typer.testing import CliRunner

    from tinyhil.cli import app

    for shape, count, ops in (("128x9", "7.4e12 architectures", "511 ops"),
                              ("64x30", "2.7e21 architectures", "919 ops")):
        result = CliRunner().invoke(app, ["space", "micronas", "--input", shape, "--classes",
                                          "6" if shape == "128x9" else "11"])
        assert result.exit_code == 0, result.output
        assert count in result.output and ops in result.output


# ---- the super-network ----------------------------------------------------

def one_hot_weights(net, picks):
    import tensorflow as tf

    return {name: tf.one_hot(picks.get(name, 0), a.shape[0]) for name, a in net.alphas.items()}


def test_skip_passes_the_input_and_masks_cut_the_width():
    import tensorflow as tf

    from tinyhil.nas.micronas.supernet import Supernet

    space = make_space("micronas", 32, 5, 3)
    net = Supernet(space, None)
    x = tf.random.normal((2, 32, 5, 1))
    net(x, net.sample(1.0))
    cell = [c for c in net.cells if isinstance(c, SensorFusionCell)][1]
    h = tf.random.normal((2, 16, 3, space.sf_fmax))
    skip = one_hot_weights(net, {f"sf{cell.index}.skip": 1})
    assert np.allclose(net._sensor_fusion(cell, h, skip).numpy(), h.numpy())
    w = one_hot_weights(net, {f"sf{cell.index}.skip": 0, f"sf{cell.index}.filters": 2,
                              f"sf{cell.index}.branch3": 1})
    out = net._sensor_fusion(cell, h, w).numpy()
    assert np.abs(out[..., 24:]).max() == 0 and np.abs(out[..., :24]).max() > 0


def test_eq2_gradients_reach_both_width_groups_and_stop_without_a_branch():
    import tensorflow as tf

    from tinyhil.lut.table import Lut
    from tinyhil.nas.micronas.hardware import HardwareModel
    from tinyhil.nas.micronas.supernet import Supernet

    space = make_space("micronas", 128, 9, 6)
    lut = Lut.load(ROOT / "luts/qemu-m4/micronas-128x9-c6.csv")
    net = Supernet(space, HardwareModel(space, lut))

    def grads(picks):
        weights = {n: tf.Variable(w) for n, w in one_hot_weights(net, picks).items()}
        with tf.GradientTape() as tape:
            latency, _ = net.expected_hardware(weights)
        return dict(zip(weights, tape.gradient(latency, list(weights.values()))))

    on = grads({"sf0.branch5": 1, "sf0.bottleneck": 3, "sf0.filters": 5})
    # Eq. 2: the bottleneck's width is the bottleneck's output (HW column at the chosen
    # TR width, option 0) and the 5x1 branch's input (HW row at the block width, option 5)
    hw = net.hw.conv  # (output widths, input widths)
    expected = (hw["sf0.bottleneck"].latency[:, 0] + hw["sf0.conv5"].latency[5, :]) / net.hw.clock_hz * 1e3
    assert np.allclose(on["sf0.bottleneck"].numpy(), expected, rtol=1e-4)
    assert np.abs(on["sf0.filters"].numpy()).max() > 0
    off = grads({"sf0.bottleneck": 3, "sf0.filters": 5, "sf0.residual": 1})  # no branch
    assert np.abs(off["sf0.bottleneck"].numpy()).max() == 0  # the bottleneck is not run


def test_expected_hardware_is_the_lut_estimate_for_one_hot_choices():
    from tinyhil.estimate import lut_latency
    from tinyhil.lut.table import Lut
    from tinyhil.nas.micronas.hardware import HardwareModel
    from tinyhil.nas.micronas.search import extract
    from tinyhil.nas.micronas.supernet import Supernet

    space = make_space("micronas", 128, 9, 6)
    lut = Lut.load(ROOT / "luts/qemu-m4/micronas-128x9-c6.csv")
    net = Supernet(space, HardwareModel(space, lut))
    rng = np.random.default_rng(1)
    for _ in range(6):  # includes skipped cells and cells without branches
        for alpha in net.alphas.values():
            alpha.assign(rng.normal(0, 3, alpha.shape[0]))
        arch = extract(net, space)
        latency, _ = net.expected_hardware(net.sample(1.0, hard=True))
        assert float(latency) == pytest.approx(lut_latency(arch, lut) / lut.meta.clock_hz * 1e3, rel=1e-4)
