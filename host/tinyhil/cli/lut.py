"""`tinyhil lut show|diff` and `tinyhil calibrate` (an emulated LUT fitted to a physical board)."""
from __future__ import annotations

from pathlib import Path

import typer

from tinyhil.cli import App, Table, app, console, err_console, options, progress_bars, reports_errors
from tinyhil.cli.cluster import CLUSTER, INSECURE, TLS_CA, TLS_CERT, TLS_KEY, cluster_executor
from tinyhil.lut.summary import diff_luts, per_op_type
from tinyhil.lut.table import Lut

lut_app = App(help="Look at lookup tables.")
app.add_typer(lut_app, name="lut")


@lut_app.command("show")
@reports_errors
def lut_show(
    path: Path = typer.Argument(..., help="a LUT file, e.g. luts/qemu-m4/micronas-128x9-c6.csv"),
    op: str = typer.Option(None, help="only this op type, e.g. conv2d"),
    rows: int = typer.Option(20, min=0, help="rows to print (0: none)"),
) -> None:
    """Print a LUT's metadata, a summary per op type, and its first rows."""
    lut = Lut.load(path)
    m = lut.meta
    console.print(f"[bold]{path}[/]: {m.space or 'all ops'} {m.input} on {m.board} ({m.core}, "
                  f"{m.clock_hz / 1e6:g} MHz, {m.counter}); {m.tflm}; {m.compiler}; "
                  f"invoke {m.invoke_cycles:g} + {m.dispatch_cycles:g}/op", highlight=False)
    calibration = m.extra.get("calibration")
    if calibration:
        console.print(f"calibrated (not measured) from {calibration['from_lut']} ({calibration['from_board']}) "
                      f"with {calibration['reference_rows']} reference rows of {calibration['reference']}: "
                      f"model {calibration['model']}, expected MAPE {calibration['expected_mape_pct']:.2f} %, "
                      f"max {calibration['expected_max_error_pct']:.2f} % "
                      f"({calibration.get('chosen_by', 'cross-validated')})"
                      + (f"; {calibration['bound']} bound: {calibration['rows_above_bound_pct']:.1f} % of the "
                         "reference rows above it" if calibration.get("rows_above_bound_pct") is not None else ""),
                      highlight=False, markup=False)
        from tinyhil.lut.calibration.board_lut import calibration_warnings

        for warning in calibration_warnings(m):
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    frame = lut.rows if op is None else lut.rows[lut.rows["op"] == op]
    summary = Table("op", "rows", "flagged", "cycles min", "median", "max", title="per op type")
    for name, r in per_op_type(frame).iterrows():
        summary.add_row(name, f"{r['rows']:.0f}", f"{r['flagged']:.0f}",
                        *(f"{r[c]:,.0f}" for c in ("min", "median", "max")))
    console.print(summary)
    if rows:
        table = Table("key", "cycles", "kernel", "ms", "arena", "status")
        for _, r in frame.head(rows).iterrows():
            table.add_row(r["key"], f"{r['cycles']:,.0f}", f"{r['kernel_cycles']:,.0f}",
                          f"{r['ms']:.3f}", f"{r['arena_bytes']:,.0f}", r["status"])
        console.print(table)


@lut_app.command("diff")
@reports_errors
def lut_diff(
    a: Path = typer.Argument(..., help="the first LUT file (A)"),
    b: Path = typer.Argument(..., help="the second LUT file (B), e.g. the same space on another board"),
    rows: int = typer.Option(10, min=0, help="ops furthest from the median ratio to print (0: none)"),
) -> None:
    """Compare two LUTs (e.g. two boards) op by op: ratio of cycles B/A."""
    diff = diff_luts(Lut.load(a), Lut.load(b))
    for name, (va, vb) in diff.meta.items():
        console.print(f"{name}: {va} -> {vb}", highlight=False)
    console.print(f"{len(diff.joined)} ops in both; {diff.only_a} only in A, {diff.only_b} only in B")
    if not len(diff.joined):
        return
    table = Table("op", "ops", "ratio B/A min", "median", "max", title="per op type")
    for name, r in diff.by_op_type().iterrows():
        table.add_row(name, f"{r['size']:.0f}", *(f"{r[c]:.3f}" for c in ("min", "median", "max")))
    console.print(table)
    if rows:
        table = Table("key", "cycles A", "cycles B", "ratio", title="furthest from the median ratio")
        for key, r in diff.furthest(rows).iterrows():
            table.add_row(key, f"{r['cycles']:,.0f}", f"{r['cycles_b']:,.0f}", f"{r['ratio']:.3f}")
        console.print(table)


