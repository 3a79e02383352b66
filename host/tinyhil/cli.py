"""The `tinyhil` command: one thin command per stage, no logic of its own."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer
from rich.console import Console
from rich.table import Table

from .boards import get_board, load_boards
from .errors import TinyhilError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hardware-in-the-loop benchmarking for TinyML time-series NAS.")
console = Console()
err_console = Console(stderr=True)


def _fail(error: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {error}", highlight=False)
    raise typer.Exit(2)


@app.command()
def boards() -> None:
    """List the boards (PlatformIO environments) tinyhil knows."""
    table = Table("board", "transport", "core", "clock", "counter", "flash", "RAM")
    for b in load_boards().values():
        table.add_row(b.name, b.transport, b.core, f"{b.clock_hz / 1e6:g} MHz", b.counter,
                      f"{b.flash_bytes // 1024} KiB", f"{b.ram_bytes // 1024} KiB")
    console.print(table)
    from .device.stlink import stlink_ports

    ports = stlink_ports()
    console.print("ST-LINK ports (Nucleo boards): " + (", ".join(
        f"{p.device} ({p.probe}, serial {p.serial_number})" for p in ports) or "none attached"),
        highlight=False)


@app.command()
def run(
    model: Path = typer.Argument(..., help="int8 .tflite model"),
    board: str = typer.Option("qemu-m4", help="board name (see `tinyhil boards`)"),
    repeat: int = typer.Option(20, min=1, max=1000, help="timed inferences"),
    warmup: int = typer.Option(1, min=0, max=1000, help="untimed inferences first"),
    seed: int = typer.Option(0, help="seed of the random int8 input"),
    port: str = typer.Option("", help="serial port of a physical board"),
    timeout: float = typer.Option(30.0, min=0.1, help="seconds to wait for each reply"),
    json_out: Path = typer.Option(None, "--json", help="also write the report as JSON"),
) -> None:
    """Build firmware for MODEL, run it on BOARD, print cycles, per-op profile,
    memory, and whether the device output equals the host interpreter's."""
    from .run import run_model

    try:
        config = get_board(board)
        with console.status(f"building and measuring {model.name} on {board} ..."):
            report = run_model(model, config, repeats=repeat, warmup=warmup, seed=seed,
                               port=port, timeout=timeout, log=console.log)
    except TinyhilError as error:
        _fail(error)
    _print_report(report)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2))
    if not report.output_matches:
        raise typer.Exit(1)


def _print_report(r) -> None:
    unit = "instructions" if r.counter == "qemu-icount" else "cycles"
    build = "cached" if r.cached_build else f"built in {r.build_seconds:.1f} s"
    console.print(f"[bold]{r.model}[/] on [bold]{r.board}[/] ({r.core}, "
                  f"{r.clock_hz / 1e6:g} MHz, counter {r.counter}, {r.tflm}; image {r.image_id}, {build})")
    summary = Table("", "min", "median", "max", title=f"per inference, {len(r.cycles)} repeats")
    summary.add_row(unit, *(f"{c:,.0f}" for c in (r.cycles_min, r.cycles_median, r.cycles_max)))
    summary.add_row("ms", *(f"{r.ms(c):.3f}" for c in (r.cycles_min, r.cycles_median, r.cycles_max)))
    if r.board_warnings:
        console.print(f"[yellow]board says:[/] {r.board_warnings}", highlight=False)
    console.print(summary)
    total = sum(op.cycles for op in r.ops) or 1
    ops = Table("#", "op", unit, "ms", "share", title="per-op profile (TFLM profiler hook)")
    for op in r.ops:
        ops.add_row(str(op.index), op.op, f"{op.cycles:,.0f}", f"{r.ms(op.cycles):.3f}",
                    f"{op.cycles / total:.1%}")
    console.print(ops)
    memory = Table("", "bytes", title="memory")
    memory.add_row("tensor arena used", f"{r.arena_used:,}")
    memory.add_row("model (flatbuffer)", f"{r.model_bytes:,}")
    memory.add_row("image flash (text + data)", f"{r.flash_bytes:,}")
    memory.add_row("image RAM (data + bss, incl. arena of " + f"{r.arena_bytes:,})", f"{r.ram_bytes:,}")
    console.print(memory)
    if r.output_matches:
        console.print(f"output: [green]bit-exact[/] with the host TFLite interpreter ({r.device_output})")
    else:
        console.print(f"output: [red]DIFFERS[/] from the host TFLite interpreter\n"
                      f"  device {r.device_output}\n  host   {r.host_output}")


lut_app = typer.Typer(help="Look at lookup tables.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks of tinyhil itself (print their figures).", no_args_is_help=True)
app.add_typer(lut_app, name="lut")
app.add_typer(bench_app, name="bench")


def _progress():
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                    console=console, transient=False)


@app.command("export-c")
def export_c(
    model: Path = typer.Argument(..., help="int8 .tflite model"),
    out: Path = typer.Option(Path("."), help="directory for NAME.cc and NAME.h"),
    name: str = typer.Option("g_model", help="C name of the array"),
) -> None:
    """Write the model as a C source and header: aligned array, length,
    input/output quantization (for a firmware of your own)."""
    from .bench.tflite_model import TfliteModel
    from .build.c_array import write_c_array

    try:
        files = write_c_array(TfliteModel.load(model), out, name)
    except TinyhilError as error:
        _fail(error)
    console.print(f"wrote {files.source} and {files.header}")


