"""`tinyhil bench micronas-paper`: the MicroNAS paper's tables and trade-offs."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from tinyhil.board_catalog import get_board
from tinyhil.cli import Table, console, reports_errors
from tinyhil.cli.bench import bench_app
from tinyhil.cli.search import DATA_HELP, _search_inputs
from tinyhil.errors import TinyhilError


@bench_app.command("micronas-paper")
@reports_errors
def bench_micronas_paper(
    data: str = typer.Option(..., help=DATA_HELP),
    board: str = typer.Option("qemu-m4", help="any board with a MicroNAS LUT, calibrated ones too "
                              "(--table2: the paper's boards, each measured on its emulated twin)"),
    seeds: int = typer.Option(None, min=1, help="default 3 (--quick: 1)"),
    epochs: int = typer.Option(None, min=2, help="search epochs: every method's budget (default 30; "
                               "--table2 20, --quick 2)"),
    warmup: int = typer.Option(None, min=0, help="weight-only epochs before the first alpha update "
                               "(default 10; --table2 7, --quick 1)"),
    targets: int = typer.Option(None, min=1, help="targets of each trade-off (Figs. 8 and 10; default 3, "
                                "--quick 2)"),
    retrain_epochs: int = typer.Option(None, min=1, help="default 40 (--table2 30, --quick 3)"),
    qat_epochs: int = typer.Option(None, min=0, help="default 10 (--table2 5, --quick 1)"),
    experiments: str = typer.Option(None, help="which of table, fig8, fig10 to run (default all; --table2: "
                                    "of table2, fig8, tinytnas, engines)"),
    window: int = typer.Option(None, help="window length, for CSV data"),
    luts: Path = typer.Option(Path("luts"), help="directory of lookup tables (LUTS/BOARD/*.csv)"),
    out: Path = typer.Option(None, help="default runs/micronas-paper (--table2: runs/micronas-paper-uci_har, "
                             "-quick with --quick)"),
    device: bool = typer.Option(True, help="run every found int8 network on BOARD (QEMU for the emulated "
                                "boards) and judge it by the measured latency and arena too"),
    port: str = typer.Option("", help="serial port of a physical BOARD (with --device)"),
    table2: bool = typer.Option(False, "--table2", help="UCI-HAR only: the paper's Table 2 at its own targets and "
                                "boards, Fig. 8 on both boards, TinyTNAS's README row and the three engines side "
                                "by side; resumes after every finished (method, row, seed)"),
    quick: bool = typer.Option(False, "--quick", help="with --table2: one seed, a few epochs, searches and "
                               "retraining on a quarter of the training windows (under 30 min on two cores)"),
    kept_only: bool = typer.Option(False, "--kept-only", help="with --table2: print what the ledger holds "
                                   "(the parts run so far), searching and measuring nothing"),
) -> None:
    """The MicroNAS paper's Tables 1-2 (MicroNAS, DARTS-Softmax, DARTS-Gumbel,
    random search) and the trade-offs of Figs. 8 and 10, over seeds; each found
    network estimated (LUT) and measured on the board."""
    from tinyhil.benchmarks.micronas_paper import OnDevice, PaperOptions, run_paper
    from tinyhil.spaces import make_space

    given = {"seeds": seeds, "epochs": epochs, "warmup_epochs": warmup, "retrain_epochs": retrain_epochs,
             "qat_epochs": qat_epochs}
    if table2 or quick or kept_only:
        from tinyhil.cli.bench.paper_uci import bench_table2

        if not table2:
            raise TinyhilError("--quick and --kept-only go with --table2")
        if board != "qemu-m4" or port:
            raise TinyhilError("--table2 runs on the paper's boards (NUCLEO-F446RE, NUCLEO-L552ZE-Q), each "
                               "measured on its emulated twin (qemu-m4, qemu-m33): no --board or --port")
        bench_table2(data, {**given, "fig8_targets": targets}, experiments, quick, luts, out, device, kept_only)
        return
    defaults = PaperOptions()
    chosen = tuple(e.strip() for e in (experiments or "table,fig8,fig10").split(",") if e.strip())
    if not chosen or set(chosen) - {"table", "fig8", "fig10"}:
        raise TinyhilError(f"--experiments takes table, fig8 and fig10, not {experiments!r}")
    options = PaperOptions(**{**asdict(defaults), **{k: v for k, v in given.items() if v is not None},
                              "targets": targets or defaults.targets, "experiments": chosen})
    out = out or Path("runs/micronas-paper")
    on_device = None
    if device:  # checked before the data, the LUT and hours of searching
        on_device = OnDevice(get_board(board), port, log=lambda m: console.print(m, highlight=False))
        try:
            on_device.check()
        except TinyhilError as error:
            raise TinyhilError(f"{error}\n(or --no-device: the LUT estimates only)") from error
    _, splits, lut = _search_inputs("micronas", data, window, 0, board, luts)
    space = make_space("micronas", splits.window, splits.channels, splits.classes)
    outcomes = run_paper(splits, space, lut, options, out, progress=_progress, device=on_device)
    _print_paper(outcomes, splits.name, board, out)
    if any(o.device_error for o in outcomes):
        raise typer.Exit(1)  # every row is in paper.csv; the device figures of some are missing


def _progress(text: str, o) -> None:
    line = f"{text}: {o.method} {o.latency_ms:.1f} ms"
    if o.measured:
        line += f" (device {o.measured_latency_ms:.1f} ms, arena {o.measured_arena_bytes:,} B)"
    console.print(f"{line}, acc {o.accuracy:.3f}/{o.accuracy_int8:.3f}", highlight=False)
    if o.device_error:
        console.print(f"[red]not measured on the device:[/] {o.device_error}; its other figures are "
                      "kept, going on with the next network", highlight=False)


def _print_paper(outcomes, data: str, board: str, out: Path) -> None:
    from tinyhil.benchmarks.micronas_paper import estimate_errors_pct, summarize

    def cell(s, field, digits=3):
        if s.mean[field] != s.mean[field]:  # NaN: no seed measured
            return "-"
        return f"{s.mean[field]:.{digits}f} ± {s.spread[field]:.{digits}f}"

    def by_device(s):
        missing = s.seeds - s.measured
        return f"{s.within_device}/{s.measured}" + (f" ({missing} not measured)" if missing else "")

    titles = {"table": f"Tables 1-2 on {data}, {board}: the same targets for every method",
              "fig8": "Fig. 8: latency targets, memory loss off",
              "fig10": "Fig. 10: memory targets, latency loss off"}
    summaries = summarize(outcomes)
    on_device = any(o.measured or o.device_error for o in outcomes)  # not with --no-device
    for experiment, title in titles.items():
        if not any(s.experiment == experiment for s in summaries):
            continue  # not run (--experiments)
        # each device figure beside its estimate
        columns = {"method": lambda s: s.method,
                   "Lat_t (ms)": lambda s: f"{s.lat_target_ms:.1f}" if s.lat_target_ms else "-",
                   "Mem_t (B)": lambda s: f"{s.mem_target_bytes:,.0f}" if s.mem_target_bytes else "-",
                   "latency LUT (ms)": lambda s: cell(s, "latency_ms", 1),
                   "latency device (ms)": lambda s: cell(s, "measured_latency_ms", 1),
                   "peak App. A (B)": lambda s: cell(s, "appendix_a_bytes", 0),
                   "arena est. (B)": lambda s: cell(s, "arena_bytes", 0),
                   "arena device (B)": lambda s: cell(s, "measured_arena_bytes", 0),
                   "acc. float": lambda s: cell(s, "accuracy"), "acc. int8": lambda s: cell(s, "accuracy_int8"),
                   "F1 float": lambda s: cell(s, "f1"), "F1 int8": lambda s: cell(s, "f1_int8"),
                   "within (LUT)": lambda s: f"{s.within}/{s.seeds}", "within (device)": by_device}
        if not on_device:
            columns = {name: value for name, value in columns.items() if "device" not in name}
        table = Table(*columns, title=title)
        for s in (s for s in summaries if s.experiment == experiment):
            table.add_row(*(value(s) for value in columns.values()))
        console.print(table)
    console.print(f"mean ± standard deviation over seeds; per run: {out}/paper.csv; plots: {out}/tradeoffs.png",
                  highlight=False)
    line = (f"BENCH micronas-paper: {sum(o.within_targets for o in outcomes)}/{len(outcomes)} networks within "
            "their targets by the LUT estimate")
    if on_device:
        measured = [o for o in outcomes if o.measured]
        line += (f", {sum(bool(o.within_targets_device) for o in measured)}/{len(measured)} by the device "
                 f"({len(measured)} of {len(outcomes)} measured on {board})")
        if measured:
            latency = estimate_errors_pct(outcomes)
            arena = estimate_errors_pct(outcomes, "arena_bytes", "measured_arena_bytes")
            line += (f"; estimates against the device: latency {min(latency):+.2f} % to {max(latency):+.2f} %, "
                     f"arena {min(arena):+.1f} % to {max(arena):+.1f} %")
    console.print(line, highlight=False)
    for o in outcomes:
        if o.device_error:
            console.print(f"[red]not measured:[/] {o.experiment} {o.method} seed {o.seed}: {o.device_error}",
                          highlight=False)
