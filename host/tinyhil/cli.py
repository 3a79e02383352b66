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

from tinyhil.board_catalog import get_board, load_boards
from tinyhil.errors import TinyhilError
from tinyhil.units import parse_count, parse_duration_s, parse_latency_ms, parse_memory_bytes
from tinyhil.verdict import usable

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hardware-in-the-loop benchmarking for TinyML time-series NAS.")
console = Console()
err_console = Console(stderr=True)


def _fail(error: Exception) -> None:
    from rich.markup import escape

    # escaped: a message quoting "[window, channels]" is text, not rich markup
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
    raise typer.Exit(2)


@app.command()
def boards() -> None:
    """List the boards (PlatformIO environments) tinyhil knows."""
    table = Table("board", "transport", "core", "clock", "counter", "flash", "RAM")
    for b in load_boards().values():
        table.add_row(b.name, b.transport, b.core, f"{b.clock_hz / 1e6:g} MHz", b.counter,
                      f"{b.flash_bytes // 1024} KiB", f"{b.ram_bytes // 1024} KiB")
    console.print(table)
    from tinyhil.device.stlink import stlink_ports

    ports = stlink_ports()
    console.print("ST-LINK ports (Nucleo boards): " + (", ".join(
        f"{p.device} ({p.probe}, serial {p.serial_number})" for p in ports) or "none attached"),
        highlight=False)


@app.command()
def doctor(
    board: list[str] = typer.Option(None, help="check these boards only (default: every emulated "
                                    "board; a physical one also needs openocd)"),
    probe: bool = typer.Option(True, help="build and boot the toolchain probe on each board"),
) -> None:
    """List every tool with its version and prove the toolchain: C++ headers
    per core, and a probe built with each board's firmware flags and booted."""
    from tinyhil.doctor import failed, run_checks

    try:
        configs = [get_board(name) for name in board] if board else None
        table = Table("check", "", "found", "fix")
        checks = []
        for check in run_checks(configs, probe):
            checks.append(check)
            mark = "[green]ok[/]" if check.ok else ("[red]FAIL[/]" if check.required else "[yellow]-[/]")
            table.add_row(check.what, mark, check.found, "" if check.ok else check.fix)
    except TinyhilError as error:
        _fail(error)
    console.print(table)
    bad = failed(checks)
    if bad:
        err_console.print(f"[bold red]{len(bad)} check(s) failed:[/] " + "; ".join(
            f"{c.what}: {c.fix}" for c in bad), highlight=False)
        raise typer.Exit(1)
    console.print(f"all {len(checks)} checks passed")


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
    predict: str = typer.Option(None, help="also predict the model's latency on this (calibrated) "
                                "board from its LUT, per op and in total with its bound"),
    latency_at: str = typer.Option("p95", help="the bound printed with --predict: p50, p90, p95, p99"),
    luts: Path = typer.Option(Path("luts"), help="directory of lookup tables (for --predict)"),
) -> None:
    """Build firmware for MODEL, run it on BOARD, print cycles, per-op profile,
    memory, and whether the device output equals the host interpreter's."""
    from tinyhil.files import atomic_write, writable_file
    from tinyhil.measure.model import run_model

    try:
        config = get_board(board)
        if json_out:  # before measuring: a report that cannot be kept is refused first
            writable_file(json_out, "the JSON report")
        prediction = None
        if predict:  # before any build: a model no LUT of the board prices is refused first
            from tinyhil.estimate.predict import predict as predict_latency
            from tinyhil.models.tflite_ops import op_configs

            get_board(predict)
            prediction = predict_latency(op_configs(model.read_bytes()), predict, luts, latency_at)
        with console.status(f"building and measuring {model.name} on {board} ..."):
            report = run_model(model, config, repeats=repeat, warmup=warmup, seed=seed,
                               port=port, timeout=timeout, log=console.log)
    except TinyhilError as error:
        _fail(error)
    _print_report(report)
    if prediction:
        _print_prediction(prediction, [(op.index, op.op, op.cycles) for op in report.ops],
                          report.cycles_median, report.board, report.counter)
    if json_out:
        try:
            atomic_write(json_out, json.dumps(report.to_dict(), indent=2))
        except TinyhilError as error:
            _fail(error)
    if not usable(report.output_status):
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
    elif usable(r.output_status):  # the rule characterization records its rows by
        console.print(f"output: [yellow]{r.output_status}[/] (usable)\n"
                      f"  device {r.device_output}\n  host   {r.host_output}", highlight=False)
    else:
        console.print(f"output: [red]DIFFERS[/] from the host TFLite interpreter ({r.output_status})\n"
                      f"  device {r.device_output}\n  host   {r.host_output}", highlight=False)


