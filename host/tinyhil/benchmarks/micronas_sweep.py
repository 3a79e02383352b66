"""A sweep of latency targets (the trend of the paper's Figures 8-10):
does every found network meet its targets, and does accuracy rise with
the latency allowed? Each found network is trained briefly in float and
tested on the held-out split (quantization-aware retraining and device
measurement are the deployment stage's job)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from tinyhil.estimate import lut_latency
from tinyhil.files import atomic_write, writable_dir
from tinyhil.nas import data as datasets
from tinyhil.nas.micronas.search import SearchConfig, search, smallest_architecture, write_curves
from tinyhil.spaces import make_space

DATA_SETS = ("basic_motions", "synthetic128x9")


def largest_architecture(space):
    from tinyhil.spaces.micronas import build_architecture

    tr = [{"kernel": space.tr_kernels[-1], "filters": space.tr_options[-1]}] * space.n_time_reduce
    sf = [{"bottleneck": space.sf_options[-1], "filters": space.sf_options[-1],
           "branches": list(space.sf_kernels), "residual": True, "skip": False}] * space.n_sensor_fusion
    return build_architecture(space, {"tr": tr, "sf": sf})


def held_out_accuracy(arch, splits, epochs: int, seed: int = 0) -> float:
    import tensorflow as tf

    from tinyhil.models.whole_model import keras_model

    tf.keras.utils.set_random_seed(seed)
    model = keras_model(arch, batch_size=None)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(splits.x_train[..., None], splits.y_train, epochs=epochs, batch_size=16, verbose=0,
              validation_data=(splits.x_val[..., None], splits.y_val))
    return float(model.evaluate(splits.x_test[..., None], splits.y_test, verbose=0)[1])


def sweep_micronas(board, n_targets: int, epochs: int, retrain_epochs: int, mem_target: float,
          luts: Path, out: Path, progress, space_lut) -> list[dict]:
    """`space_lut` is characterize.space_lut, handed in: the search stage does
    not reach back to characterization itself."""
    rows = []
    writable_dir(out, "the sweep's runs and table")  # before the first search
    for name in DATA_SETS:
        splits = datasets.load(name)
        space = make_space("micronas", splits.window, splits.channels, splits.classes)
        lut = space_lut(board, "micronas", splits.window, splits.channels, splits.classes, luts,
                        progress)
        to_ms = lambda arch: lut_latency(arch, lut) / lut.meta.clock_hz * 1e3  # noqa: E731
        low, high = to_ms(smallest_architecture(space)), to_ms(largest_architecture(space))
        # from just above the smallest network to well below the largest
        for target in np.geomspace(1.5 * low, 0.5 * high, n_targets):
            config = SearchConfig(float(target), mem_target, epochs=epochs, batch_size=16)
            result = search(splits, space, lut, config)
            run_dir = out / f"{name}-{target:.0f}ms"
            write_curves(result, run_dir)
            accuracy = held_out_accuracy(result.architecture, splits, retrain_epochs)
            rows.append(dict(data=name, lat_target_ms=float(target), latency_ms=result.estimated_latency_ms,
                             mem_target=mem_target, arena_bytes=result.estimated_arena_bytes,
                             ok=result.estimated_latency_ms <= target
                             and result.estimated_arena_bytes <= mem_target,
                             val_accuracy=result.val_accuracy, test_accuracy=accuracy,
                             run=str(run_dir)))
    table = io.StringIO()
    writer = csv.DictWriter(table, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "sweep.csv", table.getvalue())
    return rows
