"""`tinyhil bench characterize`: the characterization flows from empty caches."""
from __future__ import annotations

from pathlib import Path

import typer

from tinyhil.board_catalog import get_board
from tinyhil.cli import Table, console, options, progress_bars, reports_errors
from tinyhil.cli.bench import bench_app
from tinyhil.cli.characterize import print_characterization
from tinyhil.errors import TinyhilError


@bench_app.command("characterize")
@reports_errors
def bench_characterize(
    space: str = typer.Option("micronas", help="micronas | tinytnas | timenas"),
    input: str = typer.Option("128x9", "--input", help="window x channels"),
    classes: int = typer.Option(6, min=1, help="number of classes"),
    board: str = options.BOARD,
    flows: str = typer.Option("converter,direct,per-image",
                              help="flows to run, in order: converter | direct | per-image"),
    per_image_ops: int = typer.Option(10, min=1, help="ops the one-op-per-image flow measures "
                                      "(its whole-space time is projected from them)"),
    rows: int = typer.Option(10, min=0, help="ops with the largest count differences to list"),
    baseline: str = typer.Option("", help="a git revision: its tinyhil characterizes the space too "
                                 "(before), alternately with this checkout's (after), each from empty "
                                 "caches; figures side by side, the emulator ceiling, the tables diffed "
                                 "(--flows is then not used)"),
    rounds: int = typer.Option(1, min=1, help="with --baseline: runs of each side, alternating"),
    keep: Path = typer.Option(None, help="with --baseline: copy each run's luts directory here"),
    limit: int = typer.Option(None, min=1, help="with --baseline: only the space's first N ops (a quick look)"),
) -> None:
    """Characterize a space from empty caches by each flow (converter models
    packed, direct models packed, one op per image) and print where the time
    went, the speed-ups and the two makers' per-op counts side by side. With
    --baseline REV: this checkout against REV's tinyhil, before and after."""
    from tinyhil.benchmarks.characterize import FLOWS
    from tinyhil.benchmarks.characterize import bench_characterize as run_bench
    from tinyhil.spaces import parse_input

    if baseline:
        window, channels = parse_input(input)
        get_board(board)  # a known board, before minutes of work
        _bench_before_after(baseline, board, space, input, window, channels, classes, rounds, keep, limit)
        return
    chosen = tuple(f.strip() for f in flows.split(",") if f.strip())
    unknown = [f for f in chosen if f not in FLOWS]
    if unknown or not chosen:
        raise TinyhilError(f"--flows: unknown flow(s) {', '.join(unknown) or '(none given)'}; "
                           f"known: {', '.join(FLOWS)}")
    window, channels = parse_input(input)
    config = get_board(board)
    with progress_bars() as progress:
        def show(flow_result):
            progress.console.print(f"[bold]{flow_result.flow}[/] done")
            print_characterization(flow_result.result)

        results, comparison = run_bench(config, space, window, channels, classes, chosen,
                                        per_image_ops, progress, on_flow=show)
    _print_bench_characterize(results, comparison, space, input, window, channels, board, rows)


def _print_bench_characterize(results, comparison, space, input, window, channels, board, rows) -> None:
    from tinyhil.benchmarks.characterize import (
        CONVERTER,
        COUNT_TARGET_PERCENT,
        DIRECT,
        MINUTES_TARGET,
        PER_IMAGE,
        SPEEDUP_TARGET,
    )

    met = lambda ok: "[green]met[/]" if ok else "[red]NOT met[/]"  # noqa: E731
    table = Table("flow", "ops", "images", "wall", "ops/min", "generate", "builds", "boots", "measure",
                  "whole space", title=f"characterize {space} {input} on {board}, each from empty caches")
    for flow, r in results.items():
        t = r.result.timing
        projected = r.result.measured_now < r.ops_in_space
        table.add_row(flow, f"{r.result.measured_now}", f"{t.images}", f"{t.wall_s:.1f} s",
                      f"{r.result.measured_now / t.wall_s * 60:.0f}" if t.wall_s else "-",
                      f"{t.generate_s:.1f} s", f"{t.build_s:.1f} s", f"{t.boot_s:.1f} s",
                      f"{t.measure_s:.1f} s",
                      f"{r.whole_space_s / 60:.2f} min" + (" (projected)" if projected else ""))
    console.print(table)
    direct = results.get(DIRECT)
    for slower in (CONVERTER, PER_IMAGE):
        if direct and slower in results:
            ratio = results[slower].whole_space_s / direct.whole_space_s
            note = f" (target >= {SPEEDUP_TARGET:g}x: {met(ratio >= SPEEDUP_TARGET)})" if slower == CONVERTER else ""
            console.print(f"direct is {ratio:.1f}x faster than {slower} over the whole space{note}")
    if direct and (space, window, channels) in MINUTES_TARGET:
        limit = MINUTES_TARGET[(space, window, channels)]
        minutes = direct.whole_space_s / 60
        console.print(f"direct flow: {space} {input} table in {minutes:.2f} min "
                      f"(target < {limit:g} min: {met(minutes < limit)})")
    if comparison is None:
        return
    table = Table("op", "ops", "max |diff| %", "mean diff %", "kernel max |diff| %",
                  title="instruction counts per inference, direct against converter models")
    for op, r in comparison.by_type().iterrows():
        table.add_row(op, f"{int(r['ops'])}", f"{r['max_abs_percent']:.3f}", f"{r['mean_percent']:+.3f}",
                      f"{r['kernel_max_abs_percent']:.3f}")
    console.print(table)
    if rows:
        table = Table("op key", "converter", "direct", "diff %", "arena conv/direct",
                      title=f"the {rows} largest differences")
        for key, r in comparison.furthest(rows).iterrows():
            table.add_row(key, f"{r['converter']:,.0f}", f"{r['direct']:,.0f}", f"{r['diff_percent']:+.3f}",
                          f"{r['arena_converter']}/{r['arena_direct']}")
        console.print(table)
    key, largest = comparison.largest
    arena_differs = int((comparison.table["arena_converter"] != comparison.table["arena_direct"]).sum())
    console.print(f"largest count difference: {largest:+.3f} % ({key}) over {len(comparison.table)} ops "
                  f"(target <= {COUNT_TARGET_PERCENT:g} %: {met(abs(largest) <= COUNT_TARGET_PERCENT)}); "
                  f"arena bytes differ for {arena_differs} op(s)", highlight=False)