def _print_prediction(p, measured: list[tuple[int, str, float]], measured_total: float, board: str,
                      counter: str) -> None:
    """Predicted board cycles per op and in total, beside what `board` measured."""
    unit = "instructions" if counter == "qemu-icount" else "cycles"
    kind = "calibrated" if p.calibrated else "measured"
    table = Table("#", "op", f"{board} {unit}", f"{p.board} cycles", f"at {p.bound}", "ms", f"ms at {p.bound}",
                  title=f"predicted on {p.board} from {p.lut} ({kind}), beside {board}'s measurement")
    for (index, name, cycles), op in zip(measured, p.ops):
        table.add_row(str(index), f"{name} {op.op.key}", f"{cycles:,.0f}", f"{op.kernel_cycles:,.0f}",
                      f"{op.kernel_bound:,.0f}", f"{p.ms(op.kernel_cycles):.3f}", f"{p.ms(op.kernel_bound):.3f}")
    table.add_row("", "invoke + per-op overheads", "", f"{p.total - sum(o.kernel_cycles for o in p.ops):,.0f}",
                  "", "", "")
    table.add_row("", "total", f"{measured_total:,.0f}", f"{p.total:,.0f}", f"{p.total_bound:,.0f}",
                  f"{p.ms(p.total):.3f}", f"{p.ms(p.total_bound):.3f}")
    console.print(table)
    console.print(f"predicted on {p.board}: {p.ms(p.total):.3f} ms ({p.total:,.0f} cycles), at most "
                  f"{p.ms(p.total_bound):.3f} ms at {p.bound}; the LUT estimator's sum for the same ops",
                  highlight=False)


lut_app = typer.Typer(help="Look at lookup tables.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks of tinyhil itself (print their figures).", no_args_is_help=True)
app.add_typer(lut_app, name="lut")
app.add_typer(bench_app, name="bench")


