"""The deployment report: estimate against measurement for deployed models,
one HTML file (figures embedded), and the same rows as a table for the console."""
from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from tinyhil.files import atomic_write  # noqa: E402
from tinyhil.report.validation import _png  # noqa: E402


def _fmt(value, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _mark(ok) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def figure_rows(d) -> list[tuple[str, str, str, str, str]]:
    """(figure, estimate, measured, target, under target) for one deployment."""
    checks = d.checks()
    t = d.targets
    p = d.predicted
    if p is None:
        latency = [("latency (ms)", _fmt(d.estimate.latency_ms, digits=2), _fmt(d.measured_ms, digits=2),
                    _fmt(t.latency_ms, digits=1), _mark(checks["latency"]))]
    else:  # the target is the predicted board's: judged by its bound, not by the emulated board's ms
        latency = [(f"latency on {d.board} (ms)", _fmt(d.estimate.latency_ms, digits=2),
                    _fmt(d.measured_ms, digits=2), "-", f"- (judged on {p.board})"),
                   (f"latency on {p.board} (ms), predicted, at {p.bound}",
                    f"{p.ms:,.2f}, at {p.bound} {p.ms_bound:,.2f}", "-", _fmt(t.latency_ms, digits=2),
                    _mark(checks["latency"]))]
    return [
        *latency,
        ("peak memory: arena (B)", _fmt(d.estimate.ram), _fmt(d.arena_used), _fmt(t.ram_bytes),
         _mark(checks["ram"])),
        ("flash: int8 model (B)", _fmt(d.estimate.flash), _fmt(d.model_bytes), _fmt(t.flash_bytes),
         _mark(checks["flash"])),
        ("flash: whole image (B)", "-", _fmt(d.image_flash_bytes), "-", "-"),
    ]


def summary_rows(deployments) -> list[dict]:
    """One line per deployment: what a sweep or the console shows."""
    rows = []
    for d in deployments:
        rows.append({"engine": d.engine, "board": d.board, "data": d.data,
                     "target ms": _fmt(d.targets.latency_ms, digits=1)
                     + (f" ({d.predicted.board} at {d.predicted.bound}: {d.predicted.ms_bound:,.2f})"
                        if d.predicted else ""),
                     "est. ms": _fmt(d.estimate.latency_ms, digits=2), "measured ms": _fmt(d.measured_ms, digits=2),
                     "error": f"{d.latency_error_pct:+.2f} %",
                     "target B": _fmt(d.targets.ram_bytes), "arena est.": _fmt(d.estimate.ram),
                     "arena used": _fmt(d.arena_used), "under targets": "yes" if d.under_targets else "NO",
                     **({"int8 MAE dev/host": f"{d.scores['int8_device'].mae:.4g}/{d.scores['int8_host'].mae:.4g}"}
                        if d.scores["int8_host"].is_regression else
                        {"int8 acc. dev/host": f"{d.scores['int8_device'].accuracy:.3f}/"
                                               f"{d.scores['int8_host'].accuracy:.3f}"}),
                     "same classes": f"{d.predictions_equal}/{d.test_windows}",
                     "same outputs": f"{d.outputs_equal}/{d.test_windows} (max {d.max_output_steps} step)"})
    return rows


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _layers_figure(d) -> str:
    rows = [r for r in d.layers]
    fig, ax = plt.subplots(figsize=(11, 3.8))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r.device_cycles for r in rows], 0.4, label="device")
    ax.bar([i + 0.2 for i in x], [r.lut_cycles or 0 for r in rows], 0.4, label="LUT row")
    ax.set_xticks(list(x), [f"{r.index}:{r.op}" for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(d.counter)
    ax.legend()
    return _png(fig)


def write_report(deployments, path: Path, title: str = "tinyhil deployment") -> Path:
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if len(deployments) > 1:
        rows = summary_rows(deployments)
        parts.append("<h2>All deployments</h2>" + _table(list(rows[0]), [list(r.values()) for r in rows]))
    for d in deployments:
        parts.append(f"<h2>{html.escape(d.engine)} on {html.escape(d.board)}: {html.escape(d.data)}, "
                     f"architecture {d.architecture_id}</h2><p>run: {html.escape(d.run_dir)}</p>")
        for w in d.warnings:
            parts.append(f"<p class='warn'>warning: {html.escape(w)}</p>")
        parts.append("<h3>Estimate against measurement</h3>"
                     + _table(("figure", "estimate (LUT)", "measured", "target", "under target"), figure_rows(d))
                     + f"<p>latency estimate error {d.latency_error_pct:+.2f} % ({d.estimated_cycles:,.0f} "
                       f"estimated, {d.cycles:,.0f} measured {d.counter}, median of {len(d.measured_cycles)}; "
                       f"{d.clock_hz / 1e6:g} MHz)</p>")
        if d.scores["int8_host"].is_regression:
            scores = ("<h3>Regression error on the held-out test windows</h3>" + _table(
                ("model", "MAE", "RMSE"),
                [(name.replace("_", " "), f"{s.mae:.4g}", f"{s.rmse:.4g}") for name, s in d.scores.items()]))
            same = "predicted values"
        else:
            scores = ("<h3>Accuracy on the held-out test windows</h3>" + _table(
                ("model", "accuracy", "macro F1"),
                [(name.replace("_", " "), f"{s.accuracy:.3f}", f"{s.f1:.3f}") for name, s in d.scores.items()]))
            same = "predicted classes"
        parts.append(scores
            + f"<p>device vs host int8 interpreter: {d.predictions_equal}/{d.test_windows} {same} "
              f"equal, {d.outputs_equal}/{d.test_windows} outputs byte for byte (largest difference "
              f"{d.max_output_steps} int8 step(s))</p>")
        parts.append("<h3>Per-layer profile beside the LUT rows</h3>" + _table(
            ("#", "op", f"device ({d.counter})", "LUT row", "LUT kernel", "difference"),
            [(r.index, r.op, f"{r.device_cycles:,.0f}", r.lut_key or "(not in the architecture)",
              _fmt(r.lut_cycles), "-" if not r.lut_cycles else f"{(r.lut_cycles / r.device_cycles - 1) * 100:+.2f} %")
             for r in d.layers]) + f"<img src='data:image/png;base64,{_layers_figure(d)}'>")
        parts.append("<p>seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in d.seconds.items()) + "</p>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}.warn{color:#a60}")
    return atomic_write(path, f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                              f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>")
