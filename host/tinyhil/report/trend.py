"""The trend page of the regression history (templates/trend.html.j2): per
board environment and metric, every benchmark's change against its baseline
over the runs, the tolerance band shaded, regressions marked and named; the
runs on the x axis by the commit (and firmware) that made them; then one
small panel per failing case with its own baseline and band; the latest
run's verdicts."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from tinyhil.files import atomic_write  # noqa: E402
from tinyhil.provenance import collect  # noqa: E402
from tinyhil.report.render import render, svg  # noqa: E402

METRICS = {"cycles": ("cycles", "change against the baseline (%)"),
           "arena_bytes": ("arena bytes", "change against the baseline (bytes)")}
FAILING = ("regression", "error")
MAX_PANELS = 12  # failing cases drawn one by one (the worst first)


def run_labels(history: pd.DataFrame) -> dict[str, str]:
    """run id -> its x-axis label: the commit that ran it and the firmware
    that measured it (runs from before these were recorded: the run id)."""
    labels = {}
    for run, rows in history.groupby("run_id", sort=True):
        commit = _first(rows, "commit")
        firmware = _first(rows, "firmware")
        # the run's start (ids are UTC times, 20261207T195212...Z): runs of one commit stay apart
        when = f"{run[4:6]}-{run[6:8]} {run[9:11]}:{run[11:13]}" if len(run) >= 13 and run[8] == "T" else run
        if commit or firmware:
            labels[run] = f"{commit[:12] or '?'}\nfw {firmware[:8] or '?'}\n{when}"
        else:
            labels[run] = run
    return labels


def _first(rows: pd.DataFrame, column: str) -> str:
    if column not in rows:
        return ""
    values = [v for v in rows[column] if isinstance(v, str) and v]
    return values[0] if values else ""


def _change(rows: pd.DataFrame, metric: str) -> pd.Series:
    base = rows["baseline"]
    if metric == "cycles":
        return (rows["measured"] / base - 1) * 100
    return rows["measured"] - base


def _band(rows: pd.DataFrame, metric: str) -> float:
    tol = rows["tolerance"].astype(float).max() if len(rows) else 0.0
    return tol * 100 if metric == "cycles" else tol


def overview_figure(rows: pd.DataFrame, metric: str, runs: list[str], labels: dict[str, str]):
    """Every case's change against its baseline; the band: the tolerance."""
    position = {run: n for n, run in enumerate(runs)}
    judged = rows[rows["baseline"].notna() & rows["measured"].notna()]
    fig, ax = plt.subplots(figsize=(12, 4.6))
    band = _band(judged, metric)
    ax.axhspan(-band, band, color="#cfe8cf", zorder=0,
               label=f"tolerance (widest: ±{band:g}{' %' if metric == 'cycles' else ' B'})" if band else "tolerance 0")
    ax.axhline(0, color="k", lw=0.8, zorder=1, label="baseline")
    few = judged["case"].nunique() <= 10
    for case, case_rows in judged.groupby("case", sort=True):
        case_rows = case_rows.drop_duplicates("run_id", keep="last")
        x = [position[r] for r in case_rows["run_id"]]
        ax.plot(x, _change(case_rows, metric), marker="o", ms=3, lw=1, alpha=0.8, label=case if few else None)
    bad = judged[judged["verdict"].isin(FAILING)]
    if len(bad):
        y = _change(bad, metric)
        ax.scatter([position[r] for r in bad["run_id"]], y, s=110, marker="X", color="#d62728", zorder=5,
                   edgecolor="k", linewidth=0.6, label="regression")
        for run, case, value in zip(bad["run_id"], bad["case"], y):
            ax.annotate(f"{case}: {value:+.2f}{' %' if metric == 'cycles' else ' B'}", (position[run], value),
                        textcoords="offset points", xytext=(8, 6), fontsize=8, color="#a01010")
    low, high = ax.get_ylim()
    least = 0.5 if metric == "cycles" else 1.0  # a flat history: a readable scale, not 1e-17
    ax.set_ylim(min(low, -least, -band * 1.3), max(high, least, band * 1.3))
    ax.set_ylabel(METRICS[metric][1])
    ax.set_xticks(range(len(runs)), [labels[r] for r in runs], fontsize=7)
    ax.set_xlim(-0.5, len(runs) - 0.5 + (0.6 if len(bad) else 0))
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def case_panels(rows: pd.DataFrame, metric: str, runs: list[str], labels: dict[str, str]):
    """One panel per failing case: its figure over the runs, its baseline and
    tolerance band (absolute), the failing runs marked."""
    bad_cases = list(rows.loc[rows["verdict"].isin(FAILING), "case"].drop_duplicates())[:MAX_PANELS]
    if not bad_cases:
        return None
    position = {run: n for n, run in enumerate(runs)}
    cols = min(3, len(bad_cases))
    n_rows = (len(bad_cases) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.3 * cols, 3.3 * n_rows), squeeze=False)
    for ax in axes.flat[len(bad_cases):]:
        ax.axis("off")
    for ax, case in zip(axes.flat, bad_cases):
        mine = rows[(rows["case"] == case) & rows["measured"].notna()].drop_duplicates("run_id", keep="last")
        x = [position[r] for r in mine["run_id"]]
        ax.plot(x, mine["measured"], marker="o", ms=4, color="C0", label="measured")
        for (_, r), xi in zip(mine.iterrows(), x):
            if r["baseline"] == r["baseline"] and r["baseline"] is not None:
                tol = r["tolerance"] * r["baseline"] if metric == "cycles" else r["tolerance"]
                ax.fill_between([xi - 0.35, xi + 0.35], r["baseline"] - tol, r["baseline"] + tol,
                                color="#cfe8cf", zorder=0)
                ax.hlines(r["baseline"], xi - 0.35, xi + 0.35, color="k", lw=1.2)
            if r["verdict"] in FAILING:
                ax.plot([xi], [r["measured"]], "X", ms=11, color="#d62728", mec="k")
        ax.set_title(case, fontsize=8)
        ax.set_ylabel(METRICS[metric][0], fontsize=8)
        ax.set_xticks(range(len(runs)), [labels[r].split("\n")[0] for r in runs], fontsize=6, rotation=30,
                      ha="right")
        ax.set_xlim(-0.5, len(runs) - 0.5)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.tick_params(axis="y", labelsize=7)
    handles = [plt.Line2D([], [], color="C0", marker="o", label="measured"),
               plt.Line2D([], [], color="k", label="baseline"),
               plt.Rectangle((0, 0), 1, 1, color="#cfe8cf", label="tolerance band"),
               plt.Line2D([], [], color="#d62728", marker="X", ls="none", mec="k", ms=9, label="regression")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, -0.04))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def trend_figures(history: pd.DataFrame) -> list[dict]:
    """{env, metric, title, overview, panels, failing} per board environment and metric."""
    out = []
    numeric = history[history["metric"].isin(list(METRICS))]
    runs = sorted(history["run_id"].unique())
    labels = run_labels(history)
    groups = sorted(numeric.groupby(["environment", "metric"]), key=lambda g: (g[0][0], list(METRICS).index(g[0][1])))
    for (env, metric), rows in groups:
        failing = rows[rows["verdict"].isin(FAILING)]
        panels = case_panels(rows, metric, runs, labels)
        out.append({"env": env, "metric": metric, "failing": len(failing),
                    "title": f"{env}: {METRICS[metric][0]} of each benchmark against its baseline",
                    "overview": svg(overview_figure(rows, metric, runs, labels)),
                    "panels": svg(panels) if panels is not None else None})
    return out