@app.command()
def characterize(
    space: str = typer.Option(..., help="micronas | tinytnas | timenas"),
    input: str = typer.Option(..., "--input", help="window x channels, e.g. 128x9"),
    classes: int = typer.Option(..., min=1, help="number of classes (1: regression)"),
    board: str = typer.Option("qemu-m4", help="board name (see `tinyhil boards`)"),
    luts: Path = typer.Option(Path("luts"), help="directory of lookup tables"),
    repeats: int = typer.Option(3, min=1, max=1000, help="timed inferences per op"),
    per_image: int = typer.Option(100, min=1, max=1000, help="most benchmarks per firmware image"),
    limit: int = typer.Option(None, min=1, help="only the space's first N ops (a quick, resumable subset)"),
    port: str = typer.Option("", help="serial port of a physical board"),
    sample: str = typer.Option(None, help="only a sample that calibration learns most from, "
                               "e.g. 5% or 40 (ops spread over kernel paths and sizes)"),
    seed: int = typer.Option(0, help="seed of --sample"),
) -> None:
    """Measure every op of a search space on a board into a lookup table (resumable)."""
    from .characterize import Characterizer
    from .spaces import parse_input

    try:
        window, channels = parse_input(input)
        config = get_board(board)
        characterizer = Characterizer(config, luts, repeats, per_image, port)
        characterizer.check_port()  # before any model is made
        with _progress() as progress:
            characterizer.runner.progress = progress
            result = characterizer.run(space, window, channels, classes, limit, sample, seed)
    except TinyhilError as error:
        _fail(error)
    _print_characterization(result)


def _print_characterization(result) -> None:
    t = result.timing
    table = Table("", "value", title=f"characterization -> {result.lut_path}")
    table.add_row(f"ops sampled ({result.sample})" if result.sample else "ops in space", f"{result.total_ops}")
    table.add_row("already in the LUT", f"{result.already_measured}")
    table.add_row("measured now", f"{result.measured_now} ops in {t.images} image(s)")
    table.add_row("flagged (not recorded as good)", f"{len(t.flagged)}")
    table.add_row("skipped (board gave up; measured next run)", f"{len(t.skipped)}")
    per_minute = result.measured_now / t.wall_s * 60 if t.wall_s else 0
    table.add_row("wall time", f"{t.wall_s:.1f} s ({per_minute:.0f} ops/min)")
    table.add_row("model generation", f"{t.generate_s:.1f} s")
    table.add_row("firmware builds", f"{t.build_s:.1f} s (overlaps measuring)")
    table.add_row("boots", f"{t.boot_s:.1f} s")
    table.add_row("measuring", f"{t.measure_s:.1f} s")
    console.print(table)
    for line in t.flagged[:20]:
        console.print(f"[yellow]flagged[/] {line}", highlight=False)
    for line in t.skipped[:20]:
        console.print(f"[red]skipped[/] {line}", highlight=False)


@app.command()
def regress(
    boards_file: Path = typer.Option(Path("boards/lab.yaml"), "--boards", help="board inventory (YAML)"),
    suite: str = typer.Option("nightly", help="suite name (suites/NAME.yaml) or a YAML path"),
    baseline: Path = typer.Option(Path("luts"), help="LUT directory the sampled rows come from"),
    out: Path = typer.Option(Path("out/regress"), help="history, trend page (and default JUnit)"),
    junit: Path = typer.Option(None, help="JUnit XML to write (default OUT/junit.xml)"),
    timeout: float = typer.Option(30.0, min=0.1, help="seconds to wait for each reply"),
    pinned_images: bool = typer.Option(False, "--pinned-images",
                                       help="only print the image each labgrid board must run"),
) -> None:
    """Re-measure a suite on every board of an inventory (in parallel), compare
    with the baselines, write JUnit XML and the trend page; exit 1 on a regression."""
    from .regress.inventory import load_inventory
    from .regress.nightly import pinned_images as images_of
    from .regress.nightly import regress as run_regress
    from .regress.suite import load_suite

    if pinned_images:
        try:
            for name, image in images_of(load_inventory(boards_file), load_suite(suite),
                                         baseline).items():
                console.print(f"{name}: {image.elf} (image {image.image_id})", highlight=False)
        except TinyhilError as error:
            _fail(error)
        return

    def show(row) -> None:
        colour = {"pass": "green", "new": "cyan", "improved": "green"}.get(row.verdict, "red")
        console.print(f"[{colour}]{row.verdict:<10}[/] {row.farm_board:<8} {row.case} "
                      f"{row.metric}: {row.detail}", highlight=False, soft_wrap=True)

    try:
        inventory = load_inventory(boards_file)
        result = run_regress(inventory, load_suite(suite), baseline, out,
                             junit or out / "junit.xml", timeout, on_row=show)
    except TinyhilError as error:
        _fail(error)
    _print_regression(result)
    if result.failed:
        raise typer.Exit(1)


def _print_regression(result) -> None:
    table = Table("", "value", title=f"regress run {result.run_id}"
                  + (" (resumed)" if result.resumed else ""))
    table.add_row("cases measured now", f"{result.measured_now}")
    table.add_row("cases from the interrupted run", f"{result.already}")
    for verdict, n in sorted(result.verdicts.items()):
        table.add_row(f"figures: {verdict}", f"{n}")
    for board, n in sorted(result.stats.cases_by_board.items()):
        table.add_row(f"board {board}", f"{n} cases, {result.stats.jobs_by_board[board]} jobs")
    for (board, step), n in sorted(result.stats.recoveries.items()):
        table.add_row(f"recoveries {board}", f"{step} x{n}")
    table.add_row("wall time", f"{result.stats.wall_s:.1f} s")
    table.add_row("history", str(result.history_path))
    table.add_row("JUnit XML", str(result.junit_path))
    table.add_row("trend page", str(result.trend_path))
    console.print(table)
    for error in result.stats.errors[:10]:
        console.print(f"[red]error[/] {error}", highlight=False)


