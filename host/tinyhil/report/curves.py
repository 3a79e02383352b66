"""The MicroNAS search curves: loss, accuracy and the argmax network's
estimated latency and memory per epoch, with the targets, the warm-up (weights
only) shaded, and the epoch whose network the search returned marked. The
search saves them as curves.png; the deployment report draws them again from
curves.csv and run.json."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


@dataclass(frozen=True)
class CurveMarks:
    warmup_epochs: int  # the first epochs train the weights alone
    chosen_epoch: int | None  # whose argmax network was taken; None: the smallest network
    lat_target_ms: float | None = None
    mem_target_bytes: float | None = None
    note: str = ""  # why not the last epoch's network

    @classmethod
    def from_details(cls, details: dict, epochs: int) -> CurveMarks:
        """From a MicroNAS run.json's details (runs from before the marks were
        recorded: the warm-up rule of the search, the last epoch)."""
        warmup = details.get("warmup")
        if warmup is None:
            configured = details.get("warmup_epochs")
            warmup = epochs // 3 if configured is None else configured
        note = details.get("note", "")
        if "chosen_epoch" in details:
            chosen = details["chosen_epoch"]
        else:  # the note names the epoch taken ("took epoch 16's"), or the smallest network
            taken = re.search(r"took epoch (\d+)'s", note)
            chosen = int(taken.group(1)) if taken else None if note else epochs
        return cls(int(warmup), chosen, details.get("lat_target_ms"), details.get("mem_target_bytes"),
                   note)


def read_history(path: Path) -> list[dict]:
    """curves.csv as rows of floats (epoch as int)."""
    with open(path, newline="") as f:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def curves_figure(history: list[dict], marks: CurveMarks):
    epochs = [r["epoch"] for r in history]
    chosen = next((r for r in history if r["epoch"] == marks.chosen_epoch), None)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    loss_ax, acc_ax, hw_ax = axes
    loss_ax.plot(epochs, [r["loss"] for r in history], color="C3", label="loss (validation, Eq. 3)")
    acc_ax.plot(epochs, [r["train_accuracy"] for r in history], color="C2", label="train (sampled paths)")
    acc_ax.plot(epochs, [r["val_accuracy"] for r in history], color="C4", label="validation (argmax network)")
    hw_ax.plot(epochs, [r["latency_ms"] for r in history], color="C0", label="latency (ms)")
    mem_ax = hw_ax.twinx()
    mem_ax.plot(epochs, [r["memory_bytes"] / 1024 for r in history], color="C1", label="memory (KiB)")
    if marks.lat_target_ms:
        hw_ax.axhline(marks.lat_target_ms, ls="--", color="C0", lw=1,
                      label=f"latency target {marks.lat_target_ms:g} ms")
    if marks.mem_target_bytes:
        mem_ax.axhline(marks.mem_target_bytes / 1024, ls="--", color="C1", lw=1,
                       label=f"memory target {marks.mem_target_bytes / 1024:g} KiB")
    for ax in axes:
        if marks.warmup_epochs:
            ax.axvspan(0.5, marks.warmup_epochs + 0.5, color="0.85", zorder=0,
                       label=f"warm-up (weights only, {marks.warmup_epochs} epochs)")
        if chosen is not None:
            ax.axvline(chosen["epoch"], color="k", lw=1.2, ls=":", label=f"chosen: epoch {chosen['epoch']}")
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, max(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if chosen is not None:
        acc_ax.plot([chosen["epoch"]], [chosen["val_accuracy"]], "o", color="k", ms=6)
        hw_ax.plot([chosen["epoch"]], [chosen["latency_ms"]], "o", color="C0", mec="k", ms=7)
        mem_ax.plot([chosen["epoch"]], [chosen["memory_bytes"] / 1024], "o", color="C1", mec="k", ms=7)
    loss_ax.set_title("loss")
    acc_ax.set_title("accuracy")
    hw_ax.set_title("argmax network: estimated latency and memory")
    hw_ax.set_ylabel("latency (ms)", color="C0")
    mem_ax.set_ylabel("memory (KiB)", color="C1")
    loss_ax.legend(fontsize=7, loc="best")
    acc_ax.legend(fontsize=7, loc="best")
    # one legend for both axes of the twin panel, under it so it hides no curve
    handles, labels = [], []
    for ax in (hw_ax, mem_ax):
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    hw_ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    if marks.chosen_epoch is None and marks.note:
        fig.suptitle(f"no epoch's network was taken: {marks.note}", fontsize=9)
    elif marks.note:
        fig.suptitle(marks.note, fontsize=9)
    fig.tight_layout()
    return fig


def save_curves(history: list[dict], marks: CurveMarks, path: Path) -> Path:
    fig = curves_figure(history, marks)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
