"""`tinyhil bench micronas-paper --data uci_har --table2 [--quick]`: the
paper's Table 2 at its own targets, Fig. 8 on both boards, TinyTNAS's README
row and the three engines side by side, with the targets they are judged by."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import typer
from rich.table import Table

from tinyhil.cli import console
from tinyhil.errors import TinyhilError


def bench_table2(data: str, given: dict, experiments: str | None, quick: bool, luts: Path, out: Path | None,
                 device: bool) -> None:
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
                          log=lambda m: console.print(m, highlight=False), progress=_progress)
    print_results(results, splits, out, quick)
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


def _pct(group, name: str) -> str:
    mean = group.mean(name)
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.2f}" + (f" ± {100 * group.spread(name):.2f}" if len(group.outcomes) > 1 else "")


def _num(group, name: str, digits: int = 2) -> str:
    mean = group.mean(name)
    return "-" if math.isnan(mean) else f"{mean:,.{digits}f}"


def _count(group, name: str) -> str:
    ok, judged = group.count(name)
    return "-" if not judged else f"{ok}/{judged}"


def print_results(results, splits, out: Path, quick: bool) -> None:
    from tinyhil.benchmarks.micronas_paper import verdicts
    from tinyhil.benchmarks.micronas_paper.paper_rows import PAPER_BASELINES, TABLE2
    from tinyhil.benchmarks.micronas_paper.uci_har import groups

    all_groups = groups(results.outcomes)
    if any(o.experiment == "table2" for o in results.outcomes):
        table = Table("row", "method", "board (measured on)", "Lat_t (ms)", "Mem_t (B)", "LUT p95 (ms)",
                      "predicted (ms)", "p95 (ms)", "twin (ms)", "arena est. / twin (B)", "acc.", "acc. int8",
                      "F1", "F1 int8", "lat. ok", "mem. ok",
                      title=f"Table 2 on UCI-HAR (test subjects, {len(splits.y_test):,} windows), %, mean ± "
                            "spread over seeds; latency judged by the predicted board figure at p95, memory by "
                            "the arena measured on the twin")
        for row in TABLE2:
            a, q, f, fq = (f"{v:.2f}" for v in row.paper)
            table.add_row(row.name, "paper", row.board, f"{row.lat_target_ms:g}", f"{row.mem_target_bytes:,.0f}",
                          "", "", "", "", "", a, q, f, fq, "", "", style="dim")
            for g in (g for g in all_groups if g.experiment == "table2" and g.row == row.name):
                o = g.outcomes[0]
                table.add_row("", f"{g.method} ({len(g.outcomes)})", f"{g.board} ({o.twin})",
                              f"{row.lat_target_ms:g}", f"{row.mem_target_bytes:,.0f}", _num(g, "latency_bound_ms"),
                              _num(g, "predicted_ms"), _num(g, "predicted_bound_ms"),
                              _num(g, "measured_latency_ms"),
                              f"{_num(g, 'arena_bytes', 0)} / {_num(g, 'measured_arena_bytes', 0)}",
                              _pct(g, "accuracy"), _pct(g, "accuracy_int8"), _pct(g, "f1"), _pct(g, "f1_int8"),
                              _count(g, "within_latency"), _count(g, "within_memory"))
        for method, values in PAPER_BASELINES.items():
            table.add_row("", f"{method}, paper", "independent", "", "", "", "", "", "", "",
                          *(f"{v:.2f}" for v in values), "", "", style="dim")
        console.print(table)
    fig8 = [g for g in all_groups if g.experiment == "fig8"]
    if fig8:
        table = Table("board (measured on)", "Lat_t (ms)", "LUT p95 (ms)", "predicted p95 (ms)", "twin (ms)",
                      "arena twin (B)", "acc.", "acc. int8", "F1", "F1 int8", "lat. ok", "seeds",
                      title="Fig. 8 on UCI-HAR: latency targets, memory loss off (MicroNAS)")
        for g in sorted(fig8, key=lambda g: (g.board, g.lat_target_ms)):
            table.add_row(f"{g.board} ({g.outcomes[0].twin})", f"{g.lat_target_ms:g}", _num(g, "latency_bound_ms"),
                          _num(g, "predicted_bound_ms"), _num(g, "measured_latency_ms"),
                          _num(g, "measured_arena_bytes", 0), _pct(g, "accuracy"), _pct(g, "accuracy_int8"),
                          _pct(g, "f1"), _pct(g, "f1_int8"), _count(g, "within_latency"), str(len(g.outcomes)))
        console.print(table)
        console.print("plots: " + ", ".join(str(p) for p in results.plots), highlight=False)
    readme = next((e for e in results.engines if e.name == "tinytnas-readme"), None)
    if readme:
        print_tinytnas(readme)
    side = [e for e in results.engines if e.name != "tinytnas-readme"]
    if side:
        print_engines(side)
    console.print(f"per run: {out}/table2.csv, {out}/engines.csv", highlight=False)
    targets = verdicts.window_counts(splits) + verdicts.table2(results.outcomes) + verdicts.tinytnas(readme)
    for t in targets:
        color = {True: "green", False: "red", None: "yellow"}[t.ok]
        console.print(f"[{color}]{t.mark:>7}[/] {t.name}: {t.detail}", highlight=False)
    for failure in results.failures:
        console.print(f"[red]failed:[/] {failure}", highlight=False)
    met = sum(t.ok is True for t in targets)
    console.print(f"BENCH micronas-paper --table2{' --quick' if quick else ''}: {met}/{len(targets)} targets met; "
                  f"this run {results.seconds / 60:.1f} min ({results.kept} pieces kept from earlier parts); the "
                  f"whole run's pieces took {results.ledger_seconds / 3600:.2f} h of wall time", highlight=False)


def print_tinytnas(e) -> None:
    from tinyhil.benchmarks.micronas_paper.engines_table import TINYTNAS_README as R

    windows = "" if e.device_windows == e.test_windows else f" ({e.device_windows:,} of {e.test_windows:,} windows)"
    table = Table("", "found", "accuracy (%)", "RAM (KB)", "flash (KB)", "MACs (K)", "latency (ms)", "search",
                  title="TinyTNAS on UCI-HAR under its README's constraints: RAM 20 KB, flash 64 KB, 60K MACs, "
                        "10 min")
    table.add_row("README", "", f"{100 * R['accuracy']:.1f}", f"{R['ram_kb']}", f"{R['flash_kb']}",
                  f"{R['macs'] / 1e3:.1f}", ", ".join(f"{v:g} ({k})" for k, v in R["latency_ms"].items()),
                  f"{R['search_minutes']} min", style="dim")
    latency = f"{e.measured_ms:.2f} ({e.board}, measured)"
    if e.predicted_ms is not None:
        latency += f", {e.predicted_ms:.2f} ({e.predicted_board}, p95 {e.predicted_bound_ms:.2f})"
    table.add_row("tinyhil", e.description,
                  f"{100 * e.accuracy:.1f} float, {100 * e.accuracy_int8_device:.1f} int8 on the device{windows}",
                  f"{e.arena_bytes / 1024:.1f} (arena)", f"{e.model_bytes / 1024:.1f} (int8 model)",
                  f"{e.est_macs / 1e3:.1f}", latency, f"{e.search_seconds / 60:.1f} min")
    console.print(table)
    if e.predict_error:
        console.print(f"no physical board's latency: {e.predict_error}", highlight=False)


def print_engines(engines) -> None:
    from tinyhil.benchmarks.micronas_paper.engines_table import ENGINE_TARGETS as T

    table = Table("engine", "found", "search", "acc.", "F1", "int8 acc. host", "int8 acc. device", "int8 F1 device",
                  "latency est. / measured (ms)", "F446RE predicted (p95)", "arena est. / measured (B)",
                  "flash (B)", "within",
                  title=f"Three engines on UCI-HAR, qemu-m4 (the F446RE's twin): latency {T.latency_ms:g} ms, "
                        f"arena {T.ram_bytes:,.0f} B, flash {T.flash_bytes:,.0f} B")
    for e in engines:
        windows = "" if e.device_windows == e.test_windows else f" ({e.device_windows})"
        predicted = "-" if e.predicted_ms is None else f"{e.predicted_ms:.2f} ({e.predicted_bound_ms:.2f})"
        table.add_row(e.engine, e.description, f"{e.search_seconds / 60:.1f} min", f"{e.accuracy:.3f}",
                      f"{e.f1:.3f}", f"{e.accuracy_int8_host:.3f}", f"{e.accuracy_int8_device:.3f}{windows}",
                      f"{e.f1_int8_device:.3f}", f"{e.est_latency_ms:.2f} / {e.measured_ms:.2f}", predicted,
                      f"{e.est_ram:,} / {e.arena_bytes:,}", f"{e.model_bytes:,}", "yes" if e.within else "NO")
    console.print(table)
