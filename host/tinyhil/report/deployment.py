"""The deployment report: estimate against measurement for deployed models,
one self-contained HTML page (templates/deployment.html.j2 and its sections),
and the same rows as a table for the console.

A deployment's page is a list of sections (`sections()`), each a template
under templates/deployment/ and the data it shows: a new view of a
deployment is one more section. What the page draws beyond the Deployment
comes from its run directory: run.json (the architecture, the search's
record), curves.csv (MicroNAS) and predictions.csv."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tinyhil.files import atomic_write
from tinyhil.report import archdraw
from tinyhil.report.compare_layers import compared_data
from tinyhil.report.confusion import confusion_figure, read_predictions
from tinyhil.report.curves import CurveMarks, curves_figure, read_history
from tinyhil.report.layers import Layer, layer_figure, layers, lifetime_figure, share, short_name
from tinyhil.report.render import number, render, svg
from tinyhil.spaces.arch import Architecture

MODEL_FILE = "model_int8.tflite"  # deploy's int8 model in the run directory
WINDOWS_LISTED = 50  # differing windows the HTML report lists (all are in predictions.csv)


def _fmt(value, unit: str = "", digits: int = 0) -> str:
    return number(value, digits, unit)


def _mark(ok) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def _error(estimate, measured) -> str:
    if estimate is None or not measured:
        return "-"
    return f"{(estimate / measured - 1) * 100:+.2f} %"


def figure_rows(d) -> list[tuple[str, str, str, str, str, str]]:
    """(figure, estimate, measured, error, target, under target) for one deployment."""
    checks = d.checks()
    t = d.targets
    p = d.predicted
    if p is None:
        latency = [("latency (ms)", _fmt(d.estimate.latency_ms, digits=2), _fmt(d.measured_ms, digits=2),
                    f"{d.latency_error_pct:+.2f} %", _fmt(t.latency_ms, digits=1), _mark(checks["latency"]))]
    else:  # the target is the predicted board's: judged by its bound, not by the emulated board's ms
        latency = [(f"latency on {d.board} (ms)", _fmt(d.estimate.latency_ms, digits=2),
                    _fmt(d.measured_ms, digits=2), f"{d.latency_error_pct:+.2f} %", "-",
                    f"- (judged on {p.board})"),
                   (f"latency on {p.board} (ms), predicted, at {p.bound}",
                    f"{p.ms:,.2f}, at {p.bound} {p.ms_bound:,.2f}", "-", "-", _fmt(t.latency_ms, digits=2),
                    _mark(checks["latency"]))]
    return [
        *latency,
        ("peak memory: arena (B)", _fmt(d.estimate.ram), _fmt(d.arena_used), _error(d.estimate.ram, d.arena_used),
         _fmt(t.ram_bytes), _mark(checks["ram"])),
        ("flash: int8 model (B)", _fmt(d.estimate.flash), _fmt(d.model_bytes),
         _error(d.estimate.flash, d.model_bytes), _fmt(t.flash_bytes), _mark(checks["flash"])),
        ("flash: whole image (B)", "-", _fmt(d.image_flash_bytes), "-", "-", "-"),
    ]


FIGURE_HEADER = ("figure", "estimate (LUT)", "measured", "error", "target", "under target")


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


def _value(x: float, regression: bool) -> str:
    return f"{x:.4g}" if regression else f"{x:.0f}"


def differing_rows(d) -> list[tuple[str, str, str, str, str]]:
    """(window, label, host, device, outputs differing) of the windows whose outputs differ."""
    regression = d.scores["int8_host"].is_regression
    return [(str(w.window), _value(w.label, regression), _value(w.host, regression), _value(w.device, regression),
             f"{w.differing} output(s), up to {w.max_steps} step(s)") for w in d.differing_windows]


def rerun_command(d, window: int) -> str:
    """The command that compares one window of the deployment layer by layer."""
    return (f"tinyhil run {Path(d.run_dir) / MODEL_FILE} --board {d.board} --compare-layers "
            f"--data {d.run_dir} --test-window {window}")


@dataclass
class Section:
    """One part of a deployment's page: templates/deployment/<template>."""

    id: str  # unique within the page once the deployment's number is appended
    title: str
    template: str
    data: dict = field(default_factory=dict)


