"""`tinyhil bench micronas-paper --data uci_har --table2 [--quick]`: the
paper's Table 2 at its own targets, Fig. 8 on both boards, TinyTNAS's README
row and the three engines side by side, with the targets they are judged by."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.table import Table

from tinyhil.cli import console
from tinyhil.errors import TinyhilError


def bench_table2(data: str, given: dict, experiments: str | None, quick: bool, luts: Path, out: Path | None,
                 device: bool, kept_only: bool = False) -> None:
    from tinyhil.benchmarks.micronas_paper.uci_har import EXPERIMENTS, FULL, QUICK, run_uci_har
    from tinyhil.nas.engines import DataSpec

    chosen = tuple(e.strip() for e in (experiments or ",".join(EXPERIMENTS)).split(",") if e.strip())
    if not chosen or set(chosen) - set(EXPERIMENTS):
        raise TinyhilError(f"--experiments with --table2 takes {', '.join(EXPERIMENTS)}, not {experiments!r}")
    if data.split(":")[0] != "uci_har":
        raise TinyhilError(f"--table2 is the paper's UCI-HAR table: --data uci_har (or uci_har:DIR), not {data!r}")
    options = replace(QUICK if quick else FULL, **{k: v for k, v in given.items() if v is not None},
                      experiments=chosen)
    if options.warmup_epochs >= options.epochs:
        raise TinyhilError(f"a warm-up of {options.warmup_epochs} epochs leaves none of {options.epochs} for the "
                           "architecture: give --warmup below --epochs")
    out = out or Path("runs") / f"micronas-paper-uci_har{'-quick' if quick else ''}"
    splits = DataSpec(data).load()
    if splits.report:
        console.print(splits.report, highlight=False, soft_wrap=True)
    console.print(f"{'--quick' if quick else 'full run'}: {options}; kept in {out}/ledger (a rerun resumes)",
                  highlight=False)
    results = run_uci_har(data, splits, options, luts, out, device,
                          log=lambda m: console.print(m, highlight=False), progress=_progress, kept_only=kept_only)
    print_results(results, splits, out, quick)
    if results.missing:
        shown = ", ".join(results.missing[:3]) + (f" and {len(results.missing) - 3} more" if len(results.missing) > 3
                                                  else "")
        console.print(f"--kept-only: {len(results.missing)} planned piece(s) not run yet: {shown}", highlight=False)
    if kept_only:
        return
    if results.failures or any(o.device_error for o in results.outcomes):
        raise typer.Exit(1)


def _progress(step: str, o, kept: bool) -> None:
    how = "kept from an earlier part" if kept else "done"
    if hasattr(o, "row"):
        line = (f"{step} {o.experiment} {o.row} {o.method} seed {o.seed} ({how}): {o.architecture}, "
                f"{o.board} {_ms(o.predicted_ms)} ms ({_ms(o.predicted_bound_ms)} at p95)")
        if o.measured:
            line += f", {o.twin} {o.measured_latency_ms:.2f} ms, arena {o.measured_arena_bytes:,} B"
        line += f"; accuracy {o.accuracy:.3f}, int8 {o.accuracy_int8:.3f}"
        if o.device_error:
            line += f"; [red]not measured:[/] {o.device_error}"
    else:
        line = (f"{step} {o.name} ({how}): {o.description}, {o.measured_ms:.2f} ms on {o.board}, arena "
                f"{o.arena_bytes:,} B; int8 accuracy on the device {o.accuracy_int8_device:.3f}")
    console.print(line, highlight=False)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(t) -> Table:
    table = Table(*t.header, title=t.title)
    for index, row in enumerate(t.rows):
        table.add_row(*row, style="dim" if index in t.quoted else None)
    return table


def print_results(results, splits, out: Path, quick: bool) -> None:
    from tinyhil.benchmarks.micronas_paper import report, verdicts
    from tinyhil.benchmarks.micronas_paper.uci_har import groups
    from tinyhil.files import atomic_write

    all_groups = groups(results.outcomes)
    tables = []
    if any(o.experiment == "table2" for o in results.outcomes):
        tables.append(report.table2(all_groups, len(splits.y_test)))
    if any(o.experiment == "fig8" for o in results.outcomes):
        tables.append(report.fig8(all_groups))
    readme = next((e for e in results.engines if e.name == "tinytnas-readme"), None)
    if readme:
        tables.append(report.tinytnas(readme))
    side = [e for e in results.engines if e.name != "tinytnas-readme"]
    if side:
        tables.append(report.engines(side))
    for t in tables:
        console.print(render(t))
    if results.plots:
        console.print("Fig. 8 plots: " + ", ".join(str(p) for p in results.plots), highlight=False)
    targets = verdicts.window_counts(splits) + verdicts.table2(results.outcomes) + verdicts.tinytnas(readme)
    for t in targets:
        color = {True: "green", False: "red", None: "yellow"}[t.ok]
        console.print(f"[{color}]{t.mark:>7}[/] {t.name}: {t.detail}", highlight=False)
    if results.stale:
        console.print(f"[yellow]note:[/] {len(results.stale)} row(s) kept from an earlier part were searched on "
                      f"another version of their board's LUT (e.g. {results.stale[0]}), and priced on it",
                      highlight=False)
    for failure in results.failures:
        console.print(f"[red]failed:[/] {failure}", highlight=False)
    met = sum(t.ok is True for t in targets)
    summary = (f"BENCH micronas-paper --table2{' --quick' if quick else ''}: {met}/{len(targets)} targets met; "
               f"this run {results.seconds / 60:.1f} min ({results.kept} pieces kept from earlier parts); the "
               f"whole run's pieces took {results.ledger_seconds / 3600:.2f} h of wall time")
    lines = [f"{t.mark}: {t.name}: {t.detail}" for t in targets] + [summary]
    path = atomic_write(out / "summary.md", report.markdown(tables, lines))
    console.print(f"per run: {out}/table2.csv, {out}/engines.csv; these tables: {path}", highlight=False)
    console.print(summary, highlight=False)