@app.command(renamed={"--out": "--lut FILE.csv"})
@reports_errors
def calibrate(
    emulated: Path = typer.Option(..., help="LUT measured on an emulated board, e.g. luts/qemu-m4/ops.csv"),
    reference: Path = typer.Option(..., help="CSV of ops measured on the physical board"),
    board: str = typer.Option(..., help="the physical board (see `tinyhil boards`)"),
    lut: Path = typer.Option(None, help="the calibrated LUT to write [default: luts/BOARD/<the emulated LUT's "
                             "file name>]"),
    strict: bool = typer.Option(False, "--strict", help="refuse a reference file with any bad row "
                                "(default: name each bad row and leave it out)"),
    clock_mhz: float = typer.Option(None, min=1, help="the clock the reference was measured at, if not the "
                                    "board's configured one (e.g. 80 for the L552ZE-Q rows)"),
    store_wait: str = options.store_wait(),
    cluster: str = CLUSTER, tls_ca_file: Path = TLS_CA, tls_cert: Path = TLS_CERT, tls_key: Path = TLS_KEY,
    insecure: bool = INSECURE,
) -> None:
    """Fit emulated counts (+ op features) to a physical board's cycles from a few
    reference rows; report cross-validated errors; write the board's LUT."""
    from tinyhil.lut.calibration.cross_validation import FOLDS
    from tinyhil.measure.calibrate_board import calibrate as run_calibration

    out = lut or emulated.parent.parent / board / emulated.name
    with cluster_executor(cluster, tls_ca_file, tls_cert, tls_key, insecure) as executor, \
            progress_bars() as progress:
        told = lambda message: progress.console.print(f"[yellow]waiting:[/] {message}", highlight=False)  # noqa: E731
        result = run_calibration(emulated, reference, board, out, progress, strict,
                                 int(clock_mhz * 1e6) if clock_mhz else None,
                                 options.seconds(store_wait, "--store-wait", allow_zero=True), told, executor)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    c = result.calibration
    by = "leave-one-shape-out" if c.chosen_by == "grouped" else f"{FOLDS}-fold"
    table = Table("model", f"{FOLDS}-fold MAPE", f"{FOLDS}-fold max", "shape-out MAPE", "shape-out max",
                  "shape-out R²",
                  title=f"{c.rows} reference rows of {c.shapes} input shapes: {FOLDS}-fold and leave-one-shape-out "
                        f"cross-validation, chosen by {by} ({result.measured_now} measured on the emulated board now)")
    for name, e in c.cv.items():
        mark = " (chosen)" if name == c.model.name else ""
        g = c.grouped.get(name)
        table.add_row(name + mark, f"{e.mape:.2f} %", f"{e.max_error:.2f} %",
                      *((f"{g.mape:.2f} %", f"{g.max_error:.2f} %", f"{g.r2 * 100:.3f} %") if g else ("-",) * 3))
    console.print(table)
    if c.selection:
        console.print("geometry terms by " + by + " MAPE: " + "; ".join(
            f"{terms or 'none'} {mape:.3f} %" for terms, mape in c.selection), highlight=False)
    console.print(f"cycles = {c.model.formula()}", highlight=False, markup=False)
    if c.bounds:
        from tinyhil.lut.calibration.bounds import BOUND, COVERAGE

        above = "" if c.coverage is None else (
            f"; {c.above_bound:.1%} of the reference rows above their bound (each bound from the other shapes; "
            + ", ".join(f"{name} {share:.1%}" for name, share in c.coverage.items() if name in COVERAGE) + ")")
        console.print(f"bound {BOUND} (held-out excess over the prediction): "
                      + ", ".join(f"{kind} +{b[BOUND]:.2%}" for kind, b in c.bounds.by_type.items())
                      + f", other op types +{c.bounds.fallback[BOUND]:.2%}{above}", highlight=False)
    console.print(f"wrote {result.out} ({len(result.lut.rows)} ops, calibrated for {board}; "
                  f"expected ({by}) MAPE {c.expected.mape:.2f} %, max {c.expected.max_error:.2f} %)")


