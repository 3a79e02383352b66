"""Calibration of emulated LUTs to a physical board: the reference file, each
model on synthetic data with a known answer, the splits, the sampler, and a
calibrated LUT used exactly as a measured one."""
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tinyhil.benchmarks.calibrate import split_rows
from tinyhil.cli import app
from tinyhil.estimate import MacsProxy, arena_estimate, lut_latency
from tinyhil.lut.calibration.cross_validation import (
    MIN_ROWS,
    fit_calibration,
    group_splits,
    kfold_splits,
    out_of_fold,
)
from tinyhil.lut.calibration.errors import CalibrationError
from tinyhil.lut.calibration.features import geometry_features, kernel_path, op_features
from tinyhil.lut.calibration.models import (
    Features,
    FeaturesNnls,
    Geometry,
    Line,
    MacsLine,
    PerTypeLine,
    SharedFeatures,
    legacy_models,
)
from tinyhil.lut.reference import ReferenceError, ReferenceRow, ReferenceSet, read_reference
from tinyhil.lut.sampling import choose_ops, parse_fraction, type_quotas
from tinyhil.lut.table import Lut, read_rows
from tinyhil.measure.calibrate_board import calibrate
from tinyhil.spaces import make_space, ops, sample_architecture

HEADER = "op,input_shape,output_shape,kernel,strides,filters,padding,activation,cycles_total,cycles_kernel,arena_used\n"


@pytest.fixture(scope="module")
def f446re(root):
    path = root.parent / "shared" / "data" / "nucleo_f446re-reference.csv"
    if not path.exists():
        pytest.skip(f"no {path}")
    return path


# --- the reference file ---------------------------------------------------

def test_reference_file_parses_into_op_configs(f446re):
    ref = read_reference(f446re)
    assert len(ref.rows) == 573
    first = ref.rows[0]
    assert first.line == 2 and first.cycles_total == 782342 and first.cycles_kernel == 767828
    assert first.op == ops.conv((64, 30, 1), 4, (3, 1), (2, 1), "same", "relu")
    adds = [r.op for r in ref.rows if r.op.op == ops.ADD]
    assert len(adds) == 8 and adds[0] == ops.add((16, 15, 8))
    assert len({op.key for op in ref.ops}) == 573


def write(tmp_path, body: str):
    path = tmp_path / "ref.csv"
    path.write_text(HEADER + body)
    return path


BAD_ROWS = (
    'conv2d,"[1, 16, 8, 8]","[1, 16, 8, 16]","[3, 1]","[1, 1]",16,same,relu,1000,900,10\n'
    'lstm,"[1, 16, 8]","[1, 16, 8]",null,null,,,,1000,900,10\n'
    'conv2d,"[1, 16, 8, 8]","[1, 16, 8, 17]","[3, 1]","[1, 1]",16,same,relu,1000,900,10\n'
    'add,"[[1, 4, 4, 2], [1, 4, 2, 2]]","[1, 4, 4, 2]",null,null,,,,1000,900,10\n'
    'conv2d,"[1, 16, 8, 8]","[1, 16, 8, 16]","[3, 1]","[1, 1]",16,same,relu,1200,900,10\n'
    'conv2d,"[1, 16, 8, 8]","[1, 16, 8, 16]","[3, 1]","[1, 1]",16,same,relu,oops,900,10\n'
    'conv2d,"[1, 16, 8, 4]","[1, 16, 8, 16]","[3, 1]","[1, 1]",16,same,relu,,900,10\n'
    'conv2d,"[1, 16, 8, 4]","[1, 16, 8, 8]","[3, 1]","[1, 1]",8,same,relu,900,800,x\n'
    'add,"[[1, 4, 4, 2], [1, 4, 4, 2]]","[1, 4, 4, 2]",null,null,,,,500,400,10\n')


def test_reference_rows_are_named_with_why_and_left_out(tmp_path):
    path = write(tmp_path, BAD_ROWS)
    ref = read_reference(path)
    assert [r.line for r in ref.rows] == [2, 10]  # the good rows are used
    problems = "\n".join(ref.skipped)
    assert len(ref.skipped) == 7
    assert f"{path}:3: column op: 'lstm' is not an op tinyhil can build" in problems
    assert f"{path}:4: column output_shape:" in problems and "[16, 8, 17]" in problems
    assert f"{path}:5: column input_shape:" in problems and "no broadcasting" in problems
    assert f"{path}:6: columns op..activation: the same op as line 2" in problems
    assert f"{path}:7: column cycles_total: 'oops' is not a number" in problems
    assert f"{path}:8: column cycles_total: 'empty' is not a positive number" in problems
    assert f"{path}:9: column arena_used: 'x' is not a number" in problems
    assert f"{path}:2:" not in problems and f"{path}:10:" not in problems


def test_strict_refuses_a_reference_with_a_bad_row(tmp_path):
    path = write(tmp_path, BAD_ROWS)
    with pytest.raises(ReferenceError) as error:
        read_reference(path, strict=True)
    message = str(error.value)
    assert "7 row(s) cannot be used (--strict refuses the file)" in message
    assert f"{path}:3: column op" in message and f"{path}:9: column arena_used" in message
    nothing = write(tmp_path, 'lstm,"[1, 16, 8]","[1, 16, 8]",null,null,,,,1000,900,10\n')
    with pytest.raises(ReferenceError, match="no row is usable"):
        read_reference(nothing)