def _progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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
    from tinyhil.image.c_array import write_c_array
    from tinyhil.models.tflite_model import TfliteModel

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
    model_maker: str = typer.Option("direct", help="how single-op models are made: direct "
                                    "(flatbuffer written from the op) | converter (Keras + TFLite converter)"),
) -> None:
    """Measure every op of a search space on a board into a lookup table (resumable)."""
    from tinyhil.measure.characterize import Characterizer
    from tinyhil.spaces import parse_input

    try:
        window, channels = parse_input(input)
        config = get_board(board)
        characterizer = Characterizer(config, luts, repeats, per_image, port, model_maker=model_maker)
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
    for line in result.report:
        console.print(f"[yellow]store[/] {line}", highlight=False)


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
    deployments: Path = typer.Option(None, help="deployed runs to re-measure, instead of the "
                                     "suite's (may lie outside the project)"),
    models: list[Path] = typer.Option([], "--model", help="a .tflite to re-measure besides the "
                                      "suite's (may lie outside the project; repeatable)"),
) -> None:
    """Re-measure a suite on every board of an inventory (in parallel), compare
    with the baselines, write JUnit XML and the trend page; exit 1 on a regression."""
    from dataclasses import replace

    from tinyhil.regress.inventory import load_inventory
    from tinyhil.regress.nightly import pinned_images as images_of
    from tinyhil.regress.nightly import regress as run_regress
    from tinyhil.regress.suite import load_suite as load_suite_file

    def load_suite(name: str):
        """The suite file (its paths confined to the project), then the paths given here."""
        loaded = load_suite_file(name)
        return replace(loaded, deployments=str(deployments.resolve()) if deployments else loaded.deployments,
                       models=loaded.models + tuple(str(m.resolve()) for m in models))

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
    from tinyhil.spaces import parse_input
    from tinyhil.validate import validate as run_validation

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
    strict: bool = typer.Option(False, "--strict", help="refuse a reference file with any bad row "
                                "(default: name each bad row and leave it out)"),
    clock_mhz: float = typer.Option(None, min=1, help="the clock the reference was measured at, if not the "
                                    "board's configured one (e.g. 80 for the L552ZE-Q rows)"),
) -> None:
    """Fit emulated counts (+ op features) to a physical board's cycles from a few
    reference rows; report cross-validated errors; write the board's LUT."""
    from tinyhil.benchmarks.calibrate import calibrate as run_calibration
    from tinyhil.lut.calibration import FOLDS

    out = out or emulated.parent.parent / board / emulated.name
    try:
        with _progress() as progress:
            result = run_calibration(emulated, reference, board, out, progress, strict,
                                     int(clock_mhz * 1e6) if clock_mhz else None)
    except TinyhilError as error:
        _fail(error)
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
        from tinyhil.lut.calibration import BOUND

        above = "" if c.above_bound is None else (
            f"; {c.above_bound:.1%} of the reference rows above their bound (each bound from the other shapes)")
        console.print(f"bound {BOUND} (held-out excess over the prediction): "
                      + ", ".join(f"{path} +{b[BOUND]:.2%}" for path, b in c.bounds.by_path.items())
                      + f", other op types +{c.bounds.fallback[BOUND]:.2%}{above}", highlight=False)
    console.print(f"wrote {result.out} ({len(result.lut.rows)} ops, calibrated for {board}; "
                  f"expected ({by}) MAPE {c.expected.mape:.2f} %, max {c.expected.max_error:.2f} %)")


search_app = typer.Typer(help="Search engines.", no_args_is_help=True)
app.add_typer(search_app, name="search")

def _search_inputs(engine: str, data: str, window, seed: int, board: str, luts: Path, task="classification"):
    """The data spec, its split, and the board's LUT of the engine's space for
    that data's shape (characterizing what is missing)."""
    from tinyhil.measure.characterize import space_lut
    from tinyhil.nas.engines import DataSpec

    spec = DataSpec(data, window, seed, task)
    config = get_board(board)
    splits = spec.load()
    classes = splits.classes
    if engine != "micronas":  # they measure the ops they meet on demand (nas/hardware.py)
        from tinyhil.nas.hardware import engine_lut

        return spec, splits, engine_lut(config.name, engine, splits.window, splits.channels, classes, luts)
    with _progress() as progress:
        lut = space_lut(config, engine, splits.window, splits.channels, classes, luts, progress)
    return spec, splits, lut


def _targets(latency=None, ram=None, flash=None, macs=None,
             options=("--latency", "--ram", "--flash", "--macs")):
    """The search targets given as text; `options` name them in errors."""
    from tinyhil.nas.engines import Targets

    return Targets(latency_ms=parse_latency_ms(latency, options[0]) if latency else None,
                   ram_bytes=parse_memory_bytes(ram, options[1]) if ram else None,
                   flash_bytes=parse_memory_bytes(flash, options[2]) if flash else None,
                   macs=parse_count(macs, options[3]) if macs else None)


DATA_HELP = "basic_motions | japanese_vowels | Covid3Month (regression) | synthetic128x9c6 | FILE.npz | FILE.csv"


