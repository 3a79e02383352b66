"""`tinyhil regress`: a suite re-measured on a board inventory against its baselines."""
from __future__ import annotations

from pathlib import Path

import typer

from tinyhil.cli import Table, app, console, options, reports_errors
from tinyhil.cli.cluster import BUILD_HERE, CLUSTER, INSECURE, TLS_CA, TLS_CERT, TLS_KEY, cluster_executor


@app.command(renamed={"--boards": "--inventory boards/lab.yaml"})
@reports_errors
def regress(
    inventory: Path = typer.Option(Path("boards/lab.yaml"), "--inventory",
                                   help="the board inventory (YAML); with --cluster, the workers' boards instead"),
    suite: str = typer.Option("nightly", help="suite name (suites/NAME.yaml) or a YAML path"),
    baseline: Path = typer.Option(Path("luts"), help="LUT directory the sampled rows come from"),
    out: Path = typer.Option(Path("out/regress"), help="directory of the history, the trend page (and JUnit)"),
    junit: Path = typer.Option(None, help="the JUnit XML file to write [default: OUT/junit.xml]"),
    timeout: str = options.timeout(),
    pinned_images: bool = typer.Option(False, "--pinned-images",
                                       help="only print the image each labgrid board must run"),
    deployments: Path = typer.Option(None, help="deployed runs to re-measure, instead of the "
                                     "suite's (may lie outside the project)"),
    models: list[Path] = typer.Option([], "--model", help="a .tflite to re-measure besides the "
                                      "suite's (may lie outside the project; repeatable)"),
    wait: str = options.wait(),
    cluster: str = CLUSTER, tls_ca_file: Path = TLS_CA, tls_cert: Path = TLS_CERT, tls_key: Path = TLS_KEY,
    insecure: bool = INSECURE, build_here: bool = BUILD_HERE,
) -> None:
    """Re-measure a suite on every board of an inventory (in parallel), compare
    with the baselines, write JUnit XML and the trend page; exit 1 on a regression."""
    from dataclasses import replace

    from tinyhil.execute.inventory import load_inventory, with_wait
    from tinyhil.regress.nightly import pinned_images as images_of
    from tinyhil.regress.nightly import regress as run_regress
    from tinyhil.regress.suite import load_suite as load_suite_file

    def load_suite(name: str):
        """The suite file (its paths confined to the project), then the paths given here."""
        loaded = load_suite_file(name)
        return replace(loaded, deployments=str(deployments.resolve()) if deployments else loaded.deployments,
                       models=loaded.models + tuple(str(m.resolve()) for m in models))

    timeout_s = options.seconds(timeout, "--timeout")
    wait_s = options.seconds(wait, "--wait", allow_zero=True)
    if pinned_images:
        for name, image in images_of(load_inventory(inventory), load_suite(suite),
                                     baseline).items():
            console.print(f"{name}: {image.elf} (image {image.image_id})", highlight=False)
        return

    def show(row) -> None:
        colour = {"pass": "green", "new": "cyan", "improved": "green"}.get(row.verdict, "red")
        console.print(f"[{colour}]{row.verdict:<10}[/] {row.farm_board:<8} {row.case} "
                      f"{row.metric}: {row.detail}", highlight=False, soft_wrap=True)

    with cluster_executor(cluster, tls_ca_file, tls_cert, tls_key, insecure, build_here) as executor:
        # on a cluster the boards are its workers' (their lanes), not --inventory
        farm = executor.farm_boards() if executor else with_wait(load_inventory(inventory), wait_s)
        result = run_regress(farm, load_suite(suite), baseline, out,
                             junit or out / "junit.xml", timeout_s, on_row=show, executor=executor)
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
    _print_failures(result)


def _print_failures(result) -> None:
    """Last, what failed: each regression (and error or skip) with its figures,
    so the end of a CI log says what to look at."""
    from tinyhil.regress.nightly import failing_rows

    failing = failing_rows(result)
    if not failing:
        console.print(f"[green]no regressions[/] in run {result.run_id}", highlight=False)
        return
    console.print(f"[red]{len(failing)} failing figure(s)[/] in run {result.run_id}:", highlight=False)
    for line in failing:
        console.print(f"  [red]{line}[/]", highlight=False, soft_wrap=True)