def _bench_before_after(revision, board, space, input, window, channels, classes, rounds, keep, limit) -> None:
    from tinyhil.benchmarks.characterize import MINUTES_TARGET
    from tinyhil.benchmarks.characterize_speed import (
        CEILING_ROWS,
        SECONDS_ROWS,
        bench_before_after,
        median_wall,
    )

    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    runs, comparisons = bench_before_after(revision, board, space, window, channels, classes, rounds, keep,
                                           limit, log=lambda line: console.print(line, highlight=False))
    table = Table("", *(f"{run.side.label}, round {run.round}" for run in runs),
                  title=f"tinyhil characterize {space} {input} -c {classes} on {board}, each from empty caches")
    table.add_row("process wall time", *(f"{run.wall_s:.1f} s ({run.wall_s / 60:.2f} min)" for run in runs))
    table.add_row("CPU time, all processes", *(f"{run.cpu_s:.1f} s (user + system)" for run in runs))
    for label in SECONDS_ROWS:
        table.add_row(label, *(run.rows.get(label, "-") for run in runs))
    for label in CEILING_ROWS:
        table.add_row(label, *(run.rows.get(label, "- (not reported)") for run in runs))
    table.add_row("load average at start, end", *(f"{run.load[0]:.1f}, {run.load[1]:.1f}" for run in runs))
    console.print(table)
    labels = list(dict.fromkeys(run.side.label for run in runs))
    walls = {label: median_wall(runs, label) for label in labels}
    limit = None if limit else MINUTES_TARGET.get((space, window, channels))
    met = lambda ok: "[green]met[/]" if ok else "[red]NOT met[/]"  # noqa: E731
    for label in labels:
        target = f" (target < {limit:g} min: {met(walls[label] / 60 < limit)})" if limit else ""
        console.print(f"{label}: {walls[label] / 60:.2f} min{' (median)' if rounds > 1 else ''}{target}",
                      highlight=False)
    if len(labels) == 2:
        cpu = {label: sum(r.cpu_s for r in runs if r.side.label == label) /
               sum(r.side.label == label for r in runs) for label in labels}
        console.print(f"{labels[1]} takes {walls[labels[1]] / walls[labels[0]]:.2f}x the wall time of "
                      f"{labels[0]} and {cpu[labels[1]] / cpu[labels[0]]:.2f}x its CPU time (the work done, "
                      "whatever else the machine runs)", highlight=False)
    first = runs[0]
    for run, comparison in zip(runs[1:], comparisons):
        what = f"{run.side.label} round {run.round} against {first.side.label} round {first.round}"
        if comparison.identical:
            console.print(f"[green]identical[/] tables, {what}: {comparison.rows} rows, every column "
                          "(cycles, kernel_cycles, arena_bytes and the rest)", highlight=False)
        else:
            differing = "; ".join(f"{column}: {len(keys)} ({', '.join(map(str, keys[:3]))})"
                                  for column, keys in comparison.differing.items())
            console.print(f"[red]different[/] tables, {what}: {comparison.rows} vs {comparison.other_rows} "
                          f"rows; {differing}", highlight=False)
    if keep is not None:
        console.print(f"luts directories kept in {keep}", highlight=False)