@app.command()
def validate(
    space: str = typer.Option(..., help="micronas | tinytnas | timenas"),
    input: str = typer.Option(..., "--input", help="window x channels, e.g. 128x9"),
    board: str = typer.Option("qemu-m4", help="board name (see `tinyhil boards`)"),
    classes: int = typer.Option(None, min=1, help="classes (default: the LUT's, if only one)"),
    n: int = typer.Option(100, "--n", min=2, max=5000, help="random architectures"),
    report: Path = typer.Option(Path("out"), help="directory for the HTML report and CSV"),
    luts: Path = typer.Option(Path("luts"), help="directory of lookup tables"),
    seed: int = typer.Option(0, help="seed of the architecture sampler"),
    port: str = typer.Option("", help="serial port of a physical board"),
) -> None:
    """Estimate random architectures (LUT, MACs proxy, memory), measure them
    on the board, and report how far each estimator is from the device."""
    from .spaces import parse_input
    from .validate import validate as run_validation

    try:
        window, channels = parse_input(input)
        config = get_board(board)
        classes = classes or _lut_classes(luts, board, space, input)
        with _progress() as progress:
            result = run_validation(space, window, channels, classes, config, n, luts, report,
                                    seed, port, progress)
    except TinyhilError as error:
        _fail(error)
    table = Table("estimator", "R²", "MAE (ms)", "MAPE", "max error",
                  title=f"{space} {input} on {board}: {len(result.table)} architectures")
    for name, m in (("LUT latency", result.lut_metrics), ("MACs proxy", result.proxy_metrics)):
        table.add_row(name, f"{m.r2 * 100:.3f} %", f"{m.mae_ms:.3f}", f"{m.mape:.2f} %", f"{m.max_error:.2f} %")
    console.print(table)
    console.print(f"memory: arena estimate within {result.memory_max_error:.2f} % of the TFLM arena "
                  f"used (worst architecture); Appendix A peak / arena used = "
                  f"{result.appendix_a_ratio:.3f} (median)")
    flagged = result.table[result.table["status"] != "ok"]
    if len(flagged):
        console.print(f"[yellow]{len(flagged)} architecture(s) flagged[/]: "
                      + "; ".join(flagged["status"].head(3)), highlight=False)
    console.print(f"report: {result.report_path}\ntable:  {result.csv_path}")


def _lut_classes(luts: Path, board: str, space: str, input: str) -> int:
    import re

    found = sorted((luts / board).glob(f"{space}-{input}-c*.csv"))
    if len(found) != 1:
        raise TinyhilError(f"give --classes: {len(found)} LUTs match {luts}/{board}/{space}-{input}-c*.csv")
    return int(re.search(r"-c(\d+)\.csv$", found[0].name).group(1))


@app.command()
def calibrate(
    emulated: Path = typer.Option(..., help="LUT measured on an emulated board, e.g. luts/qemu-m4/ops.csv"),
    reference: Path = typer.Option(..., help="CSV of ops measured on the physical board"),
    board: str = typer.Option(..., help="the physical board (see `tinyhil boards`)"),
    out: Path = typer.Option(None, help="calibrated LUT (default: luts/<board>/<emulated LUT's name>)"),
) -> None:
    """Fit emulated counts (+ op features) to a physical board's cycles from a few
    reference rows; report cross-validated errors; write the board's LUT."""
    from .calibrate import calibrate as run_calibration
    from .lut.calibrate import FOLDS

    out = out or emulated.parent.parent / board / emulated.name
    try:
        with _progress() as progress:
            result = run_calibration(emulated, reference, board, out, progress)
    except TinyhilError as error:
        _fail(error)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    c = result.calibration
    table = Table("model", "CV MAPE", "CV max error", "CV R²",
                  title=f"{c.rows} reference rows, {FOLDS}-fold cross-validation "
                        f"({result.measured_now} measured on the emulated board now)")
    for name, e in c.cv.items():
        mark = " (chosen)" if name == c.model.name else ""
        table.add_row(name + mark, f"{e.mape:.2f} %", f"{e.max_error:.2f} %", f"{e.r2 * 100:.3f} %")
    console.print(table)
    console.print(f"cycles = {c.model.formula()}", highlight=False, markup=False)
    console.print(f"wrote {result.out} ({len(result.lut.rows)} ops, calibrated for {board}; "
                  f"expected MAPE {c.expected.mape:.2f} %, max {c.expected.max_error:.2f} %)")


search_app = typer.Typer(help="Search engines.", no_args_is_help=True)
app.add_typer(search_app, name="search")

UNITS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2,
         "mib": 1024**2, "k": 1e3, "m": 1e6}


def parse_quantity(text: str, default_unit: str) -> float:
    """"40ms" -> 40.0 (ms), "32KB" -> 32768 (bytes), "60k" -> 60000."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text or "")
    unit = (match.group(2) or default_unit).lower() if match else ""
    if not match or unit not in UNITS:
        raise TinyhilError(f"cannot read {text!r}: give a number with a unit, e.g. 40ms, 32KB, 60k")
    return float(match.group(1)) * UNITS[unit]


def parse_duration(text: str) -> float:
    """"10m" -> 600.0 seconds; also "90s", "1h", "45" (seconds)."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h)?\s*", text or "")
    if not match:
        raise TinyhilError(f"cannot read the duration {text!r}: e.g. 10m, 90s, 1h")
    return float(match.group(1)) * {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]


def _search_inputs(engine: str, data: str, window, seed: int, board: str, luts: Path, task="classification"):
    """The data spec, its split, and the board's LUT of the engine's space for
    that data's shape (characterizing what is missing)."""
    from .characterize import space_lut
    from .search import DataSpec

    spec = DataSpec(data, window, seed)
    config = get_board(board)
    splits = spec.load()
    classes = splits.classes if task == "classification" else 1
    with _progress() as progress:
        lut = space_lut(config, engine, splits.window, splits.channels, classes, luts, progress)
    return spec, splits, lut


def _targets(latency=None, ram=None, flash=None, macs=None):
    from .search import Targets

    return Targets(latency_ms=parse_quantity(latency, "ms") if latency else None,
                   ram_bytes=parse_quantity(ram, "b") if ram else None,
                   flash_bytes=parse_quantity(flash, "b") if flash else None,
                   macs=parse_quantity(macs, "") if macs else None)


DATA_HELP = "basic_motions | japanese_vowels | synthetic128x9c6 | FILE.npz | FILE.csv"


