"""TinyTNAS and Tiny-TimeNAS engines on small data, with the committed LUTs."""
import time
from pathlib import Path

import numpy as np
import pytest

from tinyhil.errors import TinyhilError
from tinyhil.lut.table import Lut
from tinyhil.nas import data as datasets
from tinyhil.nas.proxies import zico, zico_from_gradients
from tinyhil.nas.timenas import Searcher, quantize_model
from tinyhil.nas.tinytnas import TinyTNAS

LUTS = Path(__file__).resolve().parents[1] / "luts"


@pytest.fixture(scope="module")
def tinytnas_lut():
    return Lut.load(LUTS / "qemu-m33" / "tinytnas-187x1-c5.csv")


@pytest.fixture(scope="module")
def timenas_lut():
    return Lut.load(LUTS / "qemu-m4" / "timenas-100x6-c4.csv")


def test_tinytnas_end_to_end_within_its_time_bound(tinytnas_lut):
    d = datasets.synthetic(200, 187, 1, 5)
    specs = {"ram": 20 * 1024, "flash": 64 * 1024, "macc": 60_000, "latency": 15.0}
    engine = TinyTNAS((d.x_train, d.y_train), (d.x_val, d.y_val), (187, 1), 5, 1e-3, specs,
                      lut=tinytnas_lut, log=lambda _m: None)
    started = time.monotonic()
    best = engine.search(epochs=1, lossf=1, search_time_minute=0.25)
    elapsed = time.monotonic() - started
    k, c, accuracy, ram, flash, macs = best
    assert engine.explored_model_count >= 1 and [k, c] in [e[:2] for e in engine.explored_model_configs]
    assert ram <= specs["ram"] and flash <= specs["flash"] and macs <= specs["macc"]
    assert engine.LATENCY <= specs["latency"] and 0 <= accuracy <= 1
    for k_, c_, acc, ram_, flash_, macs_ in engine.explored_model_configs:  # trained: all feasible
        assert ram_ <= specs["ram"] and macs_ <= specs["macc"] and flash_ <= specs["flash"]
    for entry in engine.infeasible_configarations:
        assert entry[2] == -1  # never trained
    assert next(iter(engine.profiles)) == (4, 3)  # the seed's starting point, priced first
    assert engine.feasible_solutions[-1][:3] == [k, c, accuracy]
    # at most one candidate's training past the budget
    assert elapsed < 15 + max(engine.train_seconds) + 5


def test_tinytnas_label_format_is_checked(tinytnas_lut):
    d = datasets.synthetic(60, 187, 1, 5)
    engine = TinyTNAS((d.x_train, np.eye(5)[d.y_train]), (d.x_val, d.y_val), (187, 1), 5, 1e-3, {},
                      lut=tinytnas_lut, log=lambda _m: None)
    with pytest.raises(TinyhilError, match=r"training labels are one-hot \(\d+, 5\), validation labels "
                                           r"are indices"):
        engine.search(1, 1, 0.1)
    engine = TinyTNAS((d.x_train, d.y_train), None, (187, 1), 5, 1e-3, {}, lut=tinytnas_lut)
    with pytest.raises(TinyhilError, match=r"lossf=0 \(categorical_crossentropy\) needs one-hot labels; "
                                           r"these labels are indices .*use lossf=1"):
        engine.search(1, 0, 0.1)
    with pytest.raises(TinyhilError, match="lossf must be 0"):
        engine.search(1, 2, 0.1)


def test_timenas_searcher_end_to_end_on_basic_motions(timenas_lut):
    d = datasets.load("basic_motions")
    searcher = Searcher(64, 128, "classification", d.x_train, d.y_train, max_latency=100,
                        limits="int8", lut=timenas_lut, log=lambda _m: None)
    found = searcher.run_search(n_archs=25, top_k=3, proxy="zico")
    assert 1 <= len(found) <= 3
    scores = [f["score"] for f in found]
    assert scores == sorted(scores, reverse=True)
    for f in found:
        p = f["profile"]
        assert p["ram"] <= 64_000 and p["flash"] <= 128_000 and p["latency_ms"] <= 100
        assert {"model_size", "runtime_memory", "flops", "macs", "params", "zico"} <= set(p)
        assert f["model"].input_shape == (None, 100, 6) and f["model"].output_shape == (None, 4)
        assert p["params"] == f["model"].count_params()
    assert all(r["why"] for r in searcher.rejected)
    flatbuffer = quantize_model(found[0]["model"], d.x_train, mode="int")
    from tinyhil.models.tflite_model import TfliteModel

    model = TfliteModel.from_bytes(flatbuffer, "found")
    assert model.inputs[0].dtype == "int8" and model.outputs[0].dtype == "int8"
    again = searcher.run_search(n_archs=25, top_k=3, proxy="zico")  # seeded: the same ranking
    assert [f["architecture"].id for f in again] == [f["architecture"].id for f in found]
    assert [f["score"] for f in again] == scores
    by_flops = searcher.run_search(n_archs=25, top_k=2, proxy="flops")
    assert by_flops[0]["score"] >= by_flops[1]["score"]


def test_timenas_refuses_what_it_cannot_do(timenas_lut):
    d = datasets.load("basic_motions")
    continuous = np.random.default_rng(0).normal(size=len(d.y_train))
    with pytest.raises(TinyhilError, match="continuous .*use task=regression"):
        Searcher(64, 128, "classification", d.x_train, continuous, lut=timenas_lut)
    with pytest.raises(TinyhilError, match=r"task regression needs one target per window; these are \(\d+, 4\)"):
        Searcher(64, 128, "regression", d.x_train, np.eye(4)[d.y_train], lut=timenas_lut)
    searcher = Searcher(0.001, 0.001, "classification", d.x_train, d.y_train, lut=timenas_lut,
                        log=lambda _m: None)
    with pytest.raises(TinyhilError, match="none of .* meets the limits .*closest"):
        searcher.run_search(n_archs=5)
    with pytest.raises(TinyhilError, match="method 'evolution'"):
        searcher.run_search(n_archs=5, method="evolution")
    with pytest.raises(TinyhilError, match="limits must be 'seed'"):
        Searcher(64, 128, "classification", d.x_train, d.y_train, limits="int16", lut=timenas_lut)
    with pytest.raises(TinyhilError, match="network_type"):
        Searcher(64, 128, "classification", d.x_train, d.y_train, network_type=["RNN"], lut=timenas_lut)


def test_zico_by_hand():
    # one layer, two parameters over two batches: |g| means (2, 2), stds (1, 0)
    g = np.array([[1.0, 2.0], [3.0, 2.0]])
    assert zico_from_gradients([g]) == pytest.approx(np.log(2.0))
    # two layers add their logs
    assert zico_from_gradients([g, g * 10]) == pytest.approx(2 * np.log(2.0))


def test_zico_matches_gradients_computed_by_hand():
    """A linear layer y = x w with squared error: dL/dw = 2/B x^T (x w - t)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    t = rng.normal(size=(64, 1)).astype("float32")
    model = tf.keras.Sequential([tf.keras.layers.Input((3,)), tf.keras.layers.Dense(1, use_bias=False)])
    w = model.layers[0].kernel.numpy()
    score = zico(model, x, t, tf.keras.losses.MeanSquaredError(), batch_size=16, batches=4, seed=1)
    picks = np.random.default_rng(1)
    grads = []
    for _ in range(4):
        i = picks.choice(64, size=16, replace=False)
        grads.append((2 / 16 * x[i].T @ (x[i] @ w - t[i])).ravel())
    assert score == pytest.approx(zico_from_gradients([np.stack(grads)]), rel=1e-4)