def _run_record(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def architecture_of(d, record: dict) -> Architecture | None:
    """The deployed architecture from its run.json (None if that run directory
    now holds another search)."""
    try:
        arch = Architecture.from_dict(record["architecture"])
    except (KeyError, TypeError, ValueError):
        return None
    return arch if arch.id == d.architecture_id else None


def layer_rows(rows: list[Layer]) -> list[dict]:
    shares = share(rows)
    return [{"position": r.position, "cell": r.cell, "op": short_name(r.op), "key": r.op.key,
             "device": _fmt(r.device_cycles), "lut": _fmt(r.lut_cycles),
             "error": "-" if r.error_pct is None else f"{r.error_pct:+.2f} %",
             "share": "-" if shares[i] is None else f"{shares[i]:.1f} %",
             "weights": _fmt(r.op.weights_bytes), "output": _fmt(r.op.output_bytes), "live": _fmt(r.live_bytes)}
            for i, r in enumerate(rows)]


def prediction_data(d, prediction) -> dict:
    """The latency predicted on a physical board (deploy --predict), per op
    with its bound, beside what this board measured; the verdict is the
    deployment's own (d.checks())."""
    by_key = {layer.lut_key: layer for layer in d.layers if layer.lut_key}
    rows = []
    for o in prediction.ops:
        here = by_key.get(o.op.key) if o.op is not None else None
        rows.append({"index": o.index, "op": short_name(o.op) if o.op is not None else "?",
                     "key": o.op.key if o.op is not None else "",
                     "here": _fmt(here.device_cycles) if here else "-",
                     "cycles": _fmt(o.kernel_cycles), "bound": _fmt(o.kernel_bound),
                     "ms": _fmt(None if o.kernel_cycles is None else prediction.ms(o.kernel_cycles), digits=3),
                     "ms_bound": _fmt(None if o.kernel_bound is None else prediction.ms(o.kernel_bound), digits=3)})
    overhead = prediction.invoke_cycles + len(prediction.ops) * prediction.dispatch_cycles
    target = d.targets.latency_ms
    bound_ms = prediction.ms(prediction.total_bound)
    return {"board": prediction.board, "bound": prediction.bound, "lut": str(prediction.lut),
            "clock_mhz": f"{prediction.clock_hz / 1e6:g}", "calibrated": prediction.calibrated, "rows": rows,
            "overhead": _fmt(overhead), "overhead_ms": _fmt(prediction.ms(overhead), digits=3),
            "total": _fmt(prediction.total), "total_bound": _fmt(prediction.total_bound),
            "ms": _fmt(prediction.ms(prediction.total), digits=2), "ms_bound": _fmt(bound_ms, digits=2),
            "target": _fmt(target, digits=2), "warnings": list(prediction.warnings),
            "under": None if target is None else bound_ms <= target,
            "verdict": _mark(d.checks()["latency"]), "here_ms": _fmt(d.measured_ms, digits=2), "here": d.board}


def sections(d, number_: int = 1, prediction=None) -> list[Section]:
    """The sections of one deployment's page, in order."""
    record = _run_record(d.run_dir)
    out = [Section("figures", "Estimate against measurement", "figures.html.j2",
                   {"header": FIGURE_HEADER, "rows": figure_rows(d)})]
    if prediction is not None:
        out.append(Section("prediction", f"Predicted on {prediction.board}", "prediction.html.j2",
                           prediction_data(d, prediction)))
    arch = architecture_of(d, record)
    if arch is not None:
        rows = layers(arch, d.layers)
        out.append(Section("architecture", "The found architecture", "architecture.html.j2",
                           {"drawing": archdraw.draw(rows, arch.input_shape, d.counter, f"architecture-{number_}"),
                            "macs": _fmt(arch.macs), "weights": _fmt(arch.weights_bytes), "ops": len(rows)}))
        out.append(Section("layers", "Per layer: latency and memory", "layers.html.j2",
                           {"rows": layer_rows(rows), "counter": d.counter,
                            "cycles_figure": svg(layer_figure(rows, d.counter)),
                            "arena_figure": svg(lifetime_figure(arch.runtime()))}))
    else:
        out.append(Section("layers", "Per layer: the device profile beside the LUT rows", "profile.html.j2",
                           {"counter": d.counter, "rows": [
                               {"index": r.index, "op": r.op, "device": _fmt(r.device_cycles),
                                "key": r.lut_key or "(not in the architecture)", "lut": _fmt(r.lut_cycles),
                                "error": _error(r.lut_cycles, r.device_cycles)} for r in d.layers],
                            "note": f"{d.run_dir}/run.json no longer holds architecture {d.architecture_id}: "
                                    "no drawing"}))
    out.append(Section("accuracy", "Accuracy on the held-out test windows", "accuracy.html.j2",
                       accuracy_data(d, record)))
    windows = getattr(d, "differing_windows", ())
    if windows:
        listed = differing_rows(d)[:WINDOWS_LISTED]
        out.append(Section("differing", f"Test windows whose outputs differ ({len(windows)})", "differing.html.j2",
                           {"rows": listed, "more": len(windows) - len(listed),
                            "command": rerun_command(d, windows[0].window)}))
    if getattr(d, "layers_compared", None) is not None:
        out.append(Section("compared", "Layer by layer: board against host", "compared.html.j2",
                           compared_data(d.layers_compared)))
    curves = Path(d.run_dir) / "curves.csv"
    if d.engine == "micronas" and curves.is_file():
        history = read_history(curves)
        marks = CurveMarks.from_details(record.get("details", {}), len(history))
        out.append(Section("curves", "The search", "curves.html.j2",
                           {"figure": svg(curves_figure(history, marks)), "marks": marks,
                            "png": str(Path(d.run_dir) / "curves.png"), "csv": str(curves)}))
    out.append(Section("provenance", "Provenance", "provenance.html.j2",
                       {"rows": d.provenance.rows() if getattr(d, "provenance", None) else [],
                        "seconds": ", ".join(f"{k} {v:.1f}" for k, v in d.seconds.items())}))
    return out


def accuracy_data(d, record: dict) -> dict:
    regression = d.scores["int8_host"].is_regression
    if regression:
        header, scores = ("model", "MAE", "RMSE"), [(name.replace("_", " "), f"{s.mae:.4g}", f"{s.rmse:.4g}")
                                                     for name, s in d.scores.items()]
    else:
        header, scores = ("model", "accuracy", "macro F1"), [
            (name.replace("_", " "), f"{s.accuracy:.3f}", f"{s.f1:.3f}") for name, s in d.scores.items()]
    data = {"header": header, "scores": scores, "regression": regression, "figure": None, "differ": 0,
            "same": f"{d.predictions_equal}/{d.test_windows} {'predicted values' if regression else 'predicted classes'}"
                    f" equal, {d.outputs_equal}/{d.test_windows} outputs byte for byte (largest difference "
                    f"{d.max_output_steps} int8 step(s))"}
    predictions = read_predictions(d.run_dir)
    classes = record.get("classes")
    if not regression and predictions is not None and isinstance(classes, int) and classes > 1:
        figure, differ = confusion_figure(predictions, classes)
        data.update(figure=svg(figure), differ=differ)
    return data


def write_report(deployments, path: Path, title: str = "tinyhil deployment", prediction=None) -> Path:
    """`prediction`: estimate.predict's Prediction of the (single) deployed
    model on a physical board (deploy --predict), shown with its bound."""
    pages = []
    for n, d in enumerate(deployments, 1):
        pages.append({"d": d, "n": n, "warnings": list(d.warnings),
                      "heading": f"{d.engine} on {d.board}: {d.data}, architecture {d.architecture_id}",
                      "latency_note": f"{d.estimated_cycles:,.0f} estimated, {d.cycles:,.0f} measured {d.counter}, "
                                      f"median of {len(d.measured_cycles)}; {d.clock_hz / 1e6:g} MHz",
                      "sections": sections(d, n, prediction if len(deployments) == 1 else None)})
    summary = summary_rows(deployments) if len(deployments) > 1 else []
    first = deployments[0] if deployments else None
    subtitle = f"run {first.run_dir}" if len(deployments) == 1 else f"{len(deployments)} deployments"
    return atomic_write(path, render("deployment.html.j2", title=title, subtitle=subtitle, pages=pages,
                                     summary=summary))
