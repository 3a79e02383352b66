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


def main() -> None:  # pragma: no cover
    sys.exit(app())