@search_app.command("micronas")
def search_micronas(
    data: str = typer.Option(..., help=DATA_HELP),
    board: str = typer.Option("qemu-m4"),
    lat_target: str = typer.Option(None, help="latency target, e.g. 40ms (omit: no latency loss)"),
    mem_target: str = typer.Option(None, help="memory target, e.g. 32KB (omit: no memory loss)"),
    epochs: int = typer.Option(30, min=1),
    batch_size: int = typer.Option(32, min=1),
    window: int = typer.Option(None, help="window length, for CSV data"),
    out: Path = typer.Option(Path("runs/micronas"), help="run directory"),
    luts: Path = typer.Option(Path("luts")),
    seed: int = typer.Option(0),
) -> None:
    """Hardware-aware differentiable search (MicroNAS) with the board's LUT."""
    from . import search

    try:
        targets = _targets(latency=lat_target, ram=mem_target)
        spec, splits, lut = _search_inputs("micronas", data, window, seed, board, luts)
        with _progress() as progress:
            task = progress.add_task("search epochs", total=epochs)
            run = search.micronas(spec, splits, lut, board, targets, epochs, batch_size, out,
                                  on_epoch=lambda r: progress.update(
                                      task, advance=1, description=f"epoch {r.epoch} acc {r.val_accuracy:.2f}"))
    except TinyhilError as error:
        _fail(error)
    est = run.estimate
    console.print(f"found on {splits.name} for {board}: validation accuracy {run.details['val_accuracy']:.3f}; "
                  f"estimated latency {est.latency_ms:.2f} ms (target {lat_target or '-'}), "
                  f"arena {est.ram:,} B (target {mem_target or '-'}), "
                  f"Appendix A peak {run.details['appendix_a_bytes']:,} B; {run.details['seconds']:.0f} s\n"
                  f"choices: {run.architecture.choices}\nrun: {out}", highlight=False)
    if run.details.get("note"):
        console.print(f"note: {run.details['note']}", highlight=False)


@search_app.command("tinytnas")
def search_tinytnas(
    data: str = typer.Option(..., help=DATA_HELP),
    board: str = typer.Option("qemu-m4"),
    ram: str = typer.Option(None, help="e.g. 20KB"),
    flash: str = typer.Option(None, help="e.g. 64KB"),
    macs: str = typer.Option(None, help="e.g. 60k"),
    latency: str = typer.Option(None, help="e.g. 15ms (on this board)"),
    time_budget: str = typer.Option("10m", help="wall-clock budget, e.g. 10m, 90s"),
    epochs: int = typer.Option(5, min=1),
    learning_rate: float = typer.Option(1e-3),
    window: int = typer.Option(None, help="window length, for CSV data"),
    out: Path = typer.Option(Path("runs/tinytnas")),
    luts: Path = typer.Option(Path("luts")),
    seed: int = typer.Option(0),
) -> None:
    """TinyTNAS: time-bound search under RAM, flash, MACs and device latency."""
    from . import search

    try:
        budget = parse_duration(time_budget)
        targets = _targets(latency=latency, ram=ram, flash=flash, macs=macs)
        spec, splits, lut = _search_inputs("tinytnas", data, window, seed, board, luts)
        with console.status("searching (TinyTNAS) ..."):
            run = search.tinytnas(spec, splits, lut, board, targets, budget, epochs, learning_rate, out)
    except TinyhilError as error:
        _fail(error)
    best, d = run.details["best"], run.details
    console.print(f"best k={best[0]} c={best[1]}: val accuracy {best[2]:.3f}, RAM {best[3]:,} B, flash "
                  f"{best[4]:,} B, MACs {best[5]:,}, latency {best[6]:.2f} ms; explored "
                  f"{len(d['explored'])} ({len(d['feasible'])} feasible) in "
                  f"{d['seconds']:.0f} s (budget {budget:.0f} s); run: {out}", highlight=False)


@search_app.command("timenas")
def search_timenas(
    data: str = typer.Option(..., help=DATA_HELP),
    task: str = typer.Option("classification", help="classification | regression"),
    board: str = typer.Option("qemu-m4"),
    ram: str = typer.Option(None, help="e.g. 128KB"),
    flash: str = typer.Option(None, help="e.g. 256KB"),
    latency: str = typer.Option(None, help="e.g. 20ms"),
    n_archs: int = typer.Option(100, min=1),
    proxy: str = typer.Option("zico", help="zico | flops"),
    top_k: int = typer.Option(3, min=1),
    window: int = typer.Option(None),
    out: Path = typer.Option(Path("runs/timenas")),
    luts: Path = typer.Option(Path("luts")),
    seed: int = typer.Option(0),
) -> None:
    """Tiny-TimeNAS: zero-cost proxies over MLP/CNN candidates within the limits."""
    from . import search

    try:
        targets = _targets(latency=latency, ram=ram, flash=flash)
        spec, splits, lut = _search_inputs("timenas", data, window, seed, board, luts, task)
        with console.status(f"sampling {n_archs} candidates, ranking by {proxy} ..."):
            run, found = search.timenas(spec, splits, lut, board, targets, task, n_archs, proxy, top_k, out)
    except TinyhilError as error:
        _fail(error)
    table = Table("#", "type", "layers", "score", "RAM", "flash", "MACs", "latency (ms)",
                  title=f"Tiny-TimeNAS top {top_k} by {proxy} on {board}")
    for rank, f in enumerate(found, 1):
        p, ch = f["profile"], f["architecture"].choices
        table.add_row(str(rank), ch["type"], str(len(ch["layers"])), f"{f['score']:.3g}", f"{p['ram']:,}",
                      f"{p['flash']:,}", f"{p['macs']:,}", f"{p['latency_ms']:.2f}")
    console.print(table)
    console.print(f"run: {out}")


