"""The validation report: one HTML file, figures embedded as PNG."""
from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from tinyhil.files import atomic_write  # noqa: E402
from tinyhil.verdict import usable  # noqa: E402


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def figures(result) -> list[tuple[str, str]]:
    t = result.table
    good = t[t["status"].map(usable)] if "measured_ms" in t else t.iloc[0:0]
    out = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, column, name, metrics in ((axes[0], "est_lut_ms", "LUT", result.lut_metrics),
                                      (axes[1], "est_proxy_ms", "MACs proxy", result.proxy_metrics)):
        ax.scatter(good["measured_ms"], good[column], s=14, alpha=0.8)
        top = max(good["measured_ms"].max(), good[column].max()) * 1.05 if len(good) else 1
        ax.plot([0, top], [0, top], "k--", lw=1)
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel(f"{name} estimate (ms)")
        ax.set_title(f"{name}: R² {metrics.r2 * 100:.2f} %, MAE {metrics.mae_ms:.2f} ms, "
                     f"MAPE {metrics.mape:.2f} %")
    out.append(("Estimated against measured latency", _png(fig)))

    fig, ax = plt.subplots(figsize=(11, 4))
    ax.scatter(good["measured_ms"], good["err_lut_pct"], s=14, label="LUT")
    ax.scatter(good["measured_ms"], good["err_proxy_pct"], s=14, label="MACs proxy", alpha=0.6)
    ax.axhline(0, color="k", lw=1)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("estimate error (%)")
    ax.legend()
    out.append(("Residuals", _png(fig)))

    if len(result.per_op_type):
        fig, ax = plt.subplots(figsize=(11, 4))
        p = result.per_op_type
        ax.bar(p["op"], p["error_pct"])
        ax.axhline(0, color="k", lw=1)
        ax.set_ylabel("LUT kernel cycles vs device profile (%)")
        out.append(("Error per op type (summed over all architectures)", _png(fig)))

    fig, ax = plt.subplots(figsize=(11, 4))
    ax.scatter(good["arena_used"], good["est_arena_bytes"], s=14, label="arena estimate")
    ax.scatter(good["arena_used"], good["appendix_a_bytes"], s=14, label="Appendix A peak", alpha=0.6)
    top = max(good["arena_used"].max(), good["est_arena_bytes"].max()) * 1.05 if len(good) else 1
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.set_xlabel("TFLM arena used (bytes)")
    ax.set_ylabel("estimate (bytes)")
    ax.legend()
    out.append(("Memory", _png(fig)))
    return out


def write_report(result, lut, board) -> None:
    m = lut.meta
    rows = "".join(
        f"<tr><td>{name}</td><td>{x.r2 * 100:.3f} %</td><td>{x.mae_ms:.3f} ms</td>"
        f"<td>{x.mape:.2f} %</td><td>{x.max_error:.2f} %</td></tr>"
        for name, x in (("LUT", result.lut_metrics), ("MACs proxy", result.proxy_metrics)))
    images = "".join(f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,{data}'>"
                     for title, data in figures(result))
    table = result.table.drop(columns=["choices"]).to_html(index=False, float_format=lambda v: f"{v:,.2f}")
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>tinyhil validation: {html.escape(m.space)} on {html.escape(board.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}} img{{max-width:100%}}</style></head><body>
<h1>Validation of {html.escape(m.space)} {html.escape(m.input)} on {html.escape(board.name)}</h1>
<p>{len(result.table)} random architectures; LUT {html.escape(str(lut.path))} ({html.escape(m.core)},
{m.clock_hz / 1e6:g} MHz, counter {html.escape(m.counter)}, {html.escape(m.tflm)}, {html.escape(m.compiler)}).
Cycles are guest instructions on emulated boards.</p>
<table><tr><th>estimator</th><th>R²</th><th>MAE</th><th>MAPE</th><th>max error</th></tr>{rows}</table>
<p>Memory: arena estimate within {result.memory_max_error:.2f} % of the TFLM arena used for every
architecture (worst case); the Appendix A peak is {result.appendix_a_ratio:.3f} x the arena used (median).</p>
{images}<h2>Every architecture</h2>{table}</body></html>"""
    atomic_write(result.report_path, page)
