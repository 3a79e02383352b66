"""`tinyhil bench calibrate`: calibration against the shared board measurements."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tinyhil.cli import console, progress_bars, reports_errors
from tinyhil.cli.bench import bench_app


@bench_app.command("calibrate")
@reports_errors
def bench_calibrate(
    reference: Path = typer.Option(Path("../shared/data/nucleo_f446re-reference.csv"),
                                   help="ops measured on the physical board"),
    emulated_board: str = typer.Option("qemu-m4", help="emulated board of the same core"),
    luts: Path = typer.Option(Path("luts")),
    seeds: int = typer.Option(5, min=1, help="splits per fraction and sampler"),
    csv: Path = typer.Option(None, help="also write every split's errors here"),
    second_reference: Path = typer.Option(Path("../shared/data/nucleo_l552ze_q-reference.csv"),
                                          help="a second board's few reference rows (none: skip)"),
    second_emulated_board: str = typer.Option("qemu-m33", help="the emulated board of the second one's core"),
    board: str = typer.Option("nucleo_f446re", help="the board the reference was measured on"),
    second_board: str = typer.Option("nucleo_l552ze_q", help="the board the second reference was measured on"),
) -> None:
    """Fit on 10 % and 5 % of the reference rows (sampler-chosen and random),
    predict the rest: MAPE / max / R² per model, the FLOPs baseline, and the
    emulated arena against the reference's arena_used. Then the calibration
    targets, leave-one-shape-out, before and after, on both boards."""
    from tinyhil.benchmarks.calibrate import (
        arena_comparison,
        benchmark,
        calibration_targets,
        errors_frame,
        load_bench_frame,
        sampled_verdicts,
    )
    from tinyhil.files import atomic_write, writable_file

    if csv:
        writable_file(csv, "the errors of every split")  # before measuring
    with progress_bars() as progress:
        ref, frame, measured_now = load_bench_frame(reference, emulated_board, luts, progress, board)
        second = None
        if second_reference and second_reference.name != "none":
            _, second, second_now = load_bench_frame(second_reference, second_emulated_board, luts,
                                                       progress, second_board)
    data = errors_frame(benchmark(frame, ref, seeds=range(seeds)))
    if csv:
        atomic_write(csv, data.to_csv(index=False))
    targets = calibration_targets(frame, second)
    table = Table("fit rows", "sampler", "model", "MAPE mean", "MAPE worst", "max err mean",
                  "max err worst", "R² worst",
                  title=f"{len(frame)} {reference.name} rows on {emulated_board} ({measured_now} measured "
                        f"now); fitted on a fraction, the rest predicted; {seeds} seeds")
    for (fraction, sampler, model), g in data.groupby(["fraction", "sampler", "model"], sort=False):
        chosen = f" ({', '.join(sorted(set(g['chosen_as'])))})" if model == "chosen by CV" else ""
        table.add_row(f"{fraction:.0%} ({g['fitted'].iloc[0]})", sampler, model + chosen,
                      f"{g['mape'].mean():.2f} %", f"{g['mape'].max():.2f} %", f"{g['max_error'].mean():.2f} %",
                      f"{g['max_error'].max():.2f} %", f"{g['r2'].min() * 100:.3f} %")
    console.print(table)
    arena = arena_comparison(frame)
    if arena:
        console.print(f"arena: emulated / reference arena_used over {arena['rows']} ops: median "
                      f"{arena['median']:.3f} (5-95 % {arena['p5']:.3f}-{arena['p95']:.3f}, min {arena['min']:.3f}, "
                      f"max {arena['max']:.3f}); median difference {arena['median_difference_bytes']:+,.0f} B; "
                      + ", ".join(f"{k} {v:.3f}" for k, v in arena["by_type"].items()), highlight=False)
    for v in sampled_verdicts(data):
        console.print(f"BENCH calibrate {v.fraction:.0%} sampled: MAPE {v.mape_mean:.2f} % "
                      f"(worst {v.mape_worst:.2f} %, target <= {v.target_mape:g} %), max error "
                      f"{v.max_mean:.2f} % (worst {v.max_worst:.2f} %"
                      + (f", target <= {v.target_max:g} %" if v.target_max else "") + f"); FLOPs baseline MAPE "
                      f"{v.flops_mape:.2f} %, max {v.flops_max:.2f} %: "
                      + ("meets the targets" if v.meets else "MISSES the targets"), highlight=False)
    table = Table("figure", "target", "before", "after", "",
                  title="calibration targets, every figure leave-one-shape-out; before: model chosen by 5 folds "
                        "among line..features-nnls, emulated arena as is, no bound; after: chosen by shapes, "
                        "geometry terms, p95 bounds, arena offsets")
    fmt = lambda v: "-" if v is None else f"{v:.2f} %"  # noqa: E731
    for t in targets:
        verdict = "" if t.meets is None else ("meets" if t.meets else "MISSES")
        table.add_row(t.figure, t.target, fmt(t.before), fmt(t.after), verdict)
    console.print(table)
    missed = [t.figure for t in targets if t.meets is False]
    console.print(f"BENCH calibrate targets: {sum(t.meets is True for t in targets)} of "
                  f"{sum(t.meets is not None for t in targets)} met"
                  + (f"; missed: {'; '.join(missed)}" if missed else ""), highlight=False)
