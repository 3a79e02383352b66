"""`tinyhil bench calibrate`: calibration against the shared board measurements."""
from __future__ import annotations

from pathlib import Path

import typer

from tinyhil.cli import Table, console, err_console, options, progress_bars, reports_errors
from tinyhil.cli.bench import bench_app


@bench_app.command("calibrate")
@reports_errors
def bench_calibrate(
    reference: Path = typer.Option(Path("../shared/data/nucleo_f446re-reference.csv"),
                                   help="ops measured on the physical board"),
    emulated_board: str = typer.Option(None, help="emulated board of the same core (default: the board's "
                                       "emulated twin, e.g. qemu-m4 for the F446RE)"),
    luts: Path = options.LUTS,
    seeds: int = typer.Option(5, min=1, help="splits per fraction and sampler (seeds 0..SEEDS-1)"),
    csv: Path = typer.Option(None, help="also write every split's errors here"),
    second_reference: Path = typer.Option(Path("../shared/data/nucleo_l552ze_q-reference.csv"),
                                          help="a second board's few reference rows (none: skip)"),
    second_emulated_board: str = typer.Option(None, help="the emulated board of the second one's core"),
    board: str = typer.Option(None, help="the board the reference was measured on (default: the one its "
                              "LUT or file name names, e.g. nucleo_l552ze_q-reference.csv)"),
    second_board: str = typer.Option(None, help="the board the second reference was measured on"),
    store_wait: str = options.store_wait("the emulated board's store (luts/BOARD/ops.csv)"),
) -> None:
    """Fit on 10 % and 5 % of the reference rows (sampler-chosen and random),
    predict the rest: MAPE / max / R² per model, the FLOPs baseline, and the
    emulated arena against the reference's arena_used. Then the calibration
    targets, leave-one-shape-out, before and after, on both boards, each by
    the board its reference was measured on, with the bounds' coverage."""
    from tinyhil.benchmarks.calibrate import (
        arena_comparison,
        benchmark,
        calibration_targets,
        errors_frame,
        fit_board,
        load_bench_frame,
        sampled_verdicts,
        unseen_type_warnings,
    )
    from tinyhil.files import atomic_write, writable_file

    if csv:
        writable_file(csv, "the errors of every split")  # before measuring
    with progress_bars() as progress:
        told = lambda message: progress.console.print(f"[yellow]waiting:[/] {message}", highlight=False)  # noqa: E731
        wait_s = options.seconds(store_wait, "--store-wait", allow_zero=True)
        boards = [load_bench_frame(reference, emulated_board, luts, progress, board, wait_s, told)]
        if second_reference and second_reference.name != "none":
            boards.append(load_bench_frame(second_reference, second_emulated_board, luts, progress, second_board,
                                           wait_s, told))
    first = boards[0]
    data = errors_frame(benchmark(first.frame, first.reference, seeds=range(seeds)))
    if csv:
        atomic_write(csv, data.to_csv(index=False))
    fits = [fit_board(b.board, b.frame) for b in boards]
    targets = calibration_targets(fits)
    table = Table("fit rows", "sampler", "model", "MAPE mean", "MAPE worst", "max err mean",
                  "max err worst", "R² worst",
                  title=f"{first.label}: {len(first.frame)} {reference.name} rows on {first.emulated} "
                        f"({first.measured_now} measured now); fitted on a fraction, the rest predicted; {seeds} seeds")
    for (fraction, sampler, model), g in data.groupby(["fraction", "sampler", "model"], sort=False):
        chosen = f" ({', '.join(sorted(set(g['chosen_as'])))})" if model == "chosen by CV" else ""
        table.add_row(f"{fraction:.0%} ({g['fitted'].iloc[0]})", sampler, model + chosen,
                      f"{g['mape'].mean():.2f} %", f"{g['mape'].max():.2f} %", f"{g['max_error'].mean():.2f} %",
                      f"{g['max_error'].max():.2f} %", f"{g['r2'].min() * 100:.3f} %")
    console.print(table if len(data) else f"{first.label}: no fraction fitted: 10 % and 5 % of "
                  f"{len(first.frame)} rows are fewer than a fit needs", highlight=False)
    arena = arena_comparison(first.frame)
    if arena:
        console.print(f"{first.label} arena: emulated / reference arena_used over {arena['rows']} ops: median "
                      f"{arena['median']:.3f} (5-95 % {arena['p5']:.3f}-{arena['p95']:.3f}, min {arena['min']:.3f}, "
                      f"max {arena['max']:.3f}); median difference {arena['median_difference_bytes']:+,.0f} B; "
                      + ", ".join(f"{k} {v:.3f}" for k, v in arena["by_type"].items()), highlight=False)
    for v in sampled_verdicts(data, first.board):
        console.print(f"BENCH calibrate {first.label} {v.fraction:.0%} sampled: MAPE {v.mape_mean:.2f} % "
                      f"(worst {v.mape_worst:.2f} %" + (f", target <= {v.target_mape:g} %" if v.target_mape else "")
                      + f"), max error {v.max_mean:.2f} % (worst {v.max_worst:.2f} %"
                      + (f", target <= {v.target_max:g} %" if v.target_max else "") + f"); FLOPs baseline MAPE "
                      f"{v.flops_mape:.2f} %, max {v.flops_max:.2f} %: "
                      + {True: "meets the targets", False: "MISSES the targets", None: "no targets for this board"}[
                          v.meets], highlight=False)
    table = Table("figure", "target", "before", "after", "",
                  title="calibration targets, every figure leave-one-shape-out; before: model chosen by 5 folds "
                        "among line..features-nnls, emulated arena as is, no bound; after: chosen by shapes, "
                        "geometry terms, bounds per op type, arena offsets; each board's targets")
    fmt = lambda v: "-" if v is None else f"{v:.2f} %"  # noqa: E731
    for t in targets:
        verdict = "" if t.meets is None else ("meets" if t.meets else "MISSES")
        table.add_row(t.figure, t.target, fmt(t.before), fmt(t.after), verdict)
    console.print(table)
    for fit, b in zip(fits, boards):
        for warning in unseen_type_warnings(b, fit.after):
            err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    missed = [t.figure for t in targets if t.meets is False]
    console.print(f"BENCH calibrate targets: {sum(t.meets is True for t in targets)} of "
                  f"{sum(t.meets is not None for t in targets)} met"
                  + (f"; missed: {'; '.join(missed)}" if missed else ""), highlight=False)
