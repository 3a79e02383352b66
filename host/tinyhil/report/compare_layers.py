"""The per-layer comparison of board and host (measure/layers.py's
LayerComparison) as HTML: the table the console prints and a plot of the
difference per op; a section of the deployment report
(templates/deployment/compared.html.j2), or a page of its own (`tinyhil run
--compare-layers --report`)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from tinyhil.files import atomic_write  # noqa: E402
from tinyhil.report.render import render, svg  # noqa: E402


def layer_rows(c) -> list[tuple[str, ...]]:
    """(#, op, LUT key, kernel, output shape, board vs host) per unit."""
    return [("in" if d.unit == 0 else str(d.index), d.op, d.lut_key or "-", d.kernel or "-",
             "x".join(map(str, d.shape)) or "scalar", d.verdict()) for d in c.layers]


def difference_figure(c):
    """Largest difference (int8 steps) and share of differing elements per op."""
    ops = [d for d in c.layers if d.unit > 0]
    fig, ax = plt.subplots(figsize=(8, 2.8))
    x = list(range(len(ops)))
    first = c.first_diverging
    ax.bar(x, [d.max_steps for d in ops], color=["#c33" if d is first else "#48c" for d in ops],
           label="largest difference (steps)")
    ax.set_ylabel("steps")
    ax.set_ylim(0, max([1] + [d.max_steps for d in ops]) * 1.15)
    share = ax.twinx()
    share.plot(x, [100 * d.share for d in ops], "k.-", label="elements differing (%)")
    share.set_ylabel("% differing")
    share.set_ylim(0, 105)
    ax.set_xticks(x, [f"{d.index}:{d.op}" for d in ops], rotation=60, ha="right", fontsize=7)
    ax.set_title("board vs host, per op" + ("" if first is None else f" (first diverging: op {first.index})"),
                 fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = share.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, loc="upper left", fontsize=7)
    return fig


def compared_data(c) -> dict:
    """What templates/deployment/compared.html.j2 shows."""
    first = c.first_diverging
    return {"board": c.board, "input": c.input, "summary": c.summary(), "figure": svg(difference_figure(c)),
            "rows": [{"cells": row, "kind": "first" if d is first else ("differs" if not d.equal else "")}
                     for d, row in zip(c.layers, layer_rows(c))],
            "transport": f"streamed in {c.frames} TENSOR frames, {c.requests} LAYERS request(s); "
                         f"arena {c.arena_used:,} B"}


def write_layers_report(c, path: Path) -> Path:
    title = f"tinyhil: {c.model} layer by layer"
    return atomic_write(path, render("compared.html.j2", title=title, subtitle=f"on {c.board}",
                                     data=compared_data(c)))


__all__ = ["compared_data", "difference_figure", "layer_rows", "write_layers_report"]