def _timenas_bytes(text: str | None, option: str) -> float | None:
    """A Tiny-TimeNAS memory limit: a bare number is read in the seed's unit,
    kB of 1000 B (tinyhil's other options read bare numbers as bytes), and
    the assumption is printed."""
    import re

    if not text:
        return None
    if re.fullmatch(r"\s*[0-9]*\.?[0-9]+\s*", text):
        value = float(text) * 1000
        console.print(f"note: {option} {text.strip()} has no unit: read as {text.strip()} kB = {value:,.0f} B "
                      "(Tiny-TimeNAS's unit, kB of 1000 B); write e.g. 128KB or 131072B to say so",
                      highlight=False)
        return value
    return parse_memory_bytes(text, option)


@search_app.command("micronas")
def search_micronas(
    data: str = typer.Option(..., help=DATA_HELP),
    board: str = typer.Option("qemu-m4"),
    lat_target: str = typer.Option(None, help="latency target, e.g. 40ms (unit us, ms or s); omit: no latency loss"),
    mem_target: str = typer.Option(None, help="memory target, e.g. 32KB (unit B, KB, KiB, MB or MiB); omit: no memory loss"),
    epochs: int = typer.Option(30, min=1),
    batch_size: int = typer.Option(32, min=1),
    window: int = typer.Option(None, help="window length, for CSV data"),
    out: Path = typer.Option(Path("runs/micronas"), help="run directory"),
    luts: Path = typer.Option(Path("luts")),
    seed: int = typer.Option(0),
) -> None:
    """Hardware-aware differentiable search (MicroNAS) with the board's LUT."""
    from tinyhil.nas import engines as search

    try:
        targets = _targets(latency=lat_target, ram=mem_target,
                           options=("--lat-target", "--mem-target", "", ""))
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
    ram: str = typer.Option(None, help="e.g. 20KB (unit B, KB, KiB, MB or MiB)"),
    flash: str = typer.Option(None, help="e.g. 64KB (unit B, KB, KiB, MB or MiB)"),
    macs: str = typer.Option(None, help="e.g. 60k (bare, or k, M, G)"),
    latency: str = typer.Option(None, help="e.g. 15ms on this board (unit us, ms or s)"),
    time_budget: str = typer.Option("10m", help="wall-clock budget, e.g. 10m, 90s (unit s, m, min or h)"),
    epochs: int = typer.Option(5, min=1),
    learning_rate: float = typer.Option(1e-3),
    window: int = typer.Option(None, help="window length, for CSV data"),
    out: Path = typer.Option(Path("runs/tinytnas")),
    luts: Path = typer.Option(Path("luts")),
    seed: int = typer.Option(0),
) -> None:
    """TinyTNAS: time-bound search under RAM, flash, MACs and device latency."""
    from tinyhil.nas import engines as search

    try:
        budget = parse_duration_s(time_budget, "--time-budget")
        targets = _targets(latency=latency, ram=ram, flash=flash, macs=macs)
        spec, splits, lut = _search_inputs("tinytnas", data, window, seed, board, luts)
        with console.status("searching (TinyTNAS) ..."):
            run = search.tinytnas(spec, splits, lut, board, targets, budget, epochs, learning_rate, out, luts)
    except TinyhilError as error:
        _fail(error)
    best, d = run.details["best"], run.details
    console.print(f"best k={best[0]} c={best[1]}: val accuracy {best[2]:.3f}, RAM {best[3]:,} B, flash "
                  f"{best[4]:,} B, MACs {best[5]:,}, latency {d['latency_ms']:.2f} ms; explored "
                  f"{len(d['explored']) + len(d['infeasible'])} (trained {len(d['explored'])}, adopted {len(d['search_path'])}) in "
                  f"{d['seconds']:.0f} s (budget {budget:.0f} s); run: {out}", highlight=False)


