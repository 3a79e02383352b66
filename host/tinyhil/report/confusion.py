"""Confusion matrices of a deployment: the device's int8 classes against the
labels, and the device's against the host interpreter's where they differ
(RUN_DIR/predictions.csv, written by the deployment)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

PREDICTIONS_FILE = "predictions.csv"  # deploy.deployment writes it


def read_predictions(run_dir: Path) -> pd.DataFrame | None:
    """window, label, host_int8, device_int8 (None: no predictions.csv)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    return frame if {"label", "host_int8", "device_int8"} <= set(frame.columns) else None


def matrix(truth, predicted, classes: int) -> np.ndarray:
    """counts[true class, predicted class]; a prediction outside 0..classes-1
    (no output from the device: -1) counts in an extra last column."""
    counts = np.zeros((classes, classes + 1), int)
    for t, p in zip(np.asarray(truth, int), np.asarray(predicted, int)):
        counts[t, p if 0 <= p < classes else classes] += 1
    return counts if counts[:, classes].any() else counts[:, :classes]


def _draw(ax, counts: np.ndarray, ylabel: str, xlabel: str, title: str) -> None:
    rows, cols = counts.shape
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(counts.max(), 1))
    for i in range(rows):
        for j in range(cols):
            if counts[i, j] or i == j:
                dark = counts[i, j] > counts.max() * 0.6
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if dark else "black", fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(cols), [str(j) if j < rows else "none" for j in range(cols)])
    ax.set_yticks(range(rows), [str(i) for i in range(rows)])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def confusion_figure(predictions: pd.DataFrame, classes: int):
    """The device against the labels; beside it the device against the host,
    when any window's class differs between them."""
    device, host, labels = predictions["device_int8"], predictions["host_int8"], predictions["label"]
    differ = int((device != host).sum())
    fig, axes = plt.subplots(1, 2 if differ else 1, figsize=(10 if differ else 5.2, 4.6), squeeze=False)
    on_device = matrix(labels, device, classes)
    correct = int(np.trace(on_device[:, :classes]))
    _draw(axes[0][0], on_device, "label (true class)", "device int8 class",
          f"device int8 vs labels: {correct}/{len(labels)} correct")
    if differ:
        _draw(axes[0][1], matrix(host, device, classes), "host int8 class", "device int8 class",
              f"device vs host interpreter: {differ} window(s) differ")
    fig.tight_layout()
    return fig, differ
