"""The validation report: one HTML page (templates/validation.html.j2) with
inline SVG figures whose every point names its architecture (hover), on
log-log axes (small networks do not pile up at the origin), the residuals of
each estimator on an axis of its own, and a table that fits the page."""
from __future__ import annotations

import math

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from tinyhil.files import atomic_write  # noqa: E402
from tinyhil.provenance import collect  # noqa: E402
from tinyhil.report.render import number, render, svg  # noqa: E402
from tinyhil.verdict import usable  # noqa: E402


def _good(table):
    return table[table["status"].map(usable)] if "measured_ms" in table else table.iloc[0:0]


def _title(row, n: int) -> str:
    return (f"#{n} arch {row['arch_id']}: {row['n_ops']} ops, {row['macs']:,} MACs\n"
            f"measured {row['measured_ms']:.3f} ms; LUT {row['est_lut_ms']:.3f} ms ({row['err_lut_pct']:+.2f} %); "
            f"MACs proxy {row['est_proxy_ms']:.3f} ms ({row['err_proxy_pct']:+.1f} %)\n"
            f"arena {row.get('arena_used', float('nan')):,.0f} B used, {row['est_arena_bytes']:,.0f} B estimated")


def _points(ax, xs, ys, gid: str, titles: dict, labels: list[str], **style) -> None:
    """One artist per point, each with a gid that gets a hover title."""
    for x, y, label in zip(xs, ys, labels):
        if not (math.isfinite(x) and math.isfinite(y)) or x <= 0:
            continue
        key = f"{gid}-{len(titles)}"
        ax.plot([x], [y], "o", gid=key, **style)
        titles[key] = label


def _diagonal(ax, values) -> None:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    if values:
        lo, hi = min(values) / 1.3, max(values) * 1.3
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="estimate = measured")


def scatter_figure(good, labels, result):
    titles: dict[str, str] = {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, column, name, metrics, color in (
            (axes[0], "est_lut_ms", "LUT", result.lut_metrics, "C0"),
            (axes[1], "est_proxy_ms", "MACs proxy", result.proxy_metrics, "C1")):
        _points(ax, good["measured_ms"], good[column], name.split()[0].lower(), titles, labels,
                ms=4.5, alpha=0.8, color=color, mec="none")
        _diagonal(ax, list(good["measured_ms"]) + list(good[column]))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel(f"{name} estimate (ms)")
        ax.set_title(f"{name}: R² {metrics.r2 * 100:.2f} %, MAE {metrics.mae_ms:.2f} ms, MAPE {metrics.mape:.2f} %",
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return svg(fig, titles)


def residual_figure(good, labels):
    """The LUT's and the proxy's errors, each on its own axis: a 0.06 % residual
    and a 55 % one do not share a scale."""
    titles: dict[str, str] = {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, column, name, color in ((axes[0], "err_lut_pct", "LUT", "C0"),
                                    (axes[1], "err_proxy_pct", "MACs proxy", "C1")):
        _points(ax, good["measured_ms"], good[column], f"res-{name.split()[0].lower()}", titles, labels,
                ms=4.5, alpha=0.8, color=color, mec="none")
        ax.axhline(0, color="k", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel(f"{name} estimate error (%)")
        values = good[column].abs()
        ax.set_title(f"{name}: errors within ±{values.max():.3g} %" if len(values) else name, fontsize=10)
        ax.grid(True, alpha=0.25)
    fig.tight_layout()
    return svg(fig, titles)


def memory_figure(good, labels):
    titles: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    _points(ax, good["arena_used"], good["est_arena_bytes"], "arena", titles, labels, ms=4.5, color="C2",
            mec="none", label="arena estimate")
    _points(ax, good["arena_used"], good["appendix_a_bytes"], "appendix", titles, labels, ms=4.5, color="C4",
            mec="none", alpha=0.6, label="Appendix A peak")
    _diagonal(ax, list(good["arena_used"]) + list(good["est_arena_bytes"]) + list(good["appendix_a_bytes"]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # decades only: minor labels of a short log axis overlap
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("TFLM arena used (bytes)")
    ax.set_ylabel("estimate (bytes)")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper left")
    ax.grid(True, which="both", alpha=0.25)
    return svg(fig, titles)


def per_op_figure(per_op):
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.bar(per_op["op"], per_op["error_pct"], color="C0")
    ax.axhline(0, color="k", lw=1)
    ax.set_ylabel("LUT kernel cycles vs device profile (%)")
    ax.tick_params(axis="x", labelsize=8)
    return svg(fig)


def figures(result) -> list[tuple[str, str]]:
    """(title, inline SVG) of every figure."""
    good = _good(result.table)
    labels = [_title(row, n) for n, (_, row) in zip(good.index + 1, good.iterrows())]
    out = [("Estimated against measured latency (log-log)", scatter_figure(good, labels, result)),
           ("Residuals, each estimator on its own axis", residual_figure(good, labels))]
    if len(result.per_op_type):
        out.append(("Error per op type (summed over all architectures)", per_op_figure(result.per_op_type)))
    out.append(("Memory (log-log)", memory_figure(good, labels)))
    return out


TABLE = (("#", None), ("arch", "arch_id"), ("ops", "n_ops"), ("MACs", "macs"), ("measured ms", "measured_ms"),
         ("LUT ms", "est_lut_ms"), ("LUT err", "err_lut_pct"), ("proxy ms", "est_proxy_ms"),
         ("proxy err", "err_proxy_pct"), ("arena used", "arena_used"), ("arena est.", "est_arena_bytes"),
         ("arena err", "err_arena_pct"), ("App. A", "appendix_a_bytes"), ("model B", "model_bytes"),
         ("status", "status"))


def table_rows(table) -> list[tuple[list[str], bool]]:
    """(cells, unusable) per architecture, numbered as the figures' titles number them."""
    rows = []
    for n, (_, row) in enumerate(table.iterrows(), 1):
        cells = []
        for _, column in TABLE:
            value = n if column is None else row.get(column)
            if column and column.startswith("err_"):
                cells.append("-" if value is None or value != value else f"{value:+.2f} %")
            elif column and column.endswith("_ms"):
                cells.append(number(value, 3))
            elif isinstance(value, (int, float, np.integer, np.floating)) and column not in ("arch_id", "status"):
                cells.append(number(value))
            else:
                cells.append(str(value))
        rows.append((cells, not usable(row["status"])))
    return rows


def write_report(result, lut, board) -> None:
    m = lut.meta
    metrics = [(name, f"{x.r2 * 100:.3f} %", f"{x.mae_ms:.3f} ms", f"{x.mape:.2f} %", f"{x.max_error:.2f} %")
               for name, x in (("LUT", result.lut_metrics), ("MACs proxy", result.proxy_metrics))]
    provenance = collect().rows() + [(f"LUT's {what}", value) for what, value in (
        ("board", m.board), ("TFLM", m.tflm), ("compiler", m.compiler), ("firmware fingerprint", m.firmware),
        ("tinyhil", m.tinyhil), ("date", m.created)) if value]
    page = render("validation.html.j2", title=f"Validation of {m.space} {m.input} on {board.name}",
                  subtitle=f"{len(result.table)} random architectures; LUT {lut.path}",
                  result=result, meta=m, lut_path=str(lut.path), metrics=metrics, figures=figures(result),
                  header=[h for h, _ in TABLE], rows=table_rows(result.table), provenance=provenance)
    atomic_write(result.report_path, page)