@lut_app.command("verify")
@reports_errors
def lut_verify(
    paths: list[Path] = typer.Argument(..., help="LUT files, or directories of them (e.g. luts)"),
    all_rows: bool = typer.Option(False, "--all", help="re-measure every row (default: a sample)"),
    sample: int = typer.Option(24, min=1, help="rows re-measured per table, seeded, over every kernel path"),
    seed: int = typer.Option(0, help="seed of the sample"),
    board: str = typer.Option(None, help="only the tables of this board"),
    port: str = options.PORT,
    update: bool = typer.Option(False, "--update", help="write today's measurements into the tables "
                                "(emulated boards, with --all)"),
    rows: int = typer.Option(10, min=0, help="differing rows printed per table"),
) -> None:
    """Re-measure a committed LUT's rows with today's firmware and diff them:
    exit 1 on any difference on an emulated board (its counts are exact), or
    outside the table's bound on a physical one."""
    from tinyhil.measure.verify import lut_files, todays_firmware, verify_luts

    files = lut_files(paths, board)
    for path in files:  # before measuring: which firmware made each table, which makes it today
        meta = Lut.load(path).meta
        today = todays_firmware(meta)
        verdict = "today's" if meta.firmware == today else f"today's is {today}"
        console.print(f"{path} ({meta.board}): firmware {meta.firmware or '(none recorded)'}, {verdict}",
                      highlight=False)
    with progress_bars() as progress:
        result = verify_luts(files, None if all_rows else sample, seed, board, port, progress, update)
    for check in result.checks:
        largest = max(check.diffs, key=lambda d: abs(d.change), default=None)
        what = f"{check.checked:,} of {check.rows:,} rows re-measured"
        if check.ok:
            console.print(f"[green]same[/] {check.path}: {what}, every one as committed", highlight=False)
            continue
        console.print(f"[red]DIFFERS[/] {check.path}: {what}, {check.keys_changed:,} differ"
                      + (f"; largest {largest.change:+.3%} ({largest.key} {largest.column})" if largest else ""),
                      highlight=False)
        for name, committed, measured in check.overheads:
            console.print(f"  {name}: {committed:g} committed, {measured:g} today", highlight=False)
        if rows and check.diffs:
            table = Table("key", "column", "committed", "today", "change", "allowed")
            for d in sorted(check.diffs, key=lambda d: -abs(d.change))[:rows]:
                table.add_row(d.key, d.column, f"{d.committed:,.0f}", f"{d.measured:,.0f}", f"{d.change:+.3%}",
                              "exact" if d.tolerance == 0 else f"±{d.tolerance:.2%}")
            console.print(table)
    for path in result.updated:
        console.print(f"rewrote {path} with today's measurements", highlight=False)
    changed = sum(not c.ok for c in result.checks)
    console.print(f"{len(result.checks)} table(s), {result.measured_ops:,} ops measured in {result.seconds:.0f} s: "
                  + ("all as committed" if not changed else f"{changed} differ"), highlight=False)
    if changed and not result.updated:
        raise typer.Exit(1)