def _print_deployment(d, report: Path) -> None:
    from .report.deployment import figure_rows

    table = Table("figure", "estimate (LUT)", "measured", "target", "under target",
                  title=f"{d.engine} on {d.board}: {d.data}, architecture {d.architecture_id}")
    for row in figure_rows(d):
        table.add_row(*row)
    console.print(table)
    s = d.scores
    console.print(f"latency estimate error {d.latency_error_pct:+.2f} % ({d.counter}); accuracy / F1 on "
                  f"{d.test_windows} test windows: float {s['float'].accuracy:.3f}/{s['float'].f1:.3f}, QAT "
                  f"{s['qat'].accuracy:.3f}/{s['qat'].f1:.3f}, int8 host {s['int8_host'].accuracy:.3f}/"
                  f"{s['int8_host'].f1:.3f}, int8 device {s['int8_device'].accuracy:.3f}/"
                  f"{s['int8_device'].f1:.3f}; device = host int8: classes {d.predictions_equal}/{d.test_windows}, "
                  f"outputs {d.outputs_equal}/{d.test_windows} (max {d.max_output_steps} step)",
                  highlight=False)
    for w in d.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"report: {report}")


def _deploy_options(epochs: int, qat_epochs: int, repeats: int, seed: int, port: str):
    from .deploy.deploy import DeployOptions

    return DeployOptions(epochs=epochs, qat_epochs=qat_epochs, repeats=repeats, seed=seed, port=port)


@app.command()
def deploy(
    run_dir: Path = typer.Argument(..., help="a search run directory (run.json)"),
    board: str = typer.Option(None, help="default: the board the search used"),
    epochs: int = typer.Option(50, min=1, help="float training from scratch"),
    qat_epochs: int = typer.Option(20, min=0, help="quantization-aware training"),
    repeats: int = typer.Option(10, min=1, help="timed inferences"),
    report: Path = typer.Option(None, help="HTML report (default RUN_DIR/report.html)"),
    port: str = typer.Option("", help="serial port (physical boards)"),
    luts: Path = typer.Option(Path("luts")),
    seed: int = typer.Option(0),
) -> None:
    """Retrain a found model with QAT, convert to int8, build it into firmware,
    measure it and its test windows on the board, and report estimate vs measured."""
    from .characterize import space_lut
    from .deploy.deploy import deploy as deploy_run
    from .report.deployment import write_report
    from .search import SearchRun

    try:
        found = SearchRun.load(run_dir)
        config = get_board(board or found.board)
        with _progress() as progress:
            lut = space_lut(config, found.architecture.space, *found.input, found.classes, luts, progress)
        with console.status("deploying ..."):
            result = deploy_run(run_dir, config, lut, _deploy_options(epochs, qat_epochs, repeats, seed, port),
                                log=lambda m: console.print(m, highlight=False))
        path = write_report([result], report or run_dir / "report.html", f"tinyhil deploy: {run_dir}")
    except TinyhilError as error:
        _fail(error)
    _print_deployment(result, path)


@app.command()
def pipeline(
    engine: str = typer.Option(..., help="micronas | tinytnas | timenas"),
    data: str = typer.Option(..., help=DATA_HELP),
    board: str = typer.Option("qemu-m4"),
    lat_target: str = typer.Option(None, help="e.g. 40ms"),
    mem_target: str = typer.Option(None, help="peak memory (arena), e.g. 32KB"),
    flash_target: str = typer.Option(None, help="int8 model size, e.g. 64KB"),
    macs_target: str = typer.Option(None, help="e.g. 60k (TinyTNAS)"),
    search_epochs: int = typer.Option(30, min=1, help="MicroNAS search epochs"),
    budget: str = typer.Option("2m", help="TinyTNAS time budget"),
    candidates: int = typer.Option(100, min=1, help="Tiny-TimeNAS candidates"),
    epochs: int = typer.Option(50, min=1, help="deployment: float training"),
    qat_epochs: int = typer.Option(20, min=0, help="deployment: QAT"),
    window: int = typer.Option(None, help="window length, for CSV data"),
    out: Path = typer.Option(None, help="run directory (default runs/ENGINE-DATA-BOARD)"),
    report: Path = typer.Option(None, help="default OUT/report.html"),
    port: str = typer.Option(""),
    luts: Path = typer.Option(Path("luts")),
    seed: int = typer.Option(0),
) -> None:
    """characterize (cached) -> search -> deploy -> report."""
    from .pipeline import EngineSettings, PipelineConfig
    from .pipeline import pipeline as run_pipeline
    from .search import ENGINES, DataSpec

    try:
        if engine not in ENGINES:
            raise TinyhilError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        config = PipelineConfig(
            engine, DataSpec(data, window, seed),
            _targets(latency=lat_target, ram=mem_target, flash=flash_target, macs=macs_target),
            out or Path("runs") / f"{engine}-{Path(data).stem}-{board}",
            EngineSettings(search_epochs=search_epochs, budget_s=parse_duration(budget), n_archs=candidates),
            _deploy_options(epochs, qat_epochs, 10, seed, port))
        board_config = get_board(board)
        with _progress() as progress:
            result = run_pipeline(config, board_config, luts, report, progress,
                                  log=lambda m: progress.console.print(m, highlight=False))
    except TinyhilError as error:
        _fail(error)
    console.print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()))
    _print_deployment(result.deployment, result.report)


@lut_app.command("show")
def lut_show(
    path: Path,
    op: str = typer.Option(None, help="only this op type, e.g. conv2d"),
    rows: int = typer.Option(20, min=0, help="rows to print (0: none)"),
) -> None:
    """Print a LUT's metadata, a summary per op type, and its first rows."""
    from .lut.table import Lut

    try:
        lut = Lut.load(path)
    except TinyhilError as error:
        _fail(error)
    m = lut.meta
    console.print(f"[bold]{path}[/]: {m.space or 'all ops'} {m.input} on {m.board} ({m.core}, "
                  f"{m.clock_hz / 1e6:g} MHz, {m.counter}); {m.tflm}; {m.compiler}; "
                  f"invoke {m.invoke_cycles:g} + {m.dispatch_cycles:g}/op", highlight=False)
    calibration = m.extra.get("calibration")
    if calibration:
        console.print(f"calibrated (not measured) from {calibration['from_lut']} ({calibration['from_board']}) "
                      f"with {calibration['reference_rows']} reference rows of {calibration['reference']}: "
                      f"model {calibration['model']}, expected MAPE {calibration['expected_mape_pct']:.2f} %, "
                      f"max {calibration['expected_max_error_pct']:.2f} % (cross-validated)",
                      highlight=False, markup=False)
    frame = lut.rows if op is None else lut.rows[lut.rows["op"] == op]
    summary = Table("op", "rows", "flagged", "cycles min", "median", "max", title="per op type")
    for name, group in frame.groupby("op"):
        good = group[group["status"] == "ok"]["cycles"]
        summary.add_row(name, str(len(group)), str(int((group["status"] != "ok").sum())),
                        *(f"{v:,.0f}" for v in (good.min(), good.median(), good.max())))
    console.print(summary)
    if rows:
        table = Table("key", "cycles", "kernel", "ms", "arena", "status")
        for _, r in frame.head(rows).iterrows():
            table.add_row(r["key"], f"{r['cycles']:,.0f}", f"{r['kernel_cycles']:,.0f}",
                          f"{r['ms']:.3f}", f"{r['arena_bytes']:,.0f}", r["status"])
        console.print(table)


