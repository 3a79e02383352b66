"""`tinyhil bench faults|farm`: the regression farm under faults, and its speed-up."""
from __future__ import annotations

import os
from pathlib import Path

import typer

from tinyhil.cli import Table, console, options, reports_errors
from tinyhil.cli.bench import bench_app


@bench_app.command("faults")
@reports_errors
def bench_faults(
    faults: int = typer.Option(200, min=1, help="inject at least this many faults"),
    boards: int = typer.Option(2, min=1, max=16, help="emulated boards in the farm"),
    board: str = typer.Option("qemu-m4", help="the emulated board of the farm"),
    baseline: Path = typer.Option(Path("luts"), help="LUTs the cases (and exact baselines) come from"),
    sample: int = typer.Option(3, min=1, help="rows per space LUT in each round"),
    host_kills: int = typer.Option(3, min=0, help="rounds where tinyhil itself is killed and resumed"),
    seed: int = typer.Option(0, help="seed of the faults and of the sampled rows"),
    timeout: str = options.timeout("1s"),
) -> None:
    """Regression rounds through a fault-injecting serial proxy (garble, drop,
    duplicate, stall, noise while measuring), with board resets, QEMU kills,
    host kills and impossible baselines; prints
    the faults by kind, survived, and rows lost/duplicated/wrong (must be 0)."""
    import tempfile

    from tinyhil.benchmarks.faults import campaign
    from tinyhil.execute.inventory import emulated_farm
    from tinyhil.regress.suite import Suite

    timeout_s = options.seconds(timeout, "--timeout")
    suite = Suite("faults", repeats=2, per_image=3, lut_sample=sample, seed=seed, deployments="")
    with tempfile.TemporaryDirectory(prefix="tinyhil-faults-") as scratch:
        report = campaign(emulated_farm(board, boards), suite, baseline, Path(scratch), faults,
                          host_kills, seed, timeout_s, log=lambda line: console.print(line, highlight=False))
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
@reports_errors
def bench_farm(
    board: str = typer.Option("qemu-m4", help="the emulated board of the farm"),
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
    with tempfile.TemporaryDirectory(prefix="tinyhil-farm-") as scratch:
        result = measure_speedup(board, suite, baseline, Path(scratch), rounds=rounds)
    console.print(f"BENCH farm: {result.cases} cases in {result.jobs} jobs on {board}: "
                  f"1 board {result.seconds[1]:.1f} s, 2 boards {result.seconds[2]:.1f} s, "
                  f"speed-up {result.factor(2):.2f}x on {os.cpu_count()} cores "
                  f"(best of {rounds}; load average {os.getloadavg()[0]:.1f})")
    console.print(f"measuring, summed over boards: 1 board {result.measure_seconds[1]:.1f} s, "
                  f"2 boards {result.measure_seconds[2]:.1f} s (more than 1 board's when other "
                  "work shares the cores)")


@bench_app.command("cluster")
@reports_errors
def bench_cluster(
    space: str = typer.Option("micronas", help="micronas | tinytnas | timenas"),
    input: str = typer.Option("29x12", "--input", help="window x channels"),
    classes: int = typer.Option(9, min=1, help="number of classes"),
    board: str = typer.Option("qemu-m4", help="the emulated board of each worker"),
    per_image: int = typer.Option(50, min=1, help="ops per job (firmware image)"),
    rounds: int = typer.Option(2, min=1, help="timings per way (the best is kept)"),
) -> None:
    """One LUT on 1 local board, 2 local boards and 2 workers of a loopback Dask
    cluster: wall times, scaling efficiency, and the overhead per job the cluster adds."""
    import tempfile

    from tinyhil.benchmarks.cluster import OVERHEAD_TARGET
    from tinyhil.benchmarks.cluster import bench_cluster as run_bench
    from tinyhil.spaces import parse_input

    window, channels = parse_input(input)
    with tempfile.TemporaryDirectory(prefix="tinyhil-cluster-") as scratch:
        r = run_bench(space, window, channels, classes, Path(scratch), board, per_image, rounds,
                      log=lambda m: console.print(m, highlight=False))
    ways = "; ".join(f"{way} {s:.1f} s" + ("" if way == "1 local board" else f" (efficiency {r.efficiency(way):.0%})")
                     for way, s in r.seconds.items())
    console.print(f"BENCH cluster: {space} {input} c{classes} on {board}, {r.ops} ops in {r.jobs} jobs: {ways}; "
                  f"tables {'byte-identical' if r.identical else 'DIFFER'} (best of {rounds}; {os.cpu_count()} cores, "
                  f"load average {os.getloadavg()[0]:.1f})", highlight=False)
    console.print(f"cluster overhead per job: dispatch {r.dispatch_s * 1e3:.0f} ms + results back "
                  f"{r.return_s * 1e3:.0f} ms against a job's {r.job_seconds:.2f} s = {r.overhead:.1%} "
                  f"(target under {OVERHEAD_TARGET:.0%}); jobs by board: "
                  + ", ".join(f"{b} {n}" for b, n in sorted(r.boards_used.items())), highlight=False)
    if not r.identical or r.overhead >= OVERHEAD_TARGET:
        raise typer.Exit(1)
