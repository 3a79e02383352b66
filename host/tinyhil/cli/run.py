"""`tinyhil run` (one model measured on a board) and `tinyhil export-c`."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from tinyhil.board_catalog import get_board
from tinyhil.cli import Table, app, console, err_console, options, reports_errors, waiting
from tinyhil.cli.layers import DATA_HELP, INPUT_HELP, WINDOW_HELP, chosen_input, print_layers
from tinyhil.errors import TinyhilError
from tinyhil.units import parse_duration_s
from tinyhil.verdict import usable


@app.command(renamed={"--window": "--test-window N", "--repeat": "--repeats 20"})
@reports_errors
def run(
    model: Path = typer.Argument(..., help="int8 .tflite model"),
    board: str = options.BOARD,
    repeats: int = typer.Option(20, min=1, max=1000, help="timed inferences"),
    warmup: int = typer.Option(1, min=0, max=1000, help="untimed inferences first"),
    seed: int = typer.Option(0, help="seed of the random int8 input"),
    port: str = options.PORT,
    timeout: str = options.timeout(),
    json_out: Path = typer.Option(None, "--json", help="also write the report to this JSON file"),
    predict: str = typer.Option(None, help="also predict the model's latency on this (calibrated) "
                                "board from its LUT, per op and in total with its bound"),
    latency_at: str = typer.Option("p95", help="the bound printed with --predict: p50, p90, p95, p99"),
    luts: Path = options.LUTS,
    compare_layers: bool = typer.Option(False, "--compare-layers", help="also compare every op's output "
                                        "with the host interpreter's (streamed op by op, untimed) and run "
                                        "the first op that differs alone"),
    input_file: Path = typer.Option(None, "--input", help=INPUT_HELP),
    test_window: int = typer.Option(None, min=0, help=WINDOW_HELP),
    data: str = typer.Option(None, help=DATA_HELP),
    report_out: Path = typer.Option(None, "--report", help="with --compare-layers: its HTML report, this file"),
    image: Path = typer.Option(None, help="boot this image made by `tinyhil build --image` (on another "
                               "host) instead of building; refused unless this host builds the same"),
) -> None:
    """Build firmware for MODEL, run it on BOARD, print cycles, per-op profile,
    memory, and whether the device output equals the host interpreter's."""
    from tinyhil.files import atomic_write, writable_file
    from tinyhil.measure.model import run_model
    from tinyhil.models.tflite_model import TfliteModel

    config = get_board(board)
    timeout_s = parse_duration_s(timeout, "--timeout")
    if report_out and not compare_layers:
        raise TinyhilError("--report is the --compare-layers report: give both")
    for path, what in ((json_out, "the JSON report"), (report_out, "the HTML report")):
        if path:  # before measuring: a report that cannot be kept is refused first
            writable_file(path, what)
    input_bytes, input_name = chosen_input(TfliteModel.load(model), input_file, test_window, data, seed)
    prediction = None
    if predict:  # before any build: a model no LUT of the board prices is refused first
        from tinyhil.estimate.predict import predict as predict_latency
        from tinyhil.models.tflite_ops import op_configs

        get_board(predict)
        prediction = predict_latency(op_configs(model.read_bytes()), predict, luts, latency_at)
    layers = None
    with waiting(f"building and measuring {model.name} on {board} ...") as on_stage:
        if compare_layers:
            from tinyhil.measure.layers import run_and_compare

            report, layers = run_and_compare(model, config, input_bytes, input_name, repeats, warmup, port,
                                             timeout_s, log=console.log, on_stage=on_stage)
        else:
            report = run_model(model, config, repeats=repeats, warmup=warmup, seed=seed, port=port,
                               timeout=timeout_s, log=console.log, on_stage=on_stage, input_bytes=input_bytes,
                               image_path=image)
    console.print(f"input: {input_name}", highlight=False)
    _print_report(report)
    if prediction:
        print_prediction(prediction, [(op.index, op.op, op.cycles) for op in report.ops],
                          report.cycles_median, report.board, report.counter)
    if layers is not None:
        print_layers(layers)
    if report_out:
        from tinyhil.report.compare_layers import write_layers_report

        console.print(f"report: {write_layers_report(layers, report_out)}")
    if json_out:
        atomic_write(json_out, json.dumps({**report.to_dict(), "input": input_name,
                                           **({"layers": layers.to_dict()} if layers else {})}, indent=2))
    if not usable(report.output_status):
        raise typer.Exit(1)


@app.command(renamed={"--out": "--image FILE.elf"})
@reports_errors
def build(
    model: Path = typer.Argument(..., help="int8 .tflite model"),
    board: str = typer.Option(..., help="board name (see `tinyhil boards`)"),
    image: Path = typer.Option(..., help="the image file to write (ELF; its sidecar IMAGE.json beside it)"),
) -> None:
    """Build the firmware image `tinyhil run` would boot, without a board: build on
    one host, run it on the host with the board (`tinyhil run MODEL --image IMAGE`)."""
    from tinyhil.measure.model import build_model_image

    with waiting(f"building {model.name} for {board} ...") as on_stage:
        built = build_model_image(model, get_board(board), image, log=console.log, on_stage=on_stage)
    console.print(f"{image}: image {built.image_id} for {board}, firmware {built.firmware}, "
                  f"flash {built.size.flash:,} B, RAM {built.size.ram:,} B", highlight=False)


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


def print_prediction(p, measured: list[tuple[int, str, float]], measured_total: float, board: str,
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
    for warning in p.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command("export-c")
@reports_errors
def export_c(
    model: Path = typer.Argument(..., help="int8 .tflite model"),
    out: Path = typer.Option(Path("."), help="directory for NAME.cc and NAME.h"),
    name: str = typer.Option("g_model", help="C name of the array"),
) -> None:
    """Write the model as a C source and header: aligned array, length,
    input/output quantization (for a firmware of your own)."""
    from tinyhil.image.c_array import write_c_array
    from tinyhil.models.tflite_model import TfliteModel

    files = write_c_array(TfliteModel.load(model), out, name)
    console.print(f"wrote {files.source} and {files.header}")