@lut_app.command("diff")
def lut_diff(a: Path, b: Path, rows: int = typer.Option(10, min=0)) -> None:
    """Compare two LUTs (e.g. two boards) op by op: ratio of cycles B/A."""
    from .lut.table import Lut

    try:
        lut_a, lut_b = Lut.load(a), Lut.load(b)
    except TinyhilError as error:
        _fail(error)
    for name in ("board", "core", "counter", "tflm", "compiler"):
        va, vb = getattr(lut_a.meta, name), getattr(lut_b.meta, name)
        if va != vb:
            console.print(f"{name}: {va} -> {vb}", highlight=False)
    common = lut_a.rows.index.intersection(lut_b.rows.index)
    console.print(f"{len(common)} ops in both; {len(lut_a.rows.index.difference(common))} only in A, "
                  f"{len(lut_b.rows.index.difference(common))} only in B")
    if not len(common):
        return
    ratio = (lut_b.rows.loc[common, "cycles"] / lut_a.rows.loc[common, "cycles"]).rename("ratio")
    joined = lut_a.rows.loc[common, ["op", "cycles"]].join(ratio)
    joined["cycles_b"] = lut_b.rows.loc[common, "cycles"]
    table = Table("op", "ops", "ratio B/A min", "median", "max", title="per op type")
    for name, group in joined.groupby("op"):
        table.add_row(name, str(len(group)), *(f"{v:.3f}" for v in (
            group["ratio"].min(), group["ratio"].median(), group["ratio"].max())))
    console.print(table)
    if rows:
        far = joined.assign(off=(joined["ratio"] - joined["ratio"].median()).abs())
        table = Table("key", "cycles A", "cycles B", "ratio", title="furthest from the median ratio")
        for key, r in far.sort_values("off", ascending=False).head(rows).iterrows():
            table.add_row(key, f"{r['cycles']:,.0f}", f"{r['cycles_b']:,.0f}", f"{r['ratio']:.3f}")
        console.print(table)


@bench_app.command("characterize")
def bench_characterize(
    space: str = typer.Option("micronas"),
    input: str = typer.Option("128x9", "--input"),
    classes: int = typer.Option(6),
    board: str = typer.Option("qemu-m4"),
) -> None:
    """Characterize a whole space from scratch (fresh model and image caches,
    TFLM already compiled) and print ops/minute and where the time went."""
    import tempfile

    from .characterize import Characterizer
    from .spaces import parse_input

    try:
        window, channels = parse_input(input)
        config = get_board(board)
        with tempfile.TemporaryDirectory(prefix="tinyhil-bench-") as scratch:
            os.environ["TINYHIL_CACHE_DIR"] = str(Path(scratch) / "cache")
            with _progress() as progress:
                result = Characterizer(config, Path(scratch) / "luts", progress=progress).run(
                    space, window, channels, classes)
            t = result.timing
            _print_characterization(result)
            per_image = result.measured_now / t.images if t.images else 0
            console.print(f"BENCH characterize {space} {input} on {board}: "
                          f"{result.measured_now} ops in {t.wall_s / 60:.2f} min "
                          f"= {result.measured_now / t.wall_s * 60:.0f} ops/min; {t.images} images "
                          f"({per_image:.0f} ops/image); flagged {len(t.flagged)}")
    except TinyhilError as error:
        _fail(error)


@bench_app.command("micronas-sweep")
def bench_micronas_sweep(
    board: str = typer.Option("qemu-m4"),
    targets: int = typer.Option(4, min=2, help="latency targets per data set"),
    epochs: int = typer.Option(30, min=1),
    retrain_epochs: int = typer.Option(40, min=1, help="float training of each found network"),
    mem_target: str = typer.Option("64KB"),
    luts: Path = typer.Option(Path("luts")),
    out: Path = typer.Option(Path("runs/micronas-sweep")),
) -> None:
    """MicroNAS over a sweep of latency targets on BasicMotions and a synthetic
    128x9 six-class set: estimate against target, and accuracy per target."""
    from .characterize import space_lut
    from .nas.micronas.sweep import sweep

    try:
        config = get_board(board)
        with _progress() as progress:
            rows = sweep(config, targets, epochs, retrain_epochs, parse_quantity(mem_target, "b"),
                         luts, out, progress, space_lut)
    except TinyhilError as error:
        _fail(error)
    table = Table("data", "Lat_t (ms)", "est. (ms)", "Mem_t (B)", "est. arena (B)", "under both",
                  "test acc.", title=f"MicroNAS sweep on {board}")
    for r in rows:
        table.add_row(r["data"], f"{r['lat_target_ms']:.1f}", f"{r['latency_ms']:.1f}",
                      f"{r['mem_target']:.0f}", f"{r['arena_bytes']:,}", "yes" if r["ok"] else "NO",
                      f"{r['test_accuracy']:.3f}")
    console.print(table)
    ok = sum(r["ok"] for r in rows)
    console.print(f"BENCH micronas-sweep: {ok}/{len(rows)} runs under their latency and memory "
                  f"targets; results in {out}/sweep.csv")