def write_trend(history: pd.DataFrame, path: Path, suite: str) -> Path:
    latest_run = history["run_id"].iloc[-1] if len(history) else ""
    latest = history[history["run_id"] == latest_run]
    runs = (history.groupby("run_id", sort=True)["verdict"].value_counts().unstack(fill_value=0)
            .reset_index() if len(history) else pd.DataFrame(columns=["run_id"]))
    verdict_columns = [c for c in ("pass", "improved", "new", "regression", "error", "skipped")
                       if c in runs.columns]
    labels = run_labels(history)
    run_rows = [{"run_id": r["run_id"], "label": labels.get(r["run_id"], r["run_id"]).replace("\n", " · "),
                 **{v: r[v] for v in verdict_columns}} for r in runs.to_dict("records")]
    failing = latest[latest["verdict"].isin(FAILING + ("skipped",))]
    page = render("trend.html.j2", title=f"Regression trend: suite {suite}",
                  subtitle=f"{len(run_rows)} run(s); latest {latest_run}", suite=suite,
                  figures=trend_figures(history), latest_run=latest_run, latest=latest.to_dict("records"),
                  failing=failing.to_dict("records"), runs=run_rows, verdicts=verdict_columns,
                  provenance=collect().rows())
    return atomic_write(path, page)
