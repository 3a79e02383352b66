"""The per-layer comparison (measure/layers.py's LayerComparison) as HTML: the
table the console prints and a small plot of the difference per layer; a
section of the deployment report, or a page of its own (`tinyhil run
--compare-layers --report`)."""
from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from tinyhil.files import atomic_write  # noqa: E402
from tinyhil.report.validation import _png  # noqa: E402

STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}.warn{color:#a60}"
         "tr.first td{background:#fdd}tr.differs td{background:#ffe}")


def layer_rows(c) -> list[tuple[str, ...]]:
    """(#, op, LUT key, kernel, output shape, board vs host) per unit."""
    return [("in" if d.unit == 0 else str(d.index), d.op, d.lut_key or "-", d.kernel or "-",
             "x".join(map(str, d.shape)) or "scalar", d.verdict()) for d in c.layers]


def difference_figure(c) -> str:
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
    return _png(fig)


def layers_section(c, heading: str = "h3") -> str:
    first = c.first_diverging
    head = "".join(f"<th>{h}</th>" for h in ("#", "op", "LUT key", "kernel", "output shape", "board vs host"))
    body = ""
    for d, row in zip(c.layers, layer_rows(c)):
        kind = "first" if d is first else ("differs" if not d.equal else "")
        body += f"<tr class='{kind}'>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
    return (f"<{heading}>Layer by layer on {html.escape(c.board)}: {html.escape(c.input)}</{heading}>"
            f"<p>{html.escape(c.summary())}</p><table><tr>{head}</tr>{body}</table>"
            f"<img src='data:image/png;base64,{difference_figure(c)}'>"
            f"<p>streamed in {c.frames} TENSOR frames, {c.requests} LAYERS request(s); arena {c.arena_used:,} B</p>")


def write_layers_report(c, path: Path) -> Path:
    title = f"tinyhil: {c.model} layer by layer"
    return atomic_write(path, f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                              f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
                              f"{layers_section(c, 'h2')}</body></html>")
