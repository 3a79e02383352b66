"""`tinyhil bench micronas-sweep|deploy-sweep|engines`: the search engines against their targets."""
from __future__ import annotations

from pathlib import Path

import typer

from tinyhil.board_catalog import get_board
from tinyhil.cli import Table, console, options, progress_bars, reports_errors, waiting
from tinyhil.cli.bench import bench_app
from tinyhil.cli.deploy import deploy_options
from tinyhil.cli.search import DATA_HELP
from tinyhil.errors import TinyhilError
from tinyhil.units import parse_duration_s, parse_memory_bytes


@bench_app.command("micronas-sweep")
@reports_errors
def bench_micronas_sweep(
    board: str = options.BOARD,
    targets: int = typer.Option(4, min=2, help="latency targets per data set"),
    epochs: int = typer.Option(30, min=1, help="search epochs"),
    retrain_epochs: int = typer.Option(40, min=1, help="float training of each found network"),
    memory: str = typer.Option("64KB", "--memory", help=f"the memory target of every run ({options.MEMORY_UNITS})"),
    luts: Path = options.LUTS,
    out: Path = typer.Option(Path("runs/micronas-sweep"), help="directory of the runs and sweep.csv"),
) -> None:
    """MicroNAS over a sweep of latency targets on BasicMotions and a synthetic
    128x9 six-class set: estimate against target, and accuracy per target."""
    from tinyhil.benchmarks.micronas_sweep import sweep_micronas
    from tinyhil.measure.characterize import space_lut

    config = get_board(board)
    with progress_bars() as progress:
        rows = sweep_micronas(config, targets, epochs, retrain_epochs, parse_memory_bytes(memory, "--memory"),
                     luts, out, progress, space_lut)
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
@reports_errors
def bench_deploy_sweep(
    board: str = options.BOARD,
    data: str = typer.Option("basic_motions", help=DATA_HELP),
    engines: str = typer.Option("micronas,tinytnas,timenas", help="engines to sweep, comma-separated"),
    targets: int = typer.Option(4, min=1, help="latency targets per engine"),
    search_epochs: int = typer.Option(30, min=1, help="MicroNAS search epochs"),
    time_budget: str = options.time_budget("60s"),
    candidates: int = options.candidates(50),
    epochs: int = typer.Option(40, min=1, help="deployment: float training epochs"),
    qat_epochs: int = typer.Option(10, min=0, help="deployment: quantization-aware training epochs"),
    luts: Path = options.LUTS,
    out: Path = typer.Option(Path("runs/deploy-sweep"), help="directory of the runs, sweep.csv and the report"),
) -> None:
    """Every engine over a sweep of latency targets, each found model deployed
    and measured: under the targets? estimate within 3 %? device = host?"""
    from tinyhil.benchmarks.deploy_sweep import ESTIMATE_WITHIN_PERCENT, sweep_engines, verdict
    from tinyhil.nas.engines import ENGINES, DataSpec
    from tinyhil.pipeline import EngineSettings
    from tinyhil.report.deployment import summary_rows

    names = [e.strip() for e in engines.split(",") if e.strip()]
    if not names or any(e not in ENGINES for e in names):
        raise TinyhilError(f"--engines: a comma-separated list of {', '.join(ENGINES)}, not {engines!r}")
    with progress_bars() as progress:
        deployments, report = sweep_engines(
            names, DataSpec(data), get_board(board), targets,
            EngineSettings(search_epochs=search_epochs, budget_s=parse_duration_s(time_budget, "--time-budget"),
                           n_archs=candidates), deploy_options(epochs, qat_epochs, 10, 0, ""),
            luts, out, progress, log=lambda m: progress.console.print(m, highlight=False))
    shown = ("engine", "target ms", "est. ms", "measured ms", "error", "target B", "arena used",
             "under targets", "same classes", "int8 acc. dev/host")
    table = Table(*shown, title=f"deploy sweep on {board}: {data} (all columns: {out}/sweep.csv)")
    for row in summary_rows(deployments):
        table.add_row(*(row[c] for c in shown))
    console.print(table)
    v = verdict(deployments)
    console.print(f"BENCH deploy-sweep: {v.under_targets}/{v.deployed} deployed models measured under their "
                  f"latency and memory targets; latency estimate within {ESTIMATE_WITHIN_PERCENT:g} % for "
                  f"{v.estimate_within}/{v.deployed} (worst {v.worst_estimate_error:.2f} %); device predictions = "
                  f"host int8 interpreter for {v.same_predictions}/{v.deployed}; report {report}, "
                  f"table {out}/sweep.csv")


@bench_app.command("engines")
@reports_errors
def bench_engines(
    runs: int = typer.Option(5, min=1, help="TinyTNAS runs for the time bound"),
    time_budget: str = options.time_budget("60s", "TinyTNAS's wall-clock budget per run"),
    epochs: int = typer.Option(3, min=1, help="TinyTNAS training epochs per candidate"),
    candidates: int = typer.Option(30, "--candidates", min=5, help="Tiny-TimeNAS candidates to rank"),
    rank_epochs: int = typer.Option(20, min=1, help="short training of each ranked candidate"),
    luts: Path = options.LUTS,
) -> None:
    """TinyTNAS time bound (synthetic 187x1, qemu-m33 LUT) and Tiny-TimeNAS proxy
    ranking on BasicMotions (qemu-m4 LUT): Kendall tau of ZiCo, FLOPs, random."""
    from tinyhil.benchmarks.engines import proxy_ranking, time_bound_runs
    from tinyhil.lut.table import Lut, space_lut_path

    tt_lut = Lut.load(space_lut_path(luts, "qemu-m33", "tinytnas", (187, 1), 5), board="qemu-m33")
    tn_lut = Lut.load(space_lut_path(luts, "qemu-m4", "timenas", (100, 6), 4), board="qemu-m4")
    budget_s = parse_duration_s(time_budget, "--time-budget")
    with waiting("TinyTNAS time-bound runs ..."):
        rows = time_bound_runs(tt_lut, runs, budget_s, epochs)
    with waiting("ranking Tiny-TimeNAS candidates ..."):
        ranking = proxy_ranking(tn_lut, candidates, rank_epochs)
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