@bench_app.command("deploy-sweep")
def bench_deploy_sweep(
    board: str = typer.Option("qemu-m4"),
    data: str = typer.Option("basic_motions", help=DATA_HELP),
    engines: str = typer.Option("micronas,tinytnas,timenas"),
    targets: int = typer.Option(4, min=1, help="latency targets per engine"),
    search_epochs: int = typer.Option(30, min=1),
    budget: str = typer.Option("60s", help="TinyTNAS time budget"),
    candidates: int = typer.Option(50, min=1, help="Tiny-TimeNAS candidates"),
    epochs: int = typer.Option(40, min=1),
    qat_epochs: int = typer.Option(10, min=0),
    luts: Path = typer.Option(Path("luts")),
    out: Path = typer.Option(Path("runs/deploy-sweep")),
) -> None:
    """Every engine over a sweep of latency targets, each found model deployed
    and measured: under the targets? estimate within 3 %? device = host?"""
    from .pipeline import EngineSettings, sweep
    from .report.deployment import summary_rows
    from .search import ENGINES, DataSpec

    try:
        names = [e.strip() for e in engines.split(",") if e.strip()]
        if not names or any(e not in ENGINES for e in names):
            raise TinyhilError(f"--engines: a comma-separated list of {', '.join(ENGINES)}, not {engines!r}")
        with _progress() as progress:
            deployments, report = sweep(
                names, DataSpec(data), get_board(board), targets,
                EngineSettings(search_epochs=search_epochs, budget_s=parse_duration(budget),
                               n_archs=candidates), _deploy_options(epochs, qat_epochs, 10, 0, ""),
                luts, out, progress, log=lambda m: progress.console.print(m, highlight=False))
    except TinyhilError as error:
        _fail(error)
    shown = ("engine", "target ms", "est. ms", "measured ms", "error", "target B", "arena used",
             "under targets", "same classes", "int8 acc. dev/host")
    table = Table(*shown, title=f"deploy sweep on {board}: {data} (all columns: {out}/sweep.csv)")
    for row in summary_rows(deployments):
        table.add_row(*(row[c] for c in shown))
    console.print(table)
    n = len(deployments)
    under = sum(d.under_targets for d in deployments)
    within = sum(abs(d.latency_error_pct) <= 3 for d in deployments)
    same = sum(d.predictions_equal == d.test_windows for d in deployments)
    worst = max(abs(d.latency_error_pct) for d in deployments)
    console.print(f"BENCH deploy-sweep: {under}/{n} deployed models measured under their latency and "
                  f"memory targets; latency estimate within 3 % for {within}/{n} (worst {worst:.2f} %); "
                  f"device predictions = host int8 interpreter for {same}/{n}; report {report}, "
                  f"table {out}/sweep.csv")


@bench_app.command("engines")
def bench_engines(
    runs: int = typer.Option(5, min=1, help="TinyTNAS runs for the time bound"),
    budget: str = typer.Option("60s", help="TinyTNAS time budget per run"),
    epochs: int = typer.Option(3, min=1, help="TinyTNAS training epochs per candidate"),
    candidates: int = typer.Option(30, min=5, help="Tiny-TimeNAS candidates to rank"),
    rank_epochs: int = typer.Option(20, min=1, help="short training of each ranked candidate"),
    luts: Path = typer.Option(Path("luts")),
) -> None:
    """TinyTNAS time bound (synthetic 187x1, qemu-m33 LUT) and Tiny-TimeNAS proxy
    ranking on BasicMotions (qemu-m4 LUT): Kendall tau of ZiCo, FLOPs, random."""
    from .lut.table import Lut, space_lut_path
    from .nas.benchmark import proxy_ranking, time_bound_runs

    try:
        tt_lut = Lut.load(space_lut_path(luts, "qemu-m33", "tinytnas", (187, 1), 5))
        tn_lut = Lut.load(space_lut_path(luts, "qemu-m4", "timenas", (100, 6), 4))
        with console.status("TinyTNAS time-bound runs ..."):
            rows = time_bound_runs(tt_lut, runs, parse_duration(budget), epochs)
        with console.status("ranking Tiny-TimeNAS candidates ..."):
            ranking = proxy_ranking(tn_lut, candidates, rank_epochs)
    except TinyhilError as error:
        _fail(error)
    table = Table("run", "budget (s)", "wall (s)", "longest candidate (s)", "within bound", "explored",
                  "best", "meets limits", title="TinyTNAS: 20 KB RAM, 64 KB flash, 60k MACs, 15 ms on qemu-m33")
    for r in rows:
        table.add_row(str(r["run"]), f"{r['budget_s']:.0f}", f"{r['wall_s']:.1f}",
                      f"{r['longest_candidate_s']:.1f}", "yes" if r["within_bound"] else "NO",
                      str(r["explored"]), r["best"], "yes" if r["meets_limits"] else "NO")
    console.print(table)
    console.print(f"BENCH engines: time bound held in {sum(r['within_bound'] for r in rows)}/{len(rows)} runs; "
                  f"limits met by {sum(r['meets_limits'] for r in rows)}/{len(rows)} returned candidates; "
                  f"Kendall tau vs {ranking['epochs']}-epoch accuracy over {ranking['candidates']} "
                  f"BasicMotions candidates: ZiCo {ranking['zico']:+.3f}, FLOPs {ranking['flops']:+.3f}, "
                  f"random {ranking['random']:+.3f}")