@search_app.command("timenas")
def search_timenas(
    data: str = typer.Option(..., help=DATA_HELP),
    task: str = typer.Option("classification", help="classification | regression"),
    board: str = typer.Option("qemu-m4"),
    ram: str = typer.Option(None, help="TFLM arena of the int8 model, e.g. 128KB (a bare number: kB)"),
    flash: str = typer.Option(None, help="the int8 model, e.g. 256KB (a bare number: kB)"),
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
    from tinyhil.nas import engines as search
    from tinyhil.nas.engines import Targets

    try:
        targets = Targets(latency_ms=parse_latency_ms(latency, "--latency") if latency else None,
                          ram_bytes=_timenas_bytes(ram, "--ram"), flash_bytes=_timenas_bytes(flash, "--flash"))
        spec, splits, lut = _search_inputs("timenas", data, window, seed, board, luts, task)
        with console.status(f"sampling {n_archs} candidates, ranking by {proxy} ..."):
            run, found = search.timenas(spec, splits, lut, board, targets, task, n_archs, proxy, top_k, out, luts)
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
    from tinyhil.report.deployment import figure_rows

    table = Table("figure", "estimate (LUT)", "measured", "target", "under target",
                  title=f"{d.engine} on {d.board}: {d.data}, architecture {d.architecture_id}")
    for row in figure_rows(d):
        table.add_row(*row)
    console.print(table)
    s = d.scores
    regression = s["int8_host"].is_regression
    console.print(f"latency estimate error {d.latency_error_pct:+.2f} % ({d.counter}); "
                  f"{'MAE / RMSE' if regression else 'accuracy / F1'} on {d.test_windows} test windows: "
                  f"float {s['float'].text()}, QAT {s['qat'].text()}, int8 host {s['int8_host'].text()}, "
                  f"int8 device {s['int8_device'].text()}; device = host int8: "
                  f"{'values' if regression else 'classes'} {d.predictions_equal}/{d.test_windows}, "
                  f"outputs {d.outputs_equal}/{d.test_windows} (max {d.max_output_steps} step)",
                  highlight=False)
    for w in d.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"report: {report}")


def _deploy_options(epochs: int, qat_epochs: int, repeats: int, seed: int, port: str):
    from tinyhil.deploy.deployment import DeployOptions

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
    predict: str = typer.Option(None, help="also predict the model's latency on this (calibrated) "
                                "board from its LUT, per op and in total with its bound"),
    latency_at: str = typer.Option("p95", help="the bound printed with --predict: p50, p90, p95, p99"),
) -> None:
    """Retrain a found model with QAT, convert to int8, build it into firmware,
    measure it and its test windows on the board, and report estimate vs measured."""
    from tinyhil.deploy.deployment import deploy as deploy_run
    from tinyhil.files import writable_file
    from tinyhil.measure.characterize import space_lut
    from tinyhil.nas.engines import SearchRun
    from tinyhil.report.deployment import write_report

    try:
        found = SearchRun.load(run_dir)
        report = writable_file(report or run_dir / "report.html", "the HTML report")  # before deploying
        config = get_board(board or found.board)
        prediction = None
        if predict:  # the architecture's ops, as the board LUT's estimator sums them
            from tinyhil.estimate.predict import predict as predict_latency

            get_board(predict)
            prediction = predict_latency(list(found.architecture.runtime().ops), predict, luts, latency_at)
        if found.architecture.space == "micronas":
            with _progress() as progress:
                lut = space_lut(config, found.architecture.space, *found.input, found.classes, luts, progress)
        else:
            from tinyhil.nas.hardware import covering_lut, engine_lut

            lut = covering_lut(config.name, engine_lut(config.name, found.architecture.space, *found.input,
                                                       found.classes, luts), luts, [found.architecture],
                               log=lambda m: console.print(m, highlight=False))
        with console.status("deploying ..."):
            result = deploy_run(run_dir, config, lut, _deploy_options(epochs, qat_epochs, repeats, seed, port),
                                log=lambda m: console.print(m, highlight=False))
        path = write_report([result], report, f"tinyhil deploy: {run_dir}")
    except TinyhilError as error:
        _fail(error)
    _print_deployment(result, path)
    if prediction:
        from dataclasses import replace

        by_key = {o.op.key: o for o in prediction.ops}
        layers = [layer for layer in result.layers if layer.lut_key in by_key]
        ordered = replace(prediction, ops=tuple(by_key[layer.lut_key] for layer in layers))
        if len(layers) != len(prediction.ops):  # an op the device profile did not pair: the LUT's order
            layers, ordered = [], prediction
        _print_prediction(ordered, [(layer.index, layer.op, layer.device_cycles) for layer in layers]
                          or [(o.index, o.op.op, float("nan")) for o in prediction.ops],
                          result.cycles, result.board, result.counter)


