"""`tinyhil bench engines`: the TinyTNAS time bound over repeated runs, the
limits of returned candidates, and how well ZiCo, FLOPs and random rank
Tiny-TimeNAS candidates against their short-trained accuracy (Kendall tau)."""
from __future__ import annotations

import time

import numpy as np

from tinyhil.lut.table import Lut
from tinyhil.nas import data as datasets
from tinyhil.nas.constraints import Limits, profile
from tinyhil.nas.timenas import Searcher
from tinyhil.nas.tinytnas import TinyTNAS

LIMITS = {"ram": 20 * 1024, "flash": 64 * 1024, "macc": 60_000, "latency": 15.0}


def time_bound_runs(lut: Lut, runs: int, budget_s: float, epochs: int) -> list[dict]:
    d = datasets.synthetic(400, 187, 1, 5)
    rows = []
    for run in range(runs):
        engine = TinyTNAS((d.x_train, d.y_train), (d.x_val, d.y_val), (187, 1), 5, 1e-3, LIMITS,
                          lut=lut, log=lambda _m: None)
        t0 = time.monotonic()
        best = engine.search(epochs, 1, budget_s / 60)
        wall = time.monotonic() - t0
        longest = max(engine.train_seconds, default=0.0)
        arch = engine.architecture(best[0], best[1]) if best[2] >= 0 else None
        meets = arch is not None and not Limits(LIMITS["ram"], LIMITS["flash"], LIMITS["macc"],
                                                LIMITS["latency"]).violations(profile(arch, engine.pricer.lut))
        rows.append(dict(run=run, budget_s=budget_s, wall_s=wall, longest_candidate_s=longest,
                         within_bound=wall <= budget_s + longest + 1.0, explored=engine.explored_model_count,
                         best=f"k={best[0]} c={best[1]}", meets_limits=meets))
    return rows


def proxy_ranking(lut: Lut, candidates: int, epochs: int, seed: int = 0) -> dict:
    import tensorflow as tf
    from scipy.stats import kendalltau

    d = datasets.load("basic_motions")
    searcher = Searcher(None, None, "classification", d.x_train, d.y_train, lut=lut, seed=seed,
                        log=lambda _m: None)
    rng = np.random.default_rng(seed)
    archs, seen = [], set()
    while len(archs) < candidates:
        arch = searcher.sample(rng)
        if arch.id not in seen:
            seen.add(arch.id)
            archs.append(arch)
    zico, flops, accuracy = [], [], []
    for arch in archs:
        flops.append(searcher._score(arch, "flops"))
        zico.append(searcher._score(arch, "zico"))
        tf.keras.utils.set_random_seed(seed)
        model = searcher.keras(arch)
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(d.x_train, d.y_train, epochs=epochs, batch_size=16,
                            verbose=0, validation_data=(d.x_val, d.y_val))
        accuracy.append(max(history.history["val_accuracy"]))
    random_scores = np.random.default_rng(seed + 1).permutation(len(archs))
    tau = lambda s: float(kendalltau(s, accuracy).statistic)  # noqa: E731
    return {"candidates": len(archs), "epochs": epochs, "zico": tau(zico), "flops": tau(flops),
            "random": tau(random_scores)}
