"""`tinyhil boards` and `tinyhil doctor`: what boards and tools this machine has."""
from __future__ import annotations

import typer
from rich.table import Table

from tinyhil.board_catalog import get_board, load_boards
from tinyhil.cli import app, console, err_console, reports_errors, waiting


@app.command()
@reports_errors
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
@reports_errors
def doctor(
    board: list[str] = typer.Option(None, help="check these boards only (default: every emulated "
                                    "board; a physical one also needs openocd)"),
    probe: bool = typer.Option(True, help="build and boot the toolchain probe on each board"),
    tflm: bool = typer.Option(True, help="compile TFLM for each emulated core (once per machine: "
                              "minutes the first time, then found in ~/.cache/tinyhil)"),
) -> None:
    """List every tool with its version and prove the toolchain: C++ headers
    per core, and a probe built with each board's firmware flags and booted."""
    from tinyhil.doctor import failed, run_checks

    configs = [get_board(name) for name in board] if board else None
    table = Table("check", "", "found", "fix")
    checks = []
    with waiting("checking the toolchain ...") as on_stage:
        for check in run_checks(configs, probe, tflm, on_stage):
            checks.append(check)
            mark = "[green]ok[/]" if check.ok else ("[red]FAIL[/]" if check.required else "[yellow]-[/]")
            table.add_row(check.what, mark, check.found, "" if check.ok else check.fix)
    console.print(table)
    bad = failed(checks)
    if bad:
        err_console.print(f"[bold red]{len(bad)} check(s) failed:[/] " + "; ".join(
            f"{c.what}: {c.fix}" for c in bad), highlight=False)
        raise typer.Exit(1)
    console.print(f"all {len(checks)} checks passed")