def test_calibrate_names_the_rows_it_left_out(calibrated, f446re, tmp_path):
    _, emulated = calibrated
    text = f446re.read_text().splitlines()
    text[5] = text[5].replace(",same,relu,", ",same,gelu,")
    text.insert(9, 'conv2d,"[1, 16, 15, 64]","[1, 16, 15, 8]","[1, 1]","[1, 1]",8,same,relu,,,,,')
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(text) + "\n")
    cli = ["calibrate", "--emulated", str(emulated.path), "--reference", str(broken), "--board", "nucleo_f446re",
           "--lut", str(tmp_path / "b.csv")]
    result = CliRunner().invoke(app, cli, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "left out" in result.output and f"{broken}:6: column activation: 'gelu'" in result.output
    assert f"{broken}:10: column cycles_total" in result.output
    assert "572 reference rows" in result.output  # 573 - gelu; the duplicate's empty cycles left out
    refused = CliRunner().invoke(app, cli + ["--strict"], env={"COLUMNS": "300"})
    assert refused.exit_code == 2 and "--strict refuses the file" in refused.output


def test_reference_without_needed_columns(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("op,input_shape\nconv2d,[1]\n")
    with pytest.raises(ReferenceError, match="is not a reference CSV .no columns output_shape, cycles_total"):
        read_reference(path)


# --- models on synthetic data with known answers --------------------------

def synthetic(n=60, seed=0) -> pd.DataFrame:
    return synthetic_ops(n, seed)[1]


def synthetic_ops(n=60, seed=0) -> tuple[list, pd.DataFrame]:
    """Random ops of three kernel paths with made-up emulated counts."""
    rng = np.random.default_rng(seed)
    rows, made = [], []
    for i in range(n):
        cin, cout = (int(c) for c in rng.choice([4, 8, 16, 24, 32, 48, 64], 2))
        kind = i % 3
        if kind == 0:
            op = ops.conv((16, 15, cin), cout, (int(rng.choice([3, 5, 7])), 1))
        elif kind == 1:
            op = ops.conv((16, 15, cin), cout, (1, 1))
        else:
            op = ops.add((int(rng.choice([8, 16, 30])), int(rng.choice([5, 15])), cin))
        if op.key in {r["key"] for r in rows}:
            continue
        emu = float(op.macs * rng.uniform(1.5, 3.0) + op.output_bytes * rng.uniform(5, 20) + 5000)
        rows.append(dict(key=op.key, **op_features(op), emu_cycles=emu, emu_kernel=emu - 69))
        made.append(op)
    return made, pd.DataFrame(rows).set_index("key", drop=False)


def check_exact(model, frame, truth):
    model.clip = False  # the regression alone (clipping is tested apart)
    fit, test = frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2:]
    fitted = model.fit(fit.assign(ref_cycles=truth[: len(fit)]), "emu_cycles", "ref_cycles")
    np.testing.assert_allclose(fitted.predict(test), truth[len(fit):], rtol=1e-6)
    return fitted


def test_line_recovers_a_known_line():
    frame = synthetic()
    truth = 1.53 * frame["emu_cycles"].to_numpy() + 42_000
    fitted = check_exact(Line(), frame, truth)
    assert fitted.coef["emulated"] == pytest.approx(1.53) and fitted.coef["1"] == pytest.approx(42_000)


def test_macs_line_recovers_a_known_line():
    frame = synthetic()
    fitted = check_exact(MacsLine(), frame, 3.2 * frame["macs"].to_numpy() + 9_000)
    assert fitted.coef["macs"] == pytest.approx(3.2)


def test_per_type_line_recovers_one_line_per_kernel_path():
    frame = synthetic()
    slope = frame["op"].map({"conv2d": 1.6, "conv2d-1x1": 1.47, "add": 1.7}).to_numpy()
    base = frame["op"].map({"conv2d": 14_000, "conv2d-1x1": 15_000, "add": 13_000}).to_numpy()
    fitted = check_exact(PerTypeLine(), frame, slope * frame["emu_cycles"].to_numpy() + base)
    assert fitted.coef["emulated[conv2d-1x1]"] == pytest.approx(1.47)
    assert fitted.coef["1[add]"] == pytest.approx(13_000)


def feature_truth(frame, own_terms: bool):
    slope = frame["op"].map({"conv2d": 1.55, "conv2d-1x1": 1.45, "add": 1.7}).to_numpy()
    per_output = frame["op"].map({"conv2d": 9.0, "conv2d-1x1": 4.0, "add": 2.0}).to_numpy() if own_terms else 6.0
    return (slope * frame["emu_cycles"].to_numpy() + 14_500 + per_output * frame["out_elems"].to_numpy()
            + 0.3 * frame["macs"].to_numpy() + 25.0 * frame["out_pixels"].to_numpy())


def test_shared_features_recover_known_terms():
    frame = synthetic()
    fitted = check_exact(SharedFeatures(), frame, feature_truth(frame, own_terms=False))
    assert fitted.coef["out_elems"] == pytest.approx(6.0, rel=1e-5)
    assert fitted.coef["emulated[add]"] == pytest.approx(1.7, rel=1e-6)


def test_features_recover_terms_of_each_kernel_path():
    frame = synthetic(300)
    fitted = check_exact(Features(), frame, feature_truth(frame, own_terms=True))
    assert fitted.coef["out_elems[conv2d-1x1]"] == pytest.approx(4.0, rel=1e-5)
    assert fitted.coef["out_elems[conv2d]"] == pytest.approx(9.0, rel=1e-5)


def test_nnls_recovers_non_negative_terms_and_never_goes_below_zero():
    frame = synthetic(300)
    fitted = check_exact(FeaturesNnls(), frame, feature_truth(frame, own_terms=True))
    assert min(fitted.coef.values()) >= 0
    truth = 1.5 * frame["emu_cycles"].to_numpy() - 3.0 * frame["out_elems"].to_numpy() + 20_000
    negative = FeaturesNnls().fit(frame.assign(ref_cycles=truth), "emu_cycles", "ref_cycles")
    assert min(negative.coef.values()) >= 0  # the constraint holds where the truth breaks it


def test_an_op_type_never_fitted_gets_the_fixed_cost_and_the_median_ratio():
    frame = synthetic()
    kernel = 1.5 * frame["emu_kernel"].to_numpy()
    truth = frame.assign(ref_kernel=kernel, ref_cycles=kernel + 14_000)
    adds = (frame["op"] == "add").to_numpy()
    for model in (Features(), Line(), PerTypeLine()):
        fitted = model.fit(truth[~adds], "emu_cycles", "ref_cycles")
        assert fitted.fallback.base_board == pytest.approx(14_000)
        np.testing.assert_allclose(fitted.predict(frame[adds]), truth["ref_cycles"][adds], rtol=1e-9)


def test_predictions_stay_within_the_ratios_each_path_showed():
    frame = synthetic(300)
    truth = feature_truth(frame, own_terms=True)
    fit = frame.iloc[:20].assign(ref_cycles=truth[:20])
    predicted = Features().fit(fit, "emu_cycles", "ref_cycles").predict(frame)
    ratio = pd.Series(predicted / frame["emu_cycles"].to_numpy(), frame.index)
    seen = (fit["ref_cycles"] / fit["emu_cycles"]).groupby(fit["op"])  # no ref_kernel: no fixed part
    for path, r in ratio.groupby(frame["op"]):
        assert seen.min()[path] - 1e-9 <= r.min() and r.max() <= seen.max()[path] + 1e-9


def test_kernel_paths():
    assert kernel_path(ops.conv((16, 15, 8), 8, (1, 1))) == "conv2d-1x1"
    assert kernel_path(ops.conv((64, 30, 1), 8, (1, 1))) == "conv2d"  # cin not a multiple of 4
    assert kernel_path(ops.conv((16, 30, 8), 8, (1, 2), (1, 2))) == "conv2d"
    assert kernel_path(ops.add((4, 4, 4))) == "add"


# --- cross-validation and splits: no row both fitted and predicted --------

@pytest.mark.parametrize("n,folds", [(4, 5), (29, 5), (57, 5), (10, 10)])
def test_kfold_holds_each_row_out_once_and_never_fits_it_there(n, folds):
    splits = kfold_splits(n, folds, seed=3)
    held = np.concatenate([h for _, h in splits])
    assert sorted(held) == list(range(n))
    for fit, held_out in splits:
        assert not set(fit) & set(held_out)
        assert sorted(np.concatenate([fit, held_out])) == list(range(n))


def test_cross_validation_predicts_rows_it_did_not_fit():
    """A row whose target is absurd is predicted from the others: its own CV
    error stays huge, which it could not if it had been fitted."""
    frame = synthetic()
    truth = 1.5 * frame["emu_cycles"].to_numpy() + 10_000
    truth[7] *= 3
    calibration = fit_calibration(frame.assign(ref_cycles=truth, ref_kernel=np.nan), models=[Line()])
    assert calibration.cv["line"].max_error > 60


def test_leave_one_shape_out_never_fits_the_shape_it_predicts():
    groups = np.array(["a", "b", "a", "c", "b", "a"])
    splits = group_splits(groups)
    assert len(splits) == 3
    assert sorted(np.concatenate([h for _, h in splits])) == list(range(6))
    for fit, held_out in splits:
        assert len(set(groups[held_out])) == 1 and not set(groups[fit]) & set(groups[held_out])
    with pytest.raises(CalibrationError, match="1 shape"):
        group_splits(["a", "a"])


def shaped_frame():
    """Convs of six input shapes whose board cost has a per-shape term that
    random folds learn from the shape's other rows and grouped folds cannot."""
    rng = np.random.default_rng(1)
    rows = []
    for t in (8, 16, 24, 32, 40, 48):
        for cout in (4, 8, 12, 16, 20, 24, 28, 32):
            op = ops.conv((t, 5, 8), cout, (3, 1))
            emu = float(op.macs * 2.0 + 5000)
            rows.append(dict(key=op.key, **op_features(op), emu_cycles=emu, emu_kernel=emu - 69))
    frame = pd.DataFrame(rows).set_index("key", drop=False)
    shape_term = frame["group"].map({g: rng.uniform(0.9, 1.1) for g in frame["group"].unique()}).to_numpy()
    return frame.assign(ref_cycles=1.5 * frame["emu_cycles"].to_numpy() * shape_term, ref_kernel=np.nan)


def test_grouped_error_is_larger_when_shapes_differ_and_is_the_one_chosen_on():
    frame = shaped_frame()
    calibration = fit_calibration(frame, models=[Line(), PerTypeLine()])
    assert calibration.shapes == 6 and calibration.chosen_by == "grouped"
    assert set(calibration.grouped) == set(calibration.cv) == {"line", "per-op-type"}
    # a shape's own rows are never in the fit that predicts them: out-of-fold equals a
    # fit on the other shapes, row for row
    held = out_of_fold(Line(), frame, group_splits(frame["group"]))
    first = (frame["group"] == frame["group"].iloc[0]).to_numpy()
    alone = Line().fit(frame[~first], "emu_cycles", "ref_cycles").predict(frame[first])
    np.testing.assert_allclose(held[first], alone)
    assert calibration.expected == calibration.grouped[calibration.model.name]
    random = fit_calibration(frame, models=[Line()], select_by="random")
    assert random.expected == random.cv["line"]
    assert fit_calibration(frame.assign(group="one"), models=[Line()]).chosen_by == "random"  # nothing to group


def test_geometry_counts():
    # a 1x15 kernel with stride 2 over 15 sensors, TFLite's same padding: 7 taps before
    first = geometry_features(ops.conv((16, 15, 8), 8, (1, 15), (1, 2)))
    assert first["im2col_calls"] == 16 * 88 and first["pad_taps"] == (16 * 8 * 15 - 16 * 88) * 8
    assert first["in_tail"] == 0 and first["tail_macs"] == 0
    layer = geometry_features(ops.conv((64, 30, 1), 4, (3, 1), (2, 1)))
    assert layer["in_tail"] == layer["im2col_calls"] and layer["tail_macs"] == 32 * 30 * 4 * 3
    assert geometry_features(ops.conv((16, 15, 56), 8, (1, 1)))["tail_macs"] == 16 * 15 * 8 * 8  # 56 = 3x16 + 8
    assert set(geometry_features(ops.add((4, 4, 4))).values()) == {0.0}


def test_flash_refetch_counts_weight_lines_the_flash_cache_cannot_hold():
    from tinyhil.lut.calibration.features import flash_refetch_lines, weights_working_set

    wide = ops.conv((16, 15, 64), 8, (1, 1))  # 1x1: two rows of 64 B = 8 lines, the whole cache
    assert weights_working_set(wide) == 128
    assert flash_refetch_lines(wide, 128) == wide.macs / 32 == geometry_features(wide, 128)["flash_refetch"]
    assert flash_refetch_lines(ops.conv((16, 15, 56), 64, (1, 1)), 128) == 0  # 7 lines: cached
    assert flash_refetch_lines(wide, 0) == 0 and flash_refetch_lines(wide, 8192) == 0  # no cache modelled; a big one
    small = ops.conv((64, 30, 1), 4, (3, 1), (2, 1))  # im2col: all 4 filters of 3 B stay cached
    assert weights_working_set(small) == 12 and flash_refetch_lines(small, 128) == 0
    big = ops.conv((32, 30, 8), 8, (3, 1), (2, 1))  # 8 filters x 24 B streamed for each pixel pair
    assert flash_refetch_lines(big, 128) == big.macs / 32
    assert geometry_features(ops.add((4, 4, 4)), 128)["flash_refetch"] == 0


def test_a_board_term_carries_its_cost_to_a_path_whose_fitted_rows_never_paid_it():
    """Flash misses cost the same whichever kernel asks: with one coefficient
    for all paths, the 1x1 shape that alone overflows the cache is predicted
    from the im2col convolutions that did (and did not) overflow it."""
    rows = []
    for cin in (8, 16, 32, 64):
        for cout in (8, 16, 32, 48, 64):
            rows.append(ops.conv((16, 15, cin), cout, (1, 1)))
    for cin in (1, 4, 8):
        for cout in (4, 8, 16):
            for k in ((3, 1), (5, 1)):
                rows.append(ops.conv((32, 30, cin), cout, k, (2, 1)))
    frame = pd.DataFrame([{"key": op.key, **op_features(op, 128), "emu_cycles": float(op.macs * 2 + 5000),
                           "emu_kernel": float(op.macs * 2 + 4931)} for op in rows]).set_index("key", drop=False)
    frame["ref_cycles"] = 1.5 * frame["emu_cycles"] + 5.0 * frame["flash_refetch"] + 14_000
    wide = (frame["group"] == "16x15x64").to_numpy()
    assert frame.loc[wide, "flash_refetch"].gt(0).all() and frame.loc[(frame["op"] == "conv2d-1x1") & ~wide,
                                                                        "flash_refetch"].eq(0).all()
    truth = frame["ref_cycles"].to_numpy()
    splits = group_splits(frame["group"])
    shared = out_of_fold(Geometry(("flash_refetch",)), frame, splits)
    without = out_of_fold(Geometry(), frame, splits)
    assert np.abs(shared / truth - 1)[wide].max() < 1e-6
    assert np.abs(without / truth - 1)[wide].max() > 0.01


def test_shape_weighted_quantile_counts_each_shape_once():
    from tinyhil.lut.calibration.bounds import upper_quantile

    values = np.concatenate([np.zeros(49), np.arange(1, 10)])
    groups = ["big"] * 49 + [f"s{i}" for i in range(9)]
    assert upper_quantile(values, 0.5) == 0  # 49 rows of one shape outvote the 9 others
    assert upper_quantile(values, 0.5, groups) == 5  # 10 shapes + the new one: rank 5.5 of 11
    assert upper_quantile(values, 0.99, groups) == 9
    one_each = np.arange(1, 101)
    assert upper_quantile(one_each, 0.9, [str(v) for v in one_each]) == upper_quantile(one_each, 0.9) == 91


def test_geometry_terms_are_chosen_by_the_grouped_error():
    """A board cost per padded tap, which no other term carries: grouped
    selection takes pad_taps and the geometry model then predicts unseen shapes."""
    rows = []
    for t in (8, 16, 24, 32):
        for s in (5, 9, 15):
            for k in ((3, 1), (1, 3), (1, 5), (5, 1)):
                for cout in (4, 8, 16):
                    op = ops.conv((t, s, 4), cout, k)
                    emu = float(op.macs * 2.0 + 5000)
                    rows.append(dict(key=op.key, **op_features(op), emu_cycles=emu, emu_kernel=emu - 69))
    frame = pd.DataFrame(rows).set_index("key", drop=False)
    frame["ref_cycles"] = 1.5 * frame["emu_cycles"] + 40.0 * frame["pad_taps"] + 14_000
    frame["ref_kernel"] = frame["ref_cycles"] - 14_000
    calibration = fit_calibration(frame, models=legacy_models() + [Geometry()])
    assert "pad_taps" in calibration.model.terms and calibration.model.name == "features+geometry"
    assert calibration.grouped["features+geometry"].max_error < 1e-3
    assert calibration.grouped["features"].max_error > 0.5


def per_call_frame(board_cost):
    """1x1 convolutions of one pixel count (16x15, as in the F446RE reference)
    and im2col convolutions of several; `board_cost(frame)`: the board's
    cycles beyond 1.5 x the emulated count."""
    made = [ops.conv((16, 15, cin), cout, (1, 1)) for cin in (8, 16, 32) for cout in (8, 16, 24)] + \
           [ops.conv((t, s, cin), cout, k, (2, 1)) for t in (16, 32, 64) for s in (5, 15) for cin in (4, 8)
            for cout in (4, 8) for k in ((3, 1), (5, 1))]
    rng = np.random.default_rng(3)  # counts no sum of the size terms reproduces
    frame = pd.DataFrame([{"key": op.key, **op_features(op), "emu_cycles": float(op.macs * rng.uniform(1.5, 3)
                                                                                    + op.output_bytes * 9 + 5000)}
                          for op in made])
    frame = frame.set_index("key", drop=False).assign(emu_kernel=lambda f: f["emu_cycles"] - 69)
    frame["ref_cycles"] = 1.5 * frame["emu_cycles"] + board_cost(frame)
    frame["ref_kernel"] = frame["ref_cycles"] - 14_000
    return frame


def test_a_paths_fixed_cost_is_read_per_call_where_the_grouped_error_says_so():
    """The board pays each kernel path a fixed cost per call. The 1x1 rows
    all have 240 output pixels, so a cost per pixel fits them as well; the
    im2col rows, of many pixel counts, tell the two apart, and grouped
    cross-validation takes `calls`: a small 1x1 convolution of 80 pixels (a
    classifier head) then gets the whole cost, not a third of it."""
    from tinyhil.lut.calibration.cross_validation import select_geometry

    cost = lambda f: np.where(f["op"] == "conv2d-1x1", 6_000.0, 2_500.0) + 14_000  # noqa: E731
    frame = per_call_frame(cost)
    assert frame.loc[frame["op"] == "conv2d-1x1", "out_pixels"].nunique() == 1
    terms, steps = select_geometry(frame, group_splits(frame["group"]))
    assert "calls" in terms and steps[-1][0].endswith("calls") and steps[-1][1] < 1e-6
    head = ops.conv((16, 5, 8), 6, (1, 1), activation="none")
    row = pd.DataFrame([{"key": head.key, **op_features(head), "emu_cycles": float(head.macs * 2 + head.output_bytes
                                                                                      * 9 + 5000)}])
    row["emu_kernel"] = row["emu_cycles"] - 69
    truth = 1.5 * row["emu_cycles"].iloc[0] + 6_000 + 14_000
    per_call = Geometry(terms).fit(frame, "emu_cycles", "ref_cycles").predict(row)[0]
    per_pixel = Geometry(tuple(t for t in terms if t != "calls")).fit(frame, "emu_cycles", "ref_cycles").predict(row)[0]
    assert per_call == pytest.approx(truth, rel=1e-6)
    # per pixel, the 1x1 path's 3,500 cycles over the shared cost shrink to 80/240 of themselves (5 % low)
    assert truth - per_pixel == pytest.approx(3_500 * (1 - 80 / 240), rel=1e-4)
    # a board whose fixed cost does grow with the pixels: the grouped error keeps the cost per pixel
    per_pixel_frame = per_call_frame(lambda f: 25.0 * f["out_pixels"] + 14_000)
    assert "calls" not in select_geometry(per_pixel_frame, group_splits(per_pixel_frame["group"]))[0]


def test_bounds_are_upper_quantiles_of_held_out_excess_per_op_type():
    import math

    from scipy import stats

    from tinyhil.lut.calibration.bounds import Bounds, upper_quantile

    assert upper_quantile(np.arange(1, 20), 0.95) == 19  # ceil(20 x 0.95) = 19th of 19
    assert upper_quantile(np.arange(1, 101), 0.90) == 91
    rng = np.random.default_rng(0)
    paths = np.array(["conv2d"] * 150 + ["conv2d-1x1"] * 50 + ["add"] * 100 + ["dense"] * 8 + ["softmax"] * 3)
    predicted = np.full(len(paths), 1000.0)
    dense = np.array([0.01, -0.02, 0.03, 0.0, 0.05, -0.01, 0.02, 0.04])
    measured = predicted * (1 + np.concatenate([rng.uniform(-0.01, 0.01, 200), rng.uniform(-0.04, 0.04, 100),
                                                dense, [0.5, 0.5, 0.5]]))
    bounds = Bounds.fit(paths, predicted, measured)  # no shapes given: the levels are the names'
    assert bounds.levels == {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
    excess = measured / predicted - 1
    # an op type of enough rows: its own rank (the 1x1 convolutions are convolutions)
    assert bounds.fraction("conv2d") == bounds.fraction("conv2d-1x1") == upper_quantile(excess[:200], 0.95)
    assert bounds.fraction("add") == upper_quantile(excess[200:300], 0.95)
    assert 0.035 < bounds.fraction("add") < 0.04 and 0.0085 < bounds.fraction("conv2d") < 0.01
    # 8 rows (too few to rank a p95): the Student-t prediction bound at every level
    t_bound = lambda q: dense.mean() + stats.t.ppf(q, 7) * dense.std(ddof=1) * math.sqrt(1 + 1 / 8)  # noqa: E731
    assert [bounds.fraction("dense", name) for name in ("p90", "p95", "p99")] == pytest.approx(
        [t_bound(0.90), t_bound(0.95), t_bound(0.99)])
    assert t_bound(0.9) < t_bound(0.95) < t_bound(0.99)  # three bounds, not one largest value
    # 3 rows: the pooled bound, or their own largest excess when larger
    assert bounds.fraction("softmax") == pytest.approx(0.5)
    # an op type without reference rows: at least every type's bound
    assert bounds.fraction("never-seen") == max(b["p95"] for b in bounds.by_type.values())
    for kind in ("conv2d", "add", "dense", "never-seen"):
        at = [bounds.fraction(kind, name) for name in ("p50", "p90", "p95", "p99")]
        assert at == sorted(at)
    again = Bounds.from_dict(bounds.to_dict())
    assert again.fraction("add") == pytest.approx(bounds.fraction("add"), abs=1e-5) and again.levels == bounds.levels
    # a LUT calibrated when bounds were per kernel path keeps its 1x1 bound
    old = Bounds.from_dict({"by_path": {"conv2d": {"p95": 0.01}, "conv2d-1x1": {"p95": 0.03}}, "fallback": {"p95": 0.03}})
    assert old.fraction("conv2d-1x1") == 0.03 and old.fraction("conv2d") == 0.01
    with pytest.raises(CalibrationError, match="p96"):
        bounds.fraction("add", "p96")
    pessimistic = Bounds.fit(paths[:200], predicted[:200], predicted[:200] * 0.9)
    assert pessimistic.fraction("conv2d") == 0  # a bound is never below the prediction


def test_the_fallback_bound_is_the_fallback_ratios_error_on_an_op_type_left_out():
    """An op type the fit never saw is priced by the median ratio of the
    others: its bound is how far that ratio missed each reference type when
    that type was left out, and never below a seen type's bound."""
    from tinyhil.lut.calibration.bounds import Bounds, unseen_type_excess

    frame = synthetic(90)
    kernel = frame["emu_kernel"].to_numpy() * np.where(frame["op"] == "add", 1.8, 1.5)  # adds: 20 % more a count
    frame = frame.assign(ref_kernel=kernel, ref_cycles=kernel + 14_000)
    types, found = unseen_type_excess(frame)
    assert set(types) == {"conv2d", "add"}  # op types, the 1x1 convolutions with the others
    adds = frame["op"].to_numpy() == "add"
    # the convolutions' fixed invoke cost plus their ratio, 1.5
    fallback = 14_000 + 1.5 * frame["emu_kernel"][adds]
    assert found[types == "add"] == pytest.approx(frame["ref_cycles"][adds] / fallback - 1)
    assert 0.1 < found.max() < 0.2
    bounds = Bounds.fit(frame["op"], frame["ref_cycles"] / 1.001, frame["ref_cycles"], unseen=(types, found))
    # two op types: no rank below the largest
    assert bounds.fraction("softmax") == bounds.fraction("softmax", "p90") == found.max() > bounds.fraction("add")


def test_rows_above_bounds_take_every_bound_from_other_shapes():
    from tinyhil.lut.calibration.bounds import rows_above_bounds

    frame = shaped_frame()
    predicted = frame["ref_cycles"].to_numpy() / 1.001
    frame.loc[frame["group"] == frame["group"].iloc[0], "ref_cycles"] *= 1.05  # one shape runs slow
    above = rows_above_bounds(frame, predicted)
    first = (frame["group"] == frame["group"].iloc[0]).to_numpy()
    # the slow shape's own excess never raised its bound: all its rows are above it, at every level
    for name in ("p90", "p95", "p99"):
        assert above[name][first].all() and not above[name][~first].any()


def test_coverage_under_leave_one_shape_out_matches_the_bounds_names():
    """Leaving one shape out, the share of its rows above each bound (taken
    from the other shapes) is what the name says: rows that err alone need
    the plain quantile; where a few shapes err together above the others,
    the plain p95 leaves more than 5 % of the rows above it, and its level is
    raised until it does not."""
    from tinyhil.lut.calibration.bounds import _shapes_above, calibrated_level, rows_above_bounds

    rng = np.random.default_rng(0)
    groups = np.repeat([f"s{i}" for i in range(40)], 3)
    values = rng.normal(0, 0.01, len(groups))  # rows that err alone
    types = np.array(["conv2d"] * len(values))
    for q in (0.90, 0.95):
        assert calibrated_level(types, values, groups, q) == pytest.approx(q, abs=(1 - q) / 2)
    frame = pd.DataFrame({"op": types, "group": groups, "ref_cycles": 1000 * (1 + values)})
    above = rows_above_bounds(frame, np.full(len(frame), 1000.0))  # the figure bench calibrate prints
    assert above["p90"].mean() == pytest.approx(0.10, abs=0.05) and above["p95"].mean() == pytest.approx(0.05, abs=0.035)
    assert above["p99"].mean() <= above["p95"].mean() <= above["p90"].mean()
    # 50 shapes of 2 rows within 1 %, three of 4 rows that run 2.0, 2.1 and 2.2 % over
    groups = np.array([f"s{i}" for i in range(50) for _ in range(2)] + [f"b{i}" for i in range(3) for _ in range(4)])
    values = np.concatenate([np.linspace(0, 0.01, 100), np.repeat([0.020, 0.021, 0.022], 4)])
    types = np.array(["conv2d"] * len(values))
    assert _shapes_above(types, values, groups, 0.95).mean() == pytest.approx(8 / 112)  # two of them above
    level = calibrated_level(types, values, groups, 0.95)
    assert 0.95 < level and _shapes_above(types, values, groups, level).mean() == pytest.approx(4 / 112)


def arena_frame(board_arena):
    made = [ops.conv((t, 5, c), 8, (3, 1)) for t in (8, 16, 32) for c in (4, 8, 16)] + \
           [ops.add((t, 5, c)) for t in (8, 16) for c in (4, 8)]
    frame = pd.DataFrame([dict(key=op.key, **op_features(op), emu_arena=float(op.input_bytes * op.n_inputs
                                                                              + op.output_bytes + 500))
                          for op in made]).set_index("key", drop=False)
    return frame.assign(ref_arena=board_arena(frame))


def test_arena_is_emulated_bytes_plus_an_offset_per_op_type():
    from tinyhil.lut.calibration.arena import ArenaModel

    frame = arena_frame(lambda f: f["emu_arena"] + np.where(f["op"] == "add", 224, 176))
    model = ArenaModel.fit(frame)
    assert model.kind == "offset" and model.by_type == {"conv2d": 176, "add": 224}
    assert model.grouped_max_error_pct == 0 and model.grouped_max_error_other_pct > 0.5  # a ratio misses
    # an op type without rows: the median of the types, each once (9 convolutions do not outvote the adds)
    assert model.per_model_bytes == 176 and model.default == 200
    np.testing.assert_array_equal(model.predict(["conv2d-1x1", "softmax"], [1000, 50]), [1176, 250])
    proportional = ArenaModel.fit(arena_frame(lambda f: f["emu_arena"] * 1.02))
    assert proportional.kind == "ratio" and proportional.by_type["conv2d"] == pytest.approx(1.02)
    assert proportional.per_model_bytes == 0
    assert ArenaModel.fit(frame.assign(ref_arena=np.nan)) is None


@pytest.mark.parametrize("sampler", ["spread", "random"])
def test_bench_split_is_disjoint_and_complete(sampler):
    op_list, frame = synthetic_ops()
    reference = ReferenceSet(None, tuple(ReferenceRow(i + 2, op, 1.0) for i, op in enumerate(op_list)))
    fitted, predicted = split_rows(frame, reference, 0.1, 1, sampler)
    assert len(fitted) == round(0.1 * len(frame)) and not set(fitted) & set(predicted)
    assert set(fitted) | set(predicted) == set(frame.index)


def test_too_few_rows_to_fit():
    frame = synthetic().iloc[: MIN_ROWS - 1]
    with pytest.raises(CalibrationError, match=f"needs at least {MIN_ROWS}.*--sample"):
        fit_calibration(frame.assign(ref_cycles=1.0, ref_kernel=np.nan))


# --- the sampler ----------------------------------------------------------

def test_sampler_spans_kernel_paths_and_sizes(f446re):
    op_list = read_reference(f446re).ops
    chosen = choose_ops(op_list, 29, seed=0)
    assert len({op.key for op in chosen}) == 29
    paths = pd.Series([kernel_path(op) for op in chosen]).value_counts()
    assert set(paths.index) == {"conv2d", "conv2d-1x1", "add"}
    assert paths.min() >= Features().min_type_rows  # enough for each path's own terms
    assert max(op.macs for op in op_list) in {op.macs for op in chosen}  # the largest is in
    kernels = {op.kernel for op in chosen if op.op == ops.CONV}
    assert len(kernels) >= 5  # shapes unlike each other, not 20 of one kind
    assert choose_ops(op_list, 29, seed=0) == chosen  # reproducible
    assert choose_ops(op_list, 29, seed=1) != chosen


def test_quotas_and_fractions():
    assert sum(type_quotas({"a": 500, "b": 60, "c": 8}, 57).values()) == 57
    assert type_quotas({"a": 500, "b": 60, "c": 8}, 3) == {"a": 1, "b": 1, "c": 1}
    assert type_quotas({"a": 500, "b": 2}, 20)["b"] == 2
    assert parse_fraction("5%", 573) == 29 and parse_fraction("40", 573) == 40
    with pytest.raises(Exception, match="percentage"):
        parse_fraction("five", 10)


def test_characterize_a_sample_on_a_physical_board_needs_its_port(tmp_path):
    result = CliRunner().invoke(app, ["characterize", "--space", "micronas", "--input", "64x30",
                                      "--classes", "6", "--board", "nucleo_f446re", "--sample", "5%",
                                      "--luts", str(tmp_path)])
    assert result.exit_code == 2
    assert "no --port was given" in result.output and "--port /dev/ttyACM0" in result.output
    assert not (tmp_path / "nucleo_f446re" / "ops.csv").exists()


# --- a calibrated LUT, used as a measured one ----------------------------

@pytest.fixture(scope="module")
def calibrated(root, f446re, tmp_path_factory):
    """The committed qemu-m4 LUTs (which hold the reference ops) calibrated to the F446RE."""
    luts = tmp_path_factory.mktemp("luts")
    shutil.copytree(root / "luts" / "qemu-m4", luts / "qemu-m4")
    emulated = luts / "qemu-m4" / "micronas-128x9-c6.csv"
    out = luts / "nucleo_f446re" / "micronas-128x9-c6.csv"
    return calibrate(emulated, f446re, "nucleo_f446re", out), Lut.load(emulated)


def test_calibrated_lut_says_what_it_is(calibrated):
    result, emulated = calibrated
    assert result.measured_now == 0  # every reference op is in the committed store
    lut = Lut.load(result.out)
    meta = lut.meta
    assert meta.board == "nucleo_f446re" and meta.counter == "dwt-cycles" and meta.clock_hz == 180_000_000
    info = meta.extra["calibration"]
    assert info["from_board"] == "qemu-m4" and info["reference_rows"] == 573
    assert info["model"] in result.calibration.cv and info["expected_mape_pct"] < 3
    assert meta.extra["chain_arena_bytes"] == emulated.meta.extra["chain_arena_bytes"]
    assert 14_000 < meta.invoke_cycles + meta.dispatch_cycles < 15_000  # the board's overhead, measured
    # the emulated net dispatch (-22: dispatch less the profiler hook inside its kernels) is not a
    # board cost: the board's kernels are totals less the single-op overhead, with no hook in them
    assert emulated.meta.dispatch_cycles < 0 and meta.dispatch_cycles == 0
    assert meta.invoke_cycles == pytest.approx(result.calibration.overhead, abs=0.1)
    assert list(lut.rows.index) == list(emulated.rows.index)
    ratio = lut.rows["kernel_cycles"] / emulated.rows["kernel_cycles"]
    assert ratio.between(1.3, 2.5).all(), ratio.describe()  # board cycles, not instructions
    overhead = lut.rows["cycles"] - lut.rows["kernel_cycles"]
    assert overhead.between(13_000, 16_000).all()  # the board's invoke cost, as the reference has it
    assert {"softmax", "avg_pool2d"} <= set(info["paths_without_reference"])
    # the F446RE's flash data cache: 1x1 convolutions from 64 channels overflow it, grouped CV takes the term
    assert info["flash_cache_bytes"] == 128 and "flash_refetch" in info["geometry_terms"]
    assert info["expected_max_error_pct"] <= 4 and info["rows_above_bound_pct"] <= 5
    # leaving one shape out, the share of its rows above each bound from the other shapes, near each name's
    assert info["bound_coverage_pct"]["p95"] == info["rows_above_bound_pct"] <= 5 + 2
    assert info["bound_coverage_pct"]["p99"] <= 1 + 1 and 10 - 3 <= info["bound_coverage_pct"]["p90"] <= 10 + 3
    arena = info["arena"]
    assert arena["kind"] == "offset" and arena["by_type"] == {"add": 224, "conv2d": 176}  # the reference's
    # op types without reference rows: the median of the types (200), the per-model part counted once (176)
    assert arena["default"] == 200 and arena["per_model_bytes"] == 176 and arena["grouped_max_error_pct"] == 0
    offset = lut.rows["op"].map(arena["by_type"]).fillna(200)
    assert (lut.rows["arena_bytes"] == emulated.rows["arena_bytes"] + offset).all()


def test_an_op_type_the_fit_never_saw_is_warned_about_and_gets_the_wider_bound(calibrated):
    from tinyhil.lut.calibration.board_lut import calibration_warnings, lut_bounds

    result, _ = calibrated
    lut = Lut.load(result.out)
    info = lut.meta.extra["calibration"]
    unseen = info["paths_without_reference"]
    assert set(unseen) == {"avg_pool2d", "reshape", "softmax"}  # the reference has convolutions and adds only
    (warning,) = info["warnings"]
    assert "no reference row on nucleo_f446re for avg_pool2d (1 row), reshape (1 row), softmax (1 row)" in warning
    assert "rough ratio" in warning and warning in result.warnings  # what `calibrate` prints
    bounds = lut_bounds(lut.meta)
    for path in unseen:
        assert bounds.fraction(path) == bounds.fallback["p95"] > bounds.fraction("conv2d")
        assert bounds.fraction(path) >= max(b["p95"] for b in bounds.by_type.values())
    assert f"+{bounds.fallback['p95']:.1%}" in warning
    assert calibration_warnings(lut.meta) == [warning]
    softmax = [op for op in lut.rows.index if op.startswith("softmax")]
    model_warning = calibration_warnings(lut.meta, ["conv2d", "softmax", "softmax", "add"])
    assert len(softmax) == 1 and "softmax (2 ops)" in model_warning[0] and "avg_pool2d" not in model_warning[0]
    assert calibration_warnings(lut.meta, ["conv2d", "add"]) == []
    out = CliRunner().invoke(app, ["lut", "show", str(result.out), "--rows", "0"], env={"COLUMNS": "400"})
    assert out.exit_code == 0 and "warning: no reference row on nucleo_f446re for avg_pool2d" in out.output


def test_latency_at_the_bound(calibrated):
    from tinyhil.lut.calibration.board_lut import lut_bounds, priced_at
    from tinyhil.lut.calibration.features import kernel_path

    result, emulated = calibrated
    lut = Lut.load(result.out)
    info = lut.meta.extra["calibration"]
    assert info["bound"] == "p95" and 0 <= info["rows_above_bound_pct"] <= 100
    assert info["rows_above_bound_pct"] == pytest.approx(result.calibration.above_bound * 100, abs=1e-3)
    bounds = lut_bounds(lut.meta)
    arch = sample_architecture(make_space("micronas", 128, 9, 6), np.random.default_rng(1))
    ops_ = arch.runtime().ops
    margin = sum(bounds.fraction(kernel_path(op)) * float(lut.row(op)["cycles"]) for op in ops_)
    point, at_bound = lut_latency(arch, lut), lut_latency(arch, lut, at="p95")
    assert at_bound == pytest.approx(point + margin) and at_bound > point
    assert lut_latency(arch, lut, at="p99") >= at_bound
    assert lut_latency(arch, priced_at(lut, "p95")) == pytest.approx(at_bound)  # what a search engine sees
    assert lut_latency(arch, emulated, at="p95") == lut_latency(arch, emulated)  # measured: no model error
    with pytest.raises(CalibrationError, match="p42"):
        lut_latency(arch, lut, at="p42")


def test_search_inputs_price_latency_at_the_bound(calibrated, tmp_path):
    from tinyhil.cli import search as cli
    from tinyhil.lut.calibration.board_lut import priced_at

    result, _ = calibrated
    luts = result.out.parent.parent
    arch = sample_architecture(make_space("micronas", 128, 9, 6), np.random.default_rng(2))
    _, _, point = cli._search_inputs("micronas", "synthetic128x9c6n60", None, 0, "nucleo_f446re", luts)
    _, _, bound = cli._search_inputs("micronas", "synthetic128x9c6n60", None, 0, "nucleo_f446re", luts,
                                     latency_at="p95")
    assert bound.meta.extra["priced_at"] == "p95" and "priced_at" not in point.meta.extra
    assert lut_latency(arch, bound) == pytest.approx(lut_latency(arch, point, at="p95"))
    assert lut_latency(arch, bound) > lut_latency(arch, point)
    assert lut_latency(arch, priced_at(point, "p99")) >= lut_latency(arch, bound)
    with pytest.raises(CalibrationError, match="p42"):  # refused before any data is read
        cli._search_inputs("micronas", "no-such-data", None, 0, "nucleo_f446re", luts, latency_at="p42")


@pytest.mark.parametrize("engine", ["micronas", "tinytnas", "timenas"])
def test_search_commands_take_latency_at(engine, tmp_path):
    result = CliRunner().invoke(app, ["search", engine, "--data", "no-such-data", "--latency-at", "p42",
                                      "--luts", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code != 0 and "p42" in result.output and "no-such-data" not in result.output


def test_estimators_use_a_calibrated_lut_as_a_measured_one(calibrated):
    result, emulated = calibrated
    lut = Lut.load(result.out)
    space = make_space("micronas", 128, 9, 6)
    rng = np.random.default_rng(0)
    proxy = MacsProxy.fit(lut)
    for _ in range(3):
        arch = sample_architecture(space, rng)
        board_cycles, emulated_cycles = lut_latency(arch, lut), lut_latency(arch, emulated)
        assert 1.3 < (board_cycles - 14_000) / emulated_cycles < 2.5
        assert proxy(arch) > 0
        # the offset every op type shares once per model, the rest per op: an add's 48 B more, an op
        # type without reference rows (pooling, softmax) the median of the types' offsets (200 B) less 176
        adds = sum(op.op == ops.ADD for op in arch.runtime().ops)
        unseen = sum(op.op not in (ops.ADD, ops.CONV) for op in arch.runtime().ops)
        assert arena_estimate(arch, lut) == arena_estimate(arch, emulated) + 176 + 48 * adds + 24 * unseen


def test_calibrate_refuses_the_store_name_and_a_calibrated_source(calibrated, f446re, tmp_path):
    result, _ = calibrated
    with pytest.raises(CalibrationError, match="ops.csv is the name"):
        calibrate(result.out, f446re, "nucleo_f446re", tmp_path / "ops.csv")
    with pytest.raises(CalibrationError, match="itself calibrated"):
        calibrate(result.out, f446re, "nucleo_f446re", tmp_path / "x.csv")


def test_calibrate_warns_about_another_core(calibrated, f446re, tmp_path):
    result, emulated = calibrated
    other = calibrate(emulated.path, f446re, "nucleo_l552ze_q", tmp_path / "l552.csv", clock_hz=110_000_000)
    assert any("cortex-m4" in w and "cortex-m33" in w for w in other.warnings)
    # a reference measured at another clock than the board's configured one (80 MHz): the table is for that clock
    assert any("measured at 110 MHz" in w and "configured for 80 MHz" in w for w in other.warnings)
    table = Lut.load(other.out)
    assert table.meta.clock_hz == 110_000_000
    np.testing.assert_allclose(table.rows["ms"], table.rows["cycles"] / 110e3, rtol=1e-4)  # cycles rounded


def test_calibrate_cli_prints_each_model(calibrated, f446re, tmp_path):
    _, emulated = calibrated
    out = tmp_path / "cli.csv"
    result = CliRunner().invoke(app, ["calibrate", "--emulated", str(emulated.path), "--reference",
                                      str(f446re), "--board", "nucleo_f446re", "--lut", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("line", "per-op-type", "shared-features", "features", "features+geometry", "(chosen)",
                 "shape-out MAPE", "5-fold MAPE", "geometry terms by leave-one-shape-out MAPE",
                 "expected (leave-one-shape-out) MAPE", "bound p95", "above their bound"):
        assert name in result.output
    assert read_rows(out).shape[0] == len(emulated.rows)


def test_searches_take_a_complete_calibrated_lut_without_the_board(root):
    from tinyhil.board_catalog import get_board
    from tinyhil.measure.characterize import space_lut

    lut = space_lut(get_board("nucleo_f446re"), "micronas", 128, 9, 6, root / "luts")
    assert lut.meta.extra["calibration"]["from_board"] == "qemu-m4"


def board_lut_of(reference, path, board="nucleo_f446re"):
    """The reference as a board's own ops.csv would hold it (characterize --sample)."""
    from tinyhil.lut.table import COLUMNS, LutMeta, op_columns

    rows = [dict(op_columns(r.op), cycles=r.cycles_total, cycles_min=r.cycles_total, cycles_max=r.cycles_total,
                 n=3, kernel_cycles=r.cycles_kernel, ms=r.cycles_total / 180e3, arena_bytes=r.arena_used,
                 scratch_bytes=0, status="ok") for r in reference.rows]
    meta = LutMeta(board=board, core="cortex-m4", clock_hz=180_000_000, counter="dwt-cycles", tflm="t",
                   compiler="c", flags="", tinyhil="0")
    Lut(meta, pd.DataFrame(rows, columns=COLUMNS).set_index("key", drop=False)).write(path)
    return path


def test_a_board_lut_is_a_reference_too(calibrated, f446re, tmp_path):
    result, emulated = calibrated
    board_lut = board_lut_of(read_reference(f446re), tmp_path / "board" / "ops.csv")
    reference = read_reference(board_lut)
    assert reference.board == "nucleo_f446re" and reference.core == "cortex-m4" and len(reference.rows) == 573
    again = calibrate(emulated.path, board_lut, "nucleo_f446re", tmp_path / "again.csv")
    assert again.calibration.model.name == result.calibration.model.name
    assert again.calibration.expected.mape == pytest.approx(result.calibration.expected.mape)
    store_copy = calibrate(emulated.path.parent / "ops.csv", board_lut, "nucleo_f446re", tmp_path / "all.csv")
    table = Lut.load(store_copy.out)
    assert table.meta.extra["calibration"]["measured_rows_kept"] == 573  # the board's own rows win
    key = read_reference(f446re).rows[0].op.key
    assert table.rows.loc[key, "cycles"] == 782342 and table.rows.loc[key, "kernel_cycles"] == 767828
    with pytest.raises(CalibrationError, match="measured on nucleo_f446re, not on nano33ble"):
        calibrate(emulated.path, board_lut, "nano33ble", tmp_path / "x.csv")


@pytest.mark.device
def test_characterize_a_sample_on_the_emulated_board(tmp_path):
    luts = tmp_path / "luts"
    result = CliRunner().invoke(app, ["characterize", "--space", "micronas", "--input", "32x5", "--classes", "3",
                                      "--board", "qemu-m4", "--sample", "8", "--luts", str(luts)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "ops sampled (8)" in result.output
    measured = read_rows(luts / "qemu-m4" / "ops.csv")
    expected = choose_ops(make_space("micronas", 32, 5, 3).op_configs(), 8)
    assert sorted(measured.index) == sorted(op.key for op in expected)
    assert (measured["status"] == "ok").all()


# --- global average pooling: an op tinyhil can benchmark -------------------

def test_global_average_pooling_rows_parse_into_the_mean_op(tmp_path):
    path = write(tmp_path, 'global_average_pooling2d,"[1, 16, 5, 6]","[1, 6]",null,null,,,,20000,9000,700\n'
                           'global_average_pooling2d,"[1, 16, 5]","[1, 5]",null,null,,,,20000,9000,700\n'
                           'global_average_pooling2d,"[1, 16, 5, 6]","[1, 16]",null,null,,,,20000,9000,700\n')
    ref = read_reference(path)
    assert [r.op for r in ref.rows] == [ops.global_mean((16, 5, 6))]
    op = ref.rows[0].op
    assert op.op == ops.GLOBAL_AVG_POOL and op.output_shape == (6,) and op.macs == 16 * 5 * 6
    assert op.key == "global_avg_pool2d/16x5x6-6"
    assert "column input_shape: global_average_pooling2d needs an NHWC input" in ref.skipped[0]
    assert "column output_shape" in ref.skipped[1] and "[6]" in ref.skipped[1]


def test_global_average_pooling_converts_to_one_mean_and_registers_it(tmp_path):
    from tinyhil.image.firmware import tflm_dir
    from tinyhil.image.sources import Benchmark, ImageSpec, render_image
    from tinyhil.models.single_op import BUILTIN, convert_op
    from tinyhil.models.tflite_model import TfliteModel

    op = ops.global_mean((16, 5, 6))
    model = TfliteModel.from_bytes(convert_op(op), "gap")  # convert_op checks it holds MEAN alone
    assert model.ops == ("MEAN",) == (BUILTIN[op.op],)
    spec = ImageSpec("qemu-m4", (Benchmark("gap", convert_op(op), model.ops, op.input_bytes),))
    render_image(spec, "0123456789abcdef", tflm_dir(), tmp_path)
    assert "resolver.AddMean();" in (tmp_path / "op_resolver.cc").read_text()


@pytest.mark.device
def test_global_average_pooling_is_measured_on_the_emulated_board(tmp_path):
    from tinyhil.board_catalog import get_board
    from tinyhil.measure.characterize import Characterizer

    op = ops.global_mean((16, 5, 6))
    Characterizer(get_board("qemu-m4"), tmp_path).measure_ops([op])
    row = read_rows(tmp_path / "qemu-m4" / "ops.csv").loc[op.key]
    assert row["status"] == "ok" and row["kernel_cycles"] > 16 * 5 * 6  # at least one step per input


# --- the benchmark's targets ----------------------------------------------

def test_calibration_targets_compare_before_and_after_leave_one_shape_out():
    from tinyhil.benchmarks.calibrate import arena_rows_within, calibration_targets, fit_board

    frame = shaped_frame()
    frame["ref_kernel"] = frame["ref_cycles"] - 14_000
    frame["emu_arena"] = frame["out_elems"] + 600.0
    frame["ref_arena"] = frame["emu_arena"] + 176
    assert arena_rows_within(frame, "after") == (100.0, 0.0, 0.0)
    within, worst, _ = arena_rows_within(frame, "before")
    assert within < 100 and worst == pytest.approx(176 / frame["ref_arena"].min() * 100)
    f446re, l552 = fit_board("nucleo_f446re", frame), fit_board("nucleo_l552ze_q", frame.iloc[:24])
    rows = calibration_targets([f446re, l552])
    figures = [r.figure for r in rows]
    assert sum(f.startswith("F446RE") for f in figures) == 10 and sum(f.startswith("L552ZE-Q") for f in figures) == 10
    by = {r.figure.split(" (")[0]: r for r in rows}
    mape = by["F446RE leave-one-shape-out MAPE"]
    assert mape.limit == 1.5 and mape.meets == (mape.after <= 1.5)
    assert by["F446RE arena: largest error"].after == 0 and by["F446RE arena: largest error"].meets
    assert by["L552ZE-Q leave-one-shape-out max error"].limit is None  # no target on the second board's max
    assert by["L552ZE-Q leave-one-shape-out max error"].target == "" and mape.target == "<= 1.5 %"
    assert by["F446RE arena: largest error of the fitted offsets on their own rows"].after == 0
    # each bound's coverage beside its name's target: the share of held-out rows above it
    for bound, target in (("p90", 10), ("p95", 5), ("p99", 1)):
        row = by[f"F446RE rows above their {bound} bound"]
        assert row.target == f"<= {target} %" and row.after == pytest.approx(f446re.after.coverage[bound] * 100)
        assert row.limit == (target if 100 / len(frame) <= target else None)  # 48 rows: one is 2.1 %
    assert by["L552ZE-Q rows above their p99 bound"].limit is None  # 24 rows: one row is 4.2 %, more than 1 %


def test_bench_targets_are_the_references_board(tmp_path):
    """An L552 reference is labelled L552ZE-Q and checked against the L552's
    targets, whichever option order or default named another board."""
    from tinyhil.benchmarks.calibrate import (
        board_label,
        calibration_targets,
        emulated_twin,
        fit_board,
        reference_board,
        sampled_verdicts,
    )

    frame = shaped_frame().assign(ref_arena=np.nan)
    rows = calibration_targets([fit_board("nucleo_l552ze_q", frame)])
    assert rows and all(r.figure.startswith("L552ZE-Q ") for r in rows)
    by = {r.figure.split(" (")[0]: r for r in rows}
    assert by["L552ZE-Q leave-one-shape-out MAPE"].limit == 2.5 and by["L552ZE-Q leave-one-shape-out max error"].limit is None
    assert board_label("nucleo_f446re") == "F446RE" and board_label("nucleo_l552ze_q") == "L552ZE-Q"
    l552 = ReferenceSet(tmp_path / "nucleo_l552ze_q-reference.csv", ())
    assert reference_board(l552) == "nucleo_l552ze_q" and emulated_twin("nucleo_l552ze_q") == "qemu-m33"
    assert reference_board(ReferenceSet(tmp_path / "ops.csv", (), board="nucleo_f446re")) == "nucleo_f446re"
    assert reference_board(l552, "nucleo_f446re") == "nucleo_f446re"  # given: the user's word
    assert emulated_twin("nucleo_f446re") == "qemu-m4"
    with pytest.raises(CalibrationError, match="give --board"):
        reference_board(ReferenceSet(tmp_path / "rows.csv", ()))
    errors = pd.DataFrame([dict(fraction=0.1, sampler="spread", seed=0, model=m, fitted=3, predicted=20, mape=1.0,
                                max_error=2.0, r2=1.0, chosen_as="") for m in ("chosen by CV", "macs-line (FLOPs)")])
    assert sampled_verdicts(errors, "nucleo_f446re")[0].meets is True  # the F446RE's 10 % targets: 2 %, 10 %
    assert sampled_verdicts(errors, "nucleo_l552ze_q")[0].meets is None  # none for the L552: for the record


def test_load_bench_frame_takes_the_flash_cache_of_the_references_board(root, f446re, tmp_path):
    from tinyhil.benchmarks.calibrate import load_bench_frame

    shutil.copytree(root / "luts" / "qemu-m4", tmp_path / "qemu-m4")
    data = load_bench_frame(f446re, luts=tmp_path)  # no board given: the file names it
    assert (data.board, data.emulated, data.measured_now, len(data.frame)) == ("nucleo_f446re", "qemu-m4", 0, 573)
    wide = data.frame["group"] == "16x15x64"  # the 1x1 convolutions whose weights overflow the 128 B cache
    assert data.frame.loc[wide & (data.frame["op"] == "conv2d-1x1"), "flash_refetch"].gt(0).all()
    assert data.frame["flash_refetch"].sum() > 0


def test_an_op_type_of_one_shape_is_predicted_with_the_unseen_type_offset():
    """Leave one shape out cannot check the offset of an op type that only
    that shape has: the row gets the unseen-type offset (the median of the
    types), and the figure of the rows it can check is printed apart."""
    from tinyhil.benchmarks.calibrate import arena_rows_within

    frame = arena_frame(lambda f: f["emu_arena"] + np.where(f["op"] == "add", 224, 176))
    lone = pd.DataFrame([{"key": "softmax/6-6", "op": "softmax", "group": "6", "emu_arena": 420.0, "ref_arena": 612.0}])
    frame = pd.concat([frame, lone.set_index("key", drop=False)])
    within, worst, checked = arena_rows_within(frame, "after")
    assert checked == 0 and worst == pytest.approx(8 / 612 * 100)  # 420 + 200 against 612
    assert within == pytest.approx((len(frame) - 1) / len(frame) * 100)


# --- whole models in board cycles: --predict ------------------------------

@pytest.fixture(scope="module")
def converted(calibrated):
    from tinyhil.models.whole_model import convert_architecture

    arch = sample_architecture(make_space("micronas", 128, 9, 6), np.random.default_rng(0))
    return arch, convert_architecture(arch)


def test_a_converted_model_reads_back_as_its_ops(converted):
    from tinyhil.models.tflite_ops import op_configs

    arch, flatbuffer = converted
    assert sorted(op.key for op in op_configs(flatbuffer)) == sorted(op.key for op in arch.runtime().ops)


def test_prediction_totals_are_the_board_lut_estimators(calibrated, converted):
    from tinyhil.estimate.predict import PredictError, predict
    from tinyhil.models.tflite_ops import op_configs

    result, _ = calibrated
    arch, flatbuffer = converted
    luts = result.out.parent.parent
    prediction = predict(op_configs(flatbuffer), "nucleo_f446re", luts)
    lut = Lut.load(result.out)
    assert prediction.lut == result.out and prediction.calibrated and prediction.bound == "p95"
    assert prediction.total == pytest.approx(lut_latency(arch, lut), abs=1e-6)
    assert prediction.total_bound == pytest.approx(lut_latency(arch, lut, at="p95"), abs=1e-6)
    assert prediction.total_bound > prediction.total
    # its pooling, reshape and softmax: op types no reference row had, named with their wider bound
    unseen = sorted({kernel_path(op) for op in arch.runtime().ops} - {"conv2d", "conv2d-1x1", "add"})
    assert unseen and len(prediction.warnings) == 1
    assert all(f"{path} (" in prediction.warnings[0] for path in unseen) and "in this model:" in prediction.warnings[0]
    assert predict(list(arch.runtime().ops), "nucleo_f446re", luts, "p99").total_bound >= prediction.total_bound
    with pytest.raises(PredictError, match="lacks conv2d/999x9x1"):
        predict([ops.conv((999, 9, 1), 4, (3, 1))], "nucleo_f446re", luts)
    with pytest.raises(PredictError, match="no LUT for nano33ble"):
        predict([ops.conv((999, 9, 1), 4, (3, 1))], "nano33ble", luts)
    with pytest.raises(PredictError, match="#1"):
        predict([ops.softmax(6), None], "nucleo_f446re", luts)


def test_run_predict_refuses_a_model_no_board_lut_prices_before_building(calibrated, tmp_path):
    from tinyhil.models.single_op import convert_op

    result, _ = calibrated
    model = tmp_path / "odd.tflite"
    model.write_bytes(convert_op(ops.conv((40, 3, 2), 4, (3, 1))))
    out = CliRunner().invoke(app, ["run", str(model), "--board", "qemu-m4", "--predict", "nucleo_f446re",
                                   "--luts", str(result.out.parent.parent)], env={"COLUMNS": "200"})
    assert out.exit_code == 2 and "no LUT of nucleo_f446re holds every op" in out.output
    assert "building" not in out.output


@pytest.mark.device
def test_run_predicts_board_latency_beside_the_emulated_measurement(calibrated, converted, tmp_path):
    import re

    result, _ = calibrated
    arch, flatbuffer = converted
    model = tmp_path / "arch.tflite"
    model.write_bytes(flatbuffer)
    out = CliRunner().invoke(app, ["run", str(model), "--board", "qemu-m4", "--repeats", "3", "--predict",
                                   "nucleo_f446re", "--luts", str(result.out.parent.parent)],
                             env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    total = lut_latency(arch, Lut.load(result.out))
    assert f"{total:,.0f}" in out.output and "at p95" in out.output
    assert f"predicted on nucleo_f446re: {total / 180e3:.3f} ms" in out.output
    assert len(re.findall(r"CONV_2D conv2d/", out.output)) == sum(op.op == ops.CONV for op in arch.runtime().ops)


def test_lut_show_says_how_a_calibrated_lut_was_checked(root):
    out = CliRunner().invoke(app, ["lut", "show", str(root / "luts" / "nucleo_l552ze_q" / "micronas-64x30-c11.csv")],
                             env={"COLUMNS": "400"})
    assert out.exit_code == 0, out.output
    assert "leave one input shape out" in out.output and "p95 bound: 8.0 % of the reference rows above it" in out.output
    assert "warning: no reference row on nucleo_l552ze_q for avg_pool2d (1 row), reshape (1 row)" in out.output


def test_deploy_predict_refuses_an_unpriced_board_before_any_training(tmp_path):
    from tinyhil.nas.constraints import Profile
    from tinyhil.nas.engines import DataSpec, SearchRun, Targets

    arch = sample_architecture(make_space("micronas", 128, 9, 6), np.random.default_rng(0))
    SearchRun("micronas", "qemu-m4", DataSpec("basic_motions"), 6, (128, 9), arch, Targets(),
              Profile(1, 1, 1, 1.0), "luts/qemu-m4/micronas-128x9-c6.csv").write(tmp_path)
    out = CliRunner().invoke(app, ["deploy", str(tmp_path), "--predict", "nano33ble", "--luts", str(tmp_path)],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 2 and "no LUT for nano33ble" in out.output
    assert not (tmp_path / "report.html").exists()


# --- a store another process writes: a bounded wait ------------------------

def hold_store_lock(store):
    """The lock a characterization of another process holds on `store`."""
    import fcntl

    lock = open(store.with_name(f".{store.name}.lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return lock


def test_a_held_store_is_waited_for_saying_what_for_then_refused(tmp_path):
    import fcntl
    import threading

    from tinyhil.lut.table import LutError, exclusive

    store = tmp_path / "qemu-m4" / "ops.csv"
    store.parent.mkdir()
    lock = hold_store_lock(store)
    told = []
    with pytest.raises(LutError, match=r"being written by another tinyhil process; wait"):
        with exclusive(store, on_wait=told.append):  # no wait given: refused at once, as before
            pass
    assert told == []
    with pytest.raises(LutError, match=r"being written by another tinyhil process \(waited 0.3 s\)"):
        with exclusive(store, 0.3, told.append):
            pass
    assert told == [f"{store} is being written by another tinyhil process: waiting up to 0.3 s for it to finish"]
    # released while we wait: the store is ours, and no other process gets it meanwhile
    told.clear()
    threading.Timer(0.3, lambda: fcntl.flock(lock, fcntl.LOCK_UN)).start()
    with exclusive(store, 60, told.append):
        with pytest.raises(BlockingIOError):
            hold_store_lock(store)
    assert len(told) == 1 and "waiting up to 60 s" in told[0]
    lock.close()


def test_bench_calibrate_waits_for_a_held_store_only_to_measure(root, f446re, tmp_path):
    """With every reference op in the emulated store, a held store is only
    read; with one missing, the bench waits, saying for what, and is
    refused when the wait ends (no firmware is built while it waits)."""
    from tinyhil.benchmarks.calibrate import load_bench_frame
    from tinyhil.lut.table import LutError

    shutil.copytree(root / "luts" / "qemu-m4", tmp_path / "qemu-m4")
    lock = hold_store_lock(tmp_path / "qemu-m4" / "ops.csv")
    told = []
    data = load_bench_frame(f446re, luts=tmp_path, wait_s=0.3, on_wait=told.append)
    assert len(data.frame) == 573 and told == []
    lines = f446re.read_text().splitlines()
    extra = tmp_path / "nucleo_f446re-reference.csv"
    extra.write_text("\n".join(lines + ['conv2d,"[1, 99, 9, 1]","[1, 99, 9, 4]","[3, 1]","[1, 1]",4,same,relu,'
                                        '300000,290000,5000,1000,1000']) + "\n")
    with pytest.raises(LutError, match=r"\(waited 0.3 s\)"):
        load_bench_frame(extra, luts=tmp_path, wait_s=0.3, on_wait=told.append)
    assert told == [f"{tmp_path / 'qemu-m4' / 'ops.csv'} is being written by another tinyhil process: waiting up to "
                    "0.3 s for it to finish, to measure the 1 reference op(s) it lacks"]
    lock.close()