@app.command()
def pipeline(
    engine: str = typer.Option(..., help="micronas | tinytnas | timenas"),
    data: str = typer.Option(..., help=DATA_HELP),
    task: str = typer.Option("classification", help="classification | regression (timenas)"),
    board: str = typer.Option("qemu-m4"),
    lat_target: str = typer.Option(None, help="e.g. 40ms (unit us, ms or s)"),
    mem_target: str = typer.Option(None, help="peak memory (arena), e.g. 32KB (unit B, KB, KiB, MB or MiB)"),
    flash_target: str = typer.Option(None, help="int8 model size, e.g. 64KB (unit B, KB, KiB, MB or MiB)"),
    macs_target: str = typer.Option(None, help="e.g. 60k (bare, or k, M, G), TinyTNAS"),
    search_epochs: int = typer.Option(30, min=1, help="MicroNAS search epochs"),
    budget: str = typer.Option("2m", help="TinyTNAS time budget (unit s, m, min or h)"),
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
    import dataclasses

    from tinyhil.nas.engines import ENGINES, DataSpec
    from tinyhil.pipeline import EngineSettings, PipelineConfig
    from tinyhil.pipeline import pipeline as run_pipeline

    try:
        if engine not in ENGINES:
            raise TinyhilError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        if task not in ("classification", "regression"):
            raise TinyhilError(f"--task must be classification or regression, not {task!r}")
        if task == "regression" and engine != "timenas":
            raise TinyhilError(f"--task regression: only timenas searches regression models "
                               f"({engine}'s space ends in a softmax classifier)")
        options = ("--lat-target", "--mem-target", "--flash-target", "--macs-target")
        targets = _targets(latency=lat_target, macs=macs_target, options=options)
        if engine == "timenas":
            targets = dataclasses.replace(targets, ram_bytes=_timenas_bytes(mem_target, "--mem-target"),
                                          flash_bytes=_timenas_bytes(flash_target, "--flash-target"))
        else:
            targets = _targets(latency=lat_target, ram=mem_target, flash=flash_target, macs=macs_target,
                               options=options)
        config = PipelineConfig(
            engine, DataSpec(data, window, seed, task), targets,
            out or Path("runs") / f"{engine}-{Path(data).stem}-{board}",
            EngineSettings(search_epochs=search_epochs, budget_s=parse_duration_s(budget, "--budget"),
                           n_archs=candidates),
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
    from tinyhil.lut.table import Lut

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
                      f"max {calibration['expected_max_error_pct']:.2f} % "
                      f"({calibration.get('chosen_by', 'cross-validated')})"
                      + (f"; {calibration['bound']} bound: {calibration['rows_above_bound_pct']:.1f} % of the "
                         "reference rows above it" if calibration.get("rows_above_bound_pct") is not None else ""),
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
    from tinyhil.lut.table import Lut

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
    flows: str = typer.Option("converter,direct,per-image",
                              help="flows to run, in order: converter | direct | per-image"),
    per_image_ops: int = typer.Option(10, min=1, help="ops the one-op-per-image flow measures "
                                      "(its whole-space time is projected from them)"),
    rows: int = typer.Option(10, min=0, help="ops with the largest count differences to list"),
) -> None:
    """Characterize a space from empty caches by each flow (converter models
    packed, direct models packed, one op per image) and print where the time
    went, the speed-ups and the two makers' per-op counts side by side."""
    from tinyhil.benchmarks.characterize import FLOWS
    from tinyhil.benchmarks.characterize import bench_characterize as run_bench
    from tinyhil.spaces import parse_input

    chosen = tuple(f.strip() for f in flows.split(",") if f.strip())
    unknown = [f for f in chosen if f not in FLOWS]
    if unknown or not chosen:
        _fail(TinyhilError(f"--flows: unknown flow(s) {', '.join(unknown) or '(none given)'}; "
                           f"known: {', '.join(FLOWS)}"))
    try:
        window, channels = parse_input(input)
        config = get_board(board)
        with _progress() as progress:
            def show(flow_result):
                progress.console.print(f"[bold]{flow_result.flow}[/] done")
                _print_characterization(flow_result.result)

            results, comparison = run_bench(config, space, window, channels, classes, chosen,
                                            per_image_ops, progress, on_flow=show)
    except TinyhilError as error:
        _fail(error)
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
        table.add_row(op, f"{r['ops']}", f"{r['max_abs_percent']:.3f}", f"{r['mean_percent']:+.3f}",
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
    swapped = comparison.table[comparison.table["swapped"]]
    if len(swapped):
        key, same = comparison.largest_same_operands
        console.print(f"{len(swapped)} op(s) ({', '.join(sorted(set(swapped['op'])))}) whose converter model "
                      "reads its two inputs swapped (inputs listed by tensor name), so the seeded bytes "
                      f"reach the other operand: largest difference over them {swapped['diff_percent'].abs().max():.3f} %; "
                      f"over the other ops {same:+.3f} % ({key}): "
                      f"{met(abs(same) <= COUNT_TARGET_PERCENT)}", highlight=False)


@bench_app.command("micronas-sweep")
def bench_micronas_sweep(
    board: str = typer.Option("qemu-m4"),
    targets: int = typer.Option(4, min=2, help="latency targets per data set"),
    epochs: int = typer.Option(30, min=1),
    retrain_epochs: int = typer.Option(40, min=1, help="float training of each found network"),
    mem_target: str = typer.Option("64KB", help="memory target (unit B, KB, KiB, MB or MiB)"),
    luts: Path = typer.Option(Path("luts")),
    out: Path = typer.Option(Path("runs/micronas-sweep")),
) -> None:
    """MicroNAS over a sweep of latency targets on BasicMotions and a synthetic
    128x9 six-class set: estimate against target, and accuracy per target."""
    from tinyhil.benchmarks.micronas_sweep import sweep
    from tinyhil.measure.characterize import space_lut

    try:
        config = get_board(board)
        with _progress() as progress:
            rows = sweep(config, targets, epochs, retrain_epochs, parse_memory_bytes(mem_target, "--mem-target"),
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
    budget: str = typer.Option("60s", help="TinyTNAS time budget (unit s, m, min or h)"),
    candidates: int = typer.Option(50, min=1, help="Tiny-TimeNAS candidates"),
    epochs: int = typer.Option(40, min=1),
    qat_epochs: int = typer.Option(10, min=0),
    luts: Path = typer.Option(Path("luts")),
    out: Path = typer.Option(Path("runs/deploy-sweep")),
) -> None:
    """Every engine over a sweep of latency targets, each found model deployed
    and measured: under the targets? estimate within 3 %? device = host?"""
    from tinyhil.nas.engines import ENGINES, DataSpec
    from tinyhil.pipeline import EngineSettings, sweep
    from tinyhil.report.deployment import summary_rows

    try:
        names = [e.strip() for e in engines.split(",") if e.strip()]
        if not names or any(e not in ENGINES for e in names):
            raise TinyhilError(f"--engines: a comma-separated list of {', '.join(ENGINES)}, not {engines!r}")
        with _progress() as progress:
            deployments, report = sweep(
                names, DataSpec(data), get_board(board), targets,
                EngineSettings(search_epochs=search_epochs, budget_s=parse_duration_s(budget, "--budget"),
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
    budget: str = typer.Option("60s", help="TinyTNAS time budget per run (unit s, m, min or h)"),
    epochs: int = typer.Option(3, min=1, help="TinyTNAS training epochs per candidate"),
    candidates: int = typer.Option(30, min=5, help="Tiny-TimeNAS candidates to rank"),
    rank_epochs: int = typer.Option(20, min=1, help="short training of each ranked candidate"),
    luts: Path = typer.Option(Path("luts")),
) -> None:
    """TinyTNAS time bound (synthetic 187x1, qemu-m33 LUT) and Tiny-TimeNAS proxy
    ranking on BasicMotions (qemu-m4 LUT): Kendall tau of ZiCo, FLOPs, random."""
    from tinyhil.benchmarks.engines import proxy_ranking, time_bound_runs
    from tinyhil.lut.table import Lut, space_lut_path

    try:
        tt_lut = Lut.load(space_lut_path(luts, "qemu-m33", "tinytnas", (187, 1), 5))
        tn_lut = Lut.load(space_lut_path(luts, "qemu-m4", "timenas", (100, 6), 4))
        with console.status("TinyTNAS time-bound runs ..."):
            rows = time_bound_runs(tt_lut, runs, parse_duration_s(budget, "--budget"), epochs)
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
    duplicate, stall, noise while measuring), with board resets, QEMU kills,
    host kills and impossible baselines; prints
    the faults by kind, survived, and rows lost/duplicated/wrong (must be 0)."""
    import tempfile

    from tinyhil.benchmarks.farm_speedup import emulated_farm
    from tinyhil.benchmarks.faults import campaign
    from tinyhil.regress.suite import Suite

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

    from tinyhil.benchmarks.farm_speedup import measure_speedup
    from tinyhil.regress.suite import Suite

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
    second_reference: Path = typer.Option(Path("../shared/data/nucleo_l552ze_q-reference.csv"),
                                          help="a second board's few reference rows (none: skip)"),
    second_emulated_board: str = typer.Option("qemu-m33", help="the emulated board of the second one's core"),
) -> None:
    """Fit on 10 % and 5 % of the reference rows (sampler-chosen and random),
    predict the rest: MAPE / max / R² per model, the FLOPs baseline, and the
    emulated arena against the reference's arena_used. Then the calibration
    targets, leave-one-shape-out, before and after, on both boards."""
    import pandas as pd

    from tinyhil.benchmarks.calibrate import arena_comparison, benchmark, calibration_targets, load_bench_frame
    from tinyhil.files import atomic_write, writable_file

    try:
        if csv:
            writable_file(csv, "the errors of every split")  # before measuring
        with _progress() as progress:
            ref, frame, measured_now = load_bench_frame(reference, emulated_board, luts, progress)
            second = None
            if second_reference and second_reference.name != "none":
                _, second, second_now = load_bench_frame(second_reference, second_emulated_board, luts, progress)
        rows = benchmark(frame, ref, seeds=range(seeds))
        data = pd.DataFrame([dict(fraction=r.fraction, sampler=r.sampler, seed=r.seed, model=r.model,
                                  fitted=r.fitted, predicted=r.predicted, mape=r.errors.mape,
                                  max_error=r.errors.max_error, r2=r.errors.r2, chosen_as=r.chosen_as)
                             for r in rows])
        if csv:
            atomic_write(csv, data.to_csv(index=False))
        targets = calibration_targets(frame, second)
    except TinyhilError as error:
        _fail(error)
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


def main() -> None:  # pragma: no cover
    sys.exit(app())
