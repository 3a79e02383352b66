"""`tinyhil boards` and `tinyhil doctor`: what boards and tools this machine has."""
from __future__ import annotations

import typer
from rich import box
from rich.measure import Measurement

from tinyhil.board_catalog import get_board, load_boards
from tinyhil.cli import Table, app, console, err_console, reports_errors, waiting


@app.command()
@reports_errors
def boards() -> None:
    """List the boards (PlatformIO environments) tinyhil knows."""
    console.print(boards_table(list(load_boards().values()), console.width))
    from tinyhil.device.stlink import stlink_ports

    ports = stlink_ports()
    console.print("ST-LINK ports (Nucleo boards): " + (", ".join(
        f"{p.device} ({p.probe}, serial {p.serial_number})" for p in ports) or "none attached"),
        highlight=False)


def boards_table(boards, width: int) -> Table:
    """Every board's figures; at a narrow width the transport left out and flash and
    RAM in one column, so that the names (what users type) are never cut."""
    def table(compact: bool) -> Table:
        headers = ("board", "core", "clock", "counter", "flash/RAM") if compact else \
            ("board", "transport", "core", "clock", "counter", "flash", "RAM")
        t = Table(*headers, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False) if compact else Table(*headers)
        t.columns[0].no_wrap = True
        for b in boards:
            memory = ((f"{b.flash_bytes // 1024}/{b.ram_bytes // 1024} KiB",) if compact else
                      (f"{b.flash_bytes // 1024} KiB", f"{b.ram_bytes // 1024} KiB"))
            t.add_row(b.name, *(() if compact else (b.transport,)), b.core, f"{b.clock_hz / 1e6:g} MHz",
                      b.counter, *memory)
        return t

    full = table(compact=False)
    natural = Measurement.get(console, console.options.update_width(10_000), full).maximum
    return full if natural <= width else table(compact=True)


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
    checks = []
    with waiting("checking the toolchain ...") as on_stage:
        checks.extend(run_checks(configs, probe, tflm, on_stage))
    fixes = any(not check.ok for check in checks)  # no empty "fix" column when all is well
    table = Table("check", "", "found", *(("fix",) if fixes else ()))
    for check in checks:
        mark = "[green]ok[/]" if check.ok else ("[red]FAIL[/]" if check.required else "[yellow]-[/]")
        table.add_row(check.what, mark, check.found, *((("" if check.ok else check.fix),) if fixes else ()))
    console.print(table)
    bad = failed(checks)
    if bad:
        err_console.print(f"[bold red]{len(bad)} check(s) failed:[/] " + "; ".join(
            f"{c.what}: {c.fix}" for c in bad), highlight=False)
        raise typer.Exit(1)
    console.print(f"all {len(checks)} checks passed")
