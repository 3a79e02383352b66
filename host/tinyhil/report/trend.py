"""The trend page of the regression history: every benchmark's figures over
the runs, one plot per board environment and metric, the latest verdicts."""
from __future__ import annotations

from pathlib import Path

import jinja2
import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from tinyhil.files import atomic_write  # noqa: E402
from tinyhil.report.validation import _png  # noqa: E402

TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                               autoescape=True, undefined=jinja2.StrictUndefined)


def trend_figures(history: pd.DataFrame) -> list[tuple[str, str]]:
    out = []
    numeric = history[history["metric"].isin(["cycles", "arena_bytes"])
                      & history["measured"].notna()]
    runs = sorted(numeric["run_id"].unique())
    position = {run: n for n, run in enumerate(runs)}
    for (env, metric), rows in numeric.groupby(["environment", "metric"], sort=True):
        fig, (absolute, relative) = plt.subplots(1, 2, figsize=(13, 4))
        few = rows["case"].nunique() <= 12
        for case, case_rows in rows.groupby("case"):
            case_rows = case_rows.drop_duplicates("run_id", keep="last")
            x = [position[r] for r in case_rows["run_id"]]
            first = case_rows["measured"].iloc[0] or 1.0
            absolute.plot(x, case_rows["measured"], marker="o", ms=3, lw=1)
            relative.plot(x, (case_rows["measured"] / first - 1) * 100, marker="o", ms=3, lw=1,
                          label=case if few else None)
        absolute.set_yscale("log")
        absolute.set_ylabel(metric)
        relative.set_ylabel(f"{metric}: change since its first run (%)")
        relative.axhline(0, color="k", lw=0.5, zorder=0)
        for ax in (absolute, relative):
            ax.set_xticks(range(len(runs)), runs, rotation=30, ha="right", fontsize=7)
        if few:
            relative.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1, 1))
        out.append((f"{env}: {metric} of each benchmark over the runs", _png(fig)))
    return out


def write_trend(history: pd.DataFrame, path: Path, suite: str) -> Path:
    latest_run = history["run_id"].iloc[-1] if len(history) else ""
    latest = history[history["run_id"] == latest_run]
    runs = (history.groupby("run_id", sort=True)["verdict"].value_counts().unstack(fill_value=0)
            .reset_index() if len(history) else pd.DataFrame(columns=["run_id"]))
    verdict_columns = [c for c in ("pass", "improved", "new", "regression", "error", "skipped")
                       if c in runs.columns]
    html = TEMPLATES.get_template("trend.html.j2").render(
        suite=suite, figures=trend_figures(history), latest_run=latest_run,
        latest=latest.to_dict("records"), runs=runs.to_dict("records"), verdicts=verdict_columns)
    return atomic_write(path, html)
