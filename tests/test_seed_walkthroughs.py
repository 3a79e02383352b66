"""The seeds' own walk-throughs (examples/seeds/), run unchanged but for their
imports, on tiny budgets; and the seed behaviours they rely on."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyhil.errors import TinyhilError
from tinyhil.lut.table import Lut
from tinyhil.nas import data as datasets
from tinyhil.nas.tinytnas import TinyTNAS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "seeds"


def run_example(script: str, cwd: Path, luts: Path, **env) -> str:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "host"), "TINYHIL_PROJECT_DIR": str(ROOT),
                   "TINYHIL_LUTS": str(luts), "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def luts_copy(tmp_path) -> Path:
    """The committed LUTs, copied: ops measured on demand go to the copy."""
    return Path(shutil.copytree(ROOT / "luts", tmp_path / "luts"))


@pytest.mark.device
def test_tinytnas_readme_search_runs_as_written(tmp_path, luts_copy):
    subprocess.run([sys.executable, str(EXAMPLES / "make_mitbih_like.py"), "all_datasets", "120", "40"],
                   cwd=tmp_path, check=True, capture_output=True)
    out = run_example("tinytnas_search.py", tmp_path, luts_copy, TINYTNAS_EPOCHS="1",
                      TINYTNAS_MINUTES="0.05", TINYTNAS_FINAL_EPOCHS="1")
    result = next(ast.literal_eval(line) for line in out.splitlines() if line.startswith("{'best_k'"))
    path = result["architecture_search_path"]  # [k, c, accuracy, ram, flash, macs] per feasible candidate
    assert path[0][:2] == [4, 3]  # the first candidate fits 20 KB / 64 KB / 60k MACs
    # How many improvements fit in the 3 s depends on the machine; each beats the one before,
    # and the result is the last.
    accuracies = [row[2] for row in path]
    assert accuracies == sorted(set(accuracies))
    assert [result["best_k"], result["best_c"], result["best_acc"]] == path[-1][:3]


@pytest.mark.device
def test_timenas_paper_walkthrough_runs_as_written(tmp_path, luts_copy):
    out = run_example("timenas_walkthrough.py", tmp_path, luts_copy, TIMENAS_CANDIDATES="6")
    assert "limits='seed'" in out  # the pricing is said when the search starts
    assert "accuracy " in out and "'zico'" in out and "'latency_ms'" in out
    assert (tmp_path / "model.tflite").stat().st_size > 1000


class Scripted(TinyTNAS):
    """The real search with each training replaced by a given accuracy, so the
    order the seed's code explores in can be checked step by step."""

    def __init__(self, accuracy, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accuracy = accuracy
        self.trained = []

    def _train(self, k, c, epochs):
        self.trained.append((k, c))
        return self.accuracy(k, c)


@pytest.fixture(scope="module")
def m33_lut():
    return Lut.load(ROOT / "luts" / "qemu-m33" / "tinytnas-187x1-c5.csv")


def scripted(accuracy, lut, specs=None):
    d = datasets.synthetic(40, 187, 1, 5)
    return Scripted(accuracy, (d.x_train, d.y_train), None, (187, 1), 5, 1e-3, specs or {}, lut=lut,
                    log=lambda _m: None)


def test_tinytnas_explores_in_the_seed_codes_order(m33_lut):
    table = {(4, 3): .5, (8, 3): .4, (8, 0): .3, (8, 1): .6, (8, 2): .55, (8, 4): .2}
    engine = scripted(lambda k, c: table.get((k, c), .1), m33_lut)
    best = engine.search(1, 1, 10)
    # (4, 3) adopted: pending [4..7, 3], k = 8; (8, 3) worse: every other depth trained,
    # the best (c=1) adopted: pending [8, 10, 12, 14] at c=1, k = 16; (16, 1) and its depths
    # lose; the pending list is popped from its end (largest k first) down to (8, 1) itself
    scan = lambda k, c: [(k, d) for d in range(5) if d != c]  # noqa: E731
    expected = [(4, 3), (8, 3), *scan(8, 3), (16, 1), *scan(16, 1), (14, 1), *scan(14, 1),
                (12, 1), *scan(12, 1), (10, 1), *scan(10, 1), (8, 1), *scan(8, 1)]
    assert engine.trained == expected
    assert best[:3] == [8, 1, .6]
    assert [s[:3] for s in engine.feasible_solutions] == [[4, 3, .5], [8, 1, .6]]
    assert engine.explored_model_count == len(expected) == len(engine.explored_model_configs)
    assert engine.pendings == []


def test_tinytnas_depth_scan_stops_at_the_first_infeasible_depth(m33_lut):
    probe = scripted(lambda k, c: 0, m33_lut)
    macs = {c: probe.price(8, c)[0].macs for c in range(5)}
    limit = macs[1]  # depth 0 and 1 fit at k = 8; depth 2 does not (deeper adds MACs)
    assert macs[2] > limit and macs[0] <= limit
    engine = scripted(lambda k, c: {(4, 3): .5, (8, 0): .7}.get((k, c), .1), m33_lut, {"macc": limit})
    engine.search(1, 1, 10)
    at_8 = [t for t in engine.trained if t[0] == 8]
    assert at_8[:2] == [(8, 0), (8, 1)]  # (8, 3) infeasible, then depths 0, 1 and stop at 2
    assert [8, 2, -1] == engine.infeasible_configarations[1][:3]
    assert engine.feasible_solutions[1][:3] == [8, 0, .7]


def test_tinytnas_time_bound_is_checked_between_candidates(m33_lut):
    engine = scripted(lambda k, c: .5, m33_lut)
    best = engine.search(1, 1, 0)  # no time at all: nothing is trained, the seed's start comes back
    assert engine.trained == [] and best == [4, 3, -1, -1, -1, -1]


def test_tinytnas_val_ds_none_and_integer_lossf_train_for_real(m33_lut):
    d = datasets.synthetic(80, 187, 1, 5)
    engine = TinyTNAS((d.x_train, np.eye(5)[d.y_train]), None, d.x_train.shape[1:], 5, 1e-3,
                      {"ram": 20 * 1024, "flash": 64 * 1024, "macc": 60_000}, lut=m33_lut, log=lambda _m: None)
    best = engine.search(epochs=1, lossf=0, search_time_minute=0)
    assert best[2] == -1  # no time: untouched
    best = TinyTNAS((d.x_train[:, :, 0], d.y_train), None, (187,), 5, 1e-3, {}, lut=m33_lut,
                    log=lambda _m: None).search(epochs=1, lossf=1, search_time_minute=0.001)
    assert best[:2] == [4, 3] and 0 <= best[2] <= 1  # (N, T) windows, class indices, 15 % validation


def test_bad_labels_are_named():
    from tinyhil.nas.tinytnas import loss_for

    with pytest.raises(TinyhilError, match=r"not one-hot \(row 1"):
        loss_for(0, np.array([[1, 0], [1, 1]]))
    with pytest.raises(TinyhilError, match="num_class is 3 but the labels have classes up to 5"):
        loss_for(1, np.array([0, 4]), num_class=3)


def test_seed_pricing_estimates_the_float32_model_the_seed_measured():
    """limits='seed' prices the float32 .tflite; the estimate against a real conversion."""
    import tensorflow as tf

    from tinyhil.nas.timenas import Searcher

    d = datasets.load("basic_motions")
    lut = Lut.load(ROOT / "luts" / "qemu-m4" / "timenas-100x6-c4.csv")
    searcher = Searcher(None, None, "classification", d.x_train, d.y_train, lut=lut, log=lambda _m: None)
    rng = np.random.default_rng(3)
    for _ in range(4):
        arch = searcher.sample(rng)
        size = len(tf.lite.TFLiteConverter.from_keras_model(searcher.keras(arch)).convert())
        assert searcher.price(arch)["model_size"] * 1000 == pytest.approx(size, rel=0.05)
    # the same numbers admit larger networks under tinyhil's int8 pricing, and the log says so
    said = []
    seed = Searcher(40, 80, "classification", d.x_train, d.y_train, lut=lut, log=said.append)
    int8 = Searcher(40, 80, "classification", d.x_train, d.y_train, limits="int8", lut=lut, log=said.append)
    largest = lambda s: max(f["profile"]["params"] for f in s.run_search(40, top_k=40, proxy="flops"))  # noqa: E731
    assert largest(int8) > 2 * largest(seed)
    assert "limits='seed'" in said[0] and "4x larger" in said[0] and "limits='int8'" in said[1]


def test_quantize_model_modes_as_the_seed():
    from tinyhil.models.tflite_model import TfliteModel
    from tinyhil.nas.timenas import Searcher, quantize_model

    d = datasets.load("basic_motions")
    lut = Lut.load(ROOT / "luts" / "qemu-m4" / "timenas-100x6-c4.csv")
    model = Searcher(None, None, "classification", d.x_train, d.y_train, network_type=["CNN"], lut=lut,
                     log=lambda _m: None).run_search(3, proxy="flops")[0]["model"]
    import tensorflow as tf

    floating = tf.lite.Interpreter(model_content=quantize_model(model, d.x_train))  # the seed's default
    assert floating.get_input_details()[0]["dtype"] == np.float32
    assert floating.get_output_details()[0]["dtype"] == np.float32
    inner = [t["dtype"] for t in floating.get_tensor_details() if "conv" in t["name"].lower()]
    assert np.int8 in inner  # int8 ops between the float input and output
    integer = TfliteModel.from_bytes(quantize_model(model, d.x_train, mode="int"), "int-io")
    assert (integer.inputs[0].dtype, integer.outputs[0].dtype) == ("int8", "int8")


@pytest.mark.device
def test_ops_beyond_the_lut_are_measured_not_refused(tmp_path):
    """A LUT lacking rows: the search measures them (QEMU counts exactly: the
    same cycles as the committed rows), and allow_mix networks run too."""
    from tinyhil.nas.timenas import Searcher

    luts = Path(shutil.copytree(ROOT / "luts", tmp_path / "luts"))
    store = luts / "qemu-m4" / "ops.csv"
    rows = pd_read(store)
    d = datasets.synthetic(40, 187, 1, 5)
    engine = TinyTNAS((d.x_train, d.y_train), None, (187, 1), 5, 1e-3, {}, board="qemu-m4", luts=luts,
                      log=lambda _m: None)
    ops = engine.architecture(4, 3).runtime().ops
    removed = [op.key for op in ops[:3]]
    rows[~rows["key"].isin(removed)].to_csv(store, index=False)
    engine.pricer.lut = Lut.load(store)
    profile, feasible = engine.price(4, 3)
    assert feasible and set(removed) <= set(engine.pricer.measured_ops)
    again = pd_read(store).set_index("key")
    for key in removed:
        assert again.loc[key, "kernel_cycles"] == rows.set_index("key").loc[key, "kernel_cycles"]
    found = Searcher(None, None, "classification", d.x_train, d.y_train, network_type=["MLP", "CNN"],
                     board="qemu-m4", luts=luts, log=lambda _m: None).run_search(3, top_k=3, allow_mix=True)
    assert all(f["architecture"].choices["type"] == "mix" for f in found)
    assert all(f["profile"]["latency_ms"] > 0 for f in found)


def pd_read(path):
    import pandas as pd

    return pd.read_csv(path)
