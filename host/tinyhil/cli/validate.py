"""`tinyhil validate`: the estimators against the device on random architectures."""
from __future__ import annotations

from pathlib import Path

import typer

from tinyhil.board_catalog import get_board
from tinyhil.cli import Table, app, console, options, progress_bars, reports_errors
from tinyhil.cli.cluster import BUILD_HERE, CLUSTER, INSECURE, TLS_CA, TLS_CERT, TLS_KEY, cluster_executor
from tinyhil.lut.table import space_lut_classes


@app.command(renamed={"--report": "--out DIR"})
@reports_errors
def validate(
    space: str = typer.Option(..., help="micronas | tinytnas | timenas"),
    input: str = typer.Option(..., "--input", help="window x channels, e.g. 128x9"),
    board: str = options.BOARD,
    classes: int = typer.Option(None, min=1, help="classes (default: the LUT's, if only one)"),
    n: int = typer.Option(100, "--n", min=2, max=5000, help="random architectures"),
    out: Path = typer.Option(Path("out"), help="directory for the HTML report and the CSV (named with the "
                             "space, input and board)"),
    luts: Path = options.LUTS,
    seed: int = typer.Option(0, help="seed of the architecture sampler"),
    port: str = options.PORT,
    cluster: str = CLUSTER, tls_ca_file: Path = TLS_CA, tls_cert: Path = TLS_CERT, tls_key: Path = TLS_KEY,
    insecure: bool = INSECURE, build_here: bool = BUILD_HERE,
) -> None:
    """Estimate random architectures (LUT, MACs proxy, memory), measure them
    on the board, and report how far each estimator is from the device."""
    from tinyhil.spaces import parse_input
    from tinyhil.validate import validate as run_validation

    window, channels = parse_input(input)
    config = get_board(board)
    classes = classes or space_lut_classes(luts, config.name, space, f"{window}x{channels}")
    with cluster_executor(cluster, tls_ca_file, tls_cert, tls_key, insecure, build_here) as executor, \
            progress_bars() as progress:
        result = run_validation(space, window, channels, classes, config, n, luts, out,
                                seed, port, progress, executor)
    table = Table("estimator", "R²", "MAE (ms)", "MAPE", "max error",
                  title=f"{space} {input} on {board}: {len(result.table)} architectures")
    for name, m in (("LUT latency", result.lut_metrics), ("MACs proxy", result.proxy_metrics)):
        table.add_row(name, f"{m.r2 * 100:.3f} %", f"{m.mae_ms:.3f}", f"{m.mape:.2f} %", f"{m.max_error:.2f} %")
    console.print(table)
    console.print(f"memory: arena estimate within {result.memory_max_error:.2f} % of the TFLM arena "
                  f"used (worst architecture); Appendix A peak / arena used = "
                  f"{result.appendix_a_ratio:.3f} (median)")
    flagged = result.table[result.table["status"] != "ok"]
    if len(flagged):
        console.print(f"[yellow]{len(flagged)} architecture(s) flagged[/]: "
                      + "; ".join(flagged["status"].head(3)), highlight=False)
    console.print(f"report: {result.report_path}\ntable:  {result.csv_path}")
