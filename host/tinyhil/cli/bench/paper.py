"""`tinyhil bench micronas-paper`: the MicroNAS paper's tables and trade-offs."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tinyhil.cli import console, reports_errors
from tinyhil.cli.bench import bench_app
from tinyhil.cli.search import DATA_HELP, _search_inputs
from tinyhil.errors import TinyhilError


@bench_app.command("micronas-paper")
@reports_errors
def bench_micronas_paper(
    data: str = typer.Option(..., help=DATA_HELP),
    board: str = typer.Option("qemu-m4", help="any board with a MicroNAS LUT, calibrated ones too"),
    seeds: int = typer.Option(3, min=1),
    epochs: int = typer.Option(30, min=2, help="search epochs: every method's budget"),
    warmup: int = typer.Option(10, min=0, help="weight-only epochs before the first alpha update"),
    targets: int = typer.Option(3, min=1, help="targets of each trade-off (Figs. 8 and 10)"),
    retrain_epochs: int = typer.Option(40, min=1),
    qat_epochs: int = typer.Option(10, min=0),
    experiments: str = typer.Option("table,fig8,fig10", help="which of table, fig8, fig10 to run"),
    window: int = typer.Option(None, help="window length, for CSV data"),
    luts: Path = typer.Option(Path("luts")),
    out: Path = typer.Option(Path("runs/micronas-paper")),
) -> None:
    """The MicroNAS paper's Tables 1-2 (MicroNAS, DARTS-Softmax, DARTS-Gumbel,
    random search) and the trade-offs of Figs. 8 and 10, over seeds."""
    from tinyhil.benchmarks.micronas_paper import PaperOptions, run_paper
    from tinyhil.spaces import make_space

    chosen = tuple(e.strip() for e in experiments.split(",") if e.strip())
    if not chosen or set(chosen) - {"table", "fig8", "fig10"}:
        raise TinyhilError(f"--experiments takes table, fig8 and fig10, not {experiments!r}")
    options = PaperOptions(seeds, epochs, warmup, 32, retrain_epochs, qat_epochs, targets, chosen)
    _, splits, lut = _search_inputs("micronas", data, window, 0, board, luts)
    space = make_space("micronas", splits.window, splits.channels, splits.classes)
    outcomes = run_paper(splits, space, lut, options, out, progress=lambda text, o: console.print(
        f"{text}: {o.method} {o.latency_ms:.1f} ms, acc {o.accuracy:.3f}/{o.accuracy_int8:.3f}",
        highlight=False))
    _print_paper(outcomes, splits.name, board, out)


def _print_paper(outcomes, data: str, board: str, out: Path) -> None:
    from tinyhil.benchmarks.micronas_paper import summarize

    def cell(s, field, digits=3, scale=1.0):
        return f"{s.mean[field] * scale:.{digits}f} ± {s.spread[field] * scale:.{digits}f}"

    titles = {"table": f"Tables 1-2 on {data}, {board}: the same targets for every method",
              "fig8": "Fig. 8: latency targets, memory loss off",
              "fig10": "Fig. 10: memory targets, latency loss off"}
    summaries = summarize(outcomes)
    for experiment, title in titles.items():
        if not any(s.experiment == experiment for s in summaries):
            continue  # not run (--experiments)
        table = Table("method", "Lat_t (ms)", "Mem_t (B)", "latency (ms)", "peak App. A (B)", "arena (B)",
                      "acc. float", "acc. int8", "F1 float", "F1 int8", "within", title=title)
        for s in (s for s in summaries if s.experiment == experiment):
            table.add_row(s.method, f"{s.lat_target_ms:.1f}" if s.lat_target_ms else "-",
                          f"{s.mem_target_bytes:,.0f}" if s.mem_target_bytes else "-",
                          cell(s, "latency_ms", 1), cell(s, "appendix_a_bytes", 0), cell(s, "arena_bytes", 0),
                          cell(s, "accuracy"), cell(s, "accuracy_int8"), cell(s, "f1"), cell(s, "f1_int8"),
                          f"{s.within}/{s.seeds}")
        console.print(table)
    console.print(f"mean ± standard deviation over seeds; per run: {out}/paper.csv; plots: {out}/tradeoffs.png",
                  highlight=False)
