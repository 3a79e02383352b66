"""Whole architectures: sampling, Keras models, and a real validation run."""
import numpy as np
import pytest

from tinyhil.board_catalog import get_board
from tinyhil.measure.characterize import Characterizer
from tinyhil.spaces import make_space, sample_architecture
from tinyhil.spaces.arch import Architecture
from tinyhil.validate import validate


@pytest.mark.parametrize("name, shape", [("micronas", (128, 9, 6)), ("tinytnas", (187, 1, 5)),
                                         ("timenas", (100, 6, 4))])
def test_samples_cover_the_space_and_round_trip(name, shape):
    space = make_space(name, *shape)
    keys = {op.key for op in space.op_configs()}
    rng = np.random.default_rng(1)
    archs = [sample_architecture(space, rng) for _ in range(200)]
    assert all(op.key in keys for a in archs for op in a.ops)
    types = {op.op for a in archs for op in a.ops}
    assert types == {op.op for op in space.op_configs()}  # every op type shows up
    macs = sorted(a.macs for a in archs)
    assert macs[-1] > 20 * macs[0]  # small and large models
    for arch in archs[:20]:
        assert Architecture.from_dict(arch.to_dict()) == arch


def test_keras_model_follows_the_architecture():
    from tinyhil.models.whole_model import keras_model

    arch = sample_architecture(make_space("micronas", 32, 5, 3), np.random.default_rng(0))
    model = keras_model(arch)
    assert len(model.layers) == len(arch.nodes) + 1  # + the input layer
    assert tuple(model.output.shape) == (1, 3)


@pytest.mark.device
def test_validation_on_a_small_space(tmp_path):
    board = get_board("qemu-m4")
    luts = tmp_path / "luts"
    Characterizer(board, luts).run("micronas", 32, 5, 3)
    result = validate("micronas", 32, 5, 3, board, 6, luts, tmp_path / "out", seed=3)
    table = result.table
    assert len(table) == 6 and (table["status"] == "ok").all()
    assert result.lut_metrics.mape < 2 and result.lut_metrics.r2 > 0.999
    assert result.memory_max_error < 5
    assert (table["est_lut_cycles"] > 0).all() and (table["measured_cycles"] > 0).all()
    page = result.report_path.read_text()
    assert page.count('<svg ') == 4  # latency, residuals, per op type, memory
    # each architecture named in the latency and residual plots (LUT, proxy) and the memory plot (2 estimates)
    assert page.count("<title>#") == 6 * 6
    assert "R²" in page and str(table["arch_id"].iloc[0]) in page
    assert result.csv_path.read_text().splitlines()[0].startswith("arch_id,")


@pytest.mark.device
def test_arena_estimated_before_conversion_is_within_32_bytes_of_the_device(tmp_path):
    """MicroNAS networks with parallel branches, the committed JapaneseVowels
    LUT: the arena estimated from the architecture alone, as the search
    estimates it, against the TFLM arena each network used in QEMU (it was
    up to 4.5 KB off while the converter chose the op order)."""
    from tinyhil.project import project_dir
    from tinyhil.validate import sample_architectures

    archs = sample_architectures(make_space("micronas", 29, 12, 9), 8, seed=0)
    assert sum(any(op.op == "add" for op in a.ops) for a in archs) >= 4  # branches to order
    result = validate("micronas", 29, 12, 9, get_board("qemu-m4"), 8, project_dir() / "luts", tmp_path, seed=0)
    table = result.table
    assert (table["status"] == "ok").all()
    assert (table["est_arena_from_arch_bytes"] - table["arena_used"]).abs().max() <= 32