@bench_app.command("faults")
def bench_faults(
    faults: int = typer.Option(200, min=1, help="inject at least this many faults"),
    boards: int = typer.Option(2, min=1, max=16, help="emulated boards in the farm"),
    board: str = typer.Option("qemu-m4"),
    baseline: Path = typer.Option(Path("luts"), help="LUTs the cases (and exact baselines) come from"),
    sample: int = typer.Option(3, min=1, help="rows per space LUT in each round"),
    host_kills: int = typer.Option(3, min=0, help="rounds where tinyhil itself is killed and resumed"),
    seed: int = typer.Option(0),
    timeout: float = typer.Option(1.0, min=0.1, help="seconds to wait for each reply"),
) -> None:
    """Regression rounds through a fault-injecting serial proxy (garble, drop,
    duplicate, stall), with board resets, QEMU kills and host kills; prints
    the faults by kind, survived, and rows lost/duplicated/wrong (must be 0)."""
    import tempfile

    from .regress.faults import campaign
    from .regress.speedup import emulated_farm
    from .regress.suite import Suite

    suite = Suite("faults", repeats=2, per_image=3, lut_sample=sample, seed=seed, deployments="")
    try:
        with tempfile.TemporaryDirectory(prefix="tinyhil-faults-") as scratch:
            report = campaign(emulated_farm(board, boards), suite, baseline, Path(scratch), faults,
                              host_kills, seed, timeout, log=lambda line: console.print(line, highlight=False))
    except TinyhilError as error:
        _fail(error)
    table = Table("fault", "injected", "survived", title=f"fault campaign: {report.rounds} rounds, "
                  f"{report.cases} cases, {report.wall_s:.0f} s")
    for kind in sorted(report.injected):
        table.add_row(kind, str(report.injected[kind]), str(report.survived[kind]))
    table.add_row("total", str(report.total), str(sum(report.survived.values())))
    console.print(table)
    console.print(f"recoveries: {dict(report.recoveries)}; resumed runs: {report.resumes}")
    for problem in report.problems:
        console.print(f"[red]problem[/] {problem}", highlight=False)
    console.print(f"BENCH faults: {report.total} injected, {sum(report.survived.values())} survived; "
                  f"rows lost {report.rows_lost}, duplicated {report.rows_duplicated}, "
                  f"wrong {report.wrong}")
    if not report.ok:
        raise typer.Exit(1)


@bench_app.command("farm")
def bench_farm(
    board: str = typer.Option("qemu-m4"),
    baseline: Path = typer.Option(Path("luts"), help="LUTs the cases come from"),
    sample: int = typer.Option(8, min=1, help="rows per space LUT"),
    repeats: int = typer.Option(200, min=1, help="timed inferences per case"),
    per_image: int = typer.Option(4, min=1, help="cases per job (firmware image)"),
    rounds: int = typer.Option(3, min=1, help="timings per board count (the best is kept)"),
) -> None:
    """The same suite on 1 and 2 emulated boards (images cached first): the parallel speed-up."""
    import tempfile

    from .regress.speedup import measure_speedup
    from .regress.suite import Suite

    suite = Suite("farm", repeats=repeats, per_image=per_image, lut_sample=sample, deployments="")
    try:
        with tempfile.TemporaryDirectory(prefix="tinyhil-farm-") as scratch:
            result = measure_speedup(board, suite, baseline, Path(scratch), rounds=rounds)
    except TinyhilError as error:
        _fail(error)
    console.print(f"BENCH farm: {result.cases} cases in {result.jobs} jobs on {board}: "
                  f"1 board {result.seconds[1]:.1f} s, 2 boards {result.seconds[2]:.1f} s, "
                  f"speed-up {result.factor(2):.2f}x on {os.cpu_count()} cores "
                  f"(best of {rounds}; load average {os.getloadavg()[0]:.1f})")
    console.print(f"measuring, summed over boards: 1 board {result.measure_seconds[1]:.1f} s, "
                  f"2 boards {result.measure_seconds[2]:.1f} s (more than 1 board's when other "
                  "work shares the cores)")


@bench_app.command("calibrate")
def bench_calibrate(
    reference: Path = typer.Option(Path("../shared/data/nucleo_f446re-reference.csv"),
                                   help="ops measured on the physical board"),
    emulated_board: str = typer.Option("qemu-m4", help="emulated board of the same core"),
    luts: Path = typer.Option(Path("luts")),
    seeds: int = typer.Option(5, min=1, help="splits per fraction and sampler"),
    csv: Path = typer.Option(None, help="also write every split's errors here"),
) -> None:
    """Fit on 10 % and 5 % of the reference rows (sampler-chosen and random),
    predict the rest: MAPE / max / R² per model, the FLOPs baseline, and the
    emulated arena against the reference's arena_used."""
    import pandas as pd

    from .calibrate import arena_comparison, benchmark, load_bench_frame

    try:
        with _progress() as progress:
            ref, frame, measured_now = load_bench_frame(reference, emulated_board, luts, progress)
        rows = benchmark(frame, ref, seeds=range(seeds))
    except TinyhilError as error:
        _fail(error)
    data = pd.DataFrame([dict(fraction=r.fraction, sampler=r.sampler, seed=r.seed, model=r.model,
                              fitted=r.fitted, predicted=r.predicted, mape=r.errors.mape,
                              max_error=r.errors.max_error, r2=r.errors.r2, chosen_as=r.chosen_as)
                         for r in rows])
    if csv:
        csv.parent.mkdir(parents=True, exist_ok=True)
        data.to_csv(csv, index=False)
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
    for fraction, target_mape, target_max in ((0.10, 2.0, 10.0), (0.05, 3.0, None)):
        g = data[(data["fraction"] == fraction) & (data["sampler"] == "spread")]
        chosen, flops = g[g["model"] == "chosen by CV"], g[g["model"] == "macs-line (FLOPs)"]
        meets = chosen["mape"].max() <= target_mape and (target_max is None or chosen["max_error"].max() <= target_max)
        console.print(f"BENCH calibrate {fraction:.0%} sampled: MAPE {chosen['mape'].mean():.2f} % "
                      f"(worst {chosen['mape'].max():.2f} %, target <= {target_mape:g} %), max error "
                      f"{chosen['max_error'].mean():.2f} % (worst {chosen['max_error'].max():.2f} %"
                      + (f", target <= {target_max:g} %" if target_max else "") + f"); FLOPs baseline MAPE "
                      f"{flops['mape'].mean():.2f} %, max {flops['max_error'].mean():.2f} %: "
                      + ("meets the targets" if meets else "MISSES the targets"), highlight=False)


def main() -> None:  # pragma: no cover
    sys.exit(app())
