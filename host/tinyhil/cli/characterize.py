"""`tinyhil characterize`: a search space's ops measured into a board's LUT."""
from __future__ import annotations

from pathlib import Path

import typer

from tinyhil.board_catalog import get_board
from tinyhil.cli import Table, app, console, options, progress_bars, reports_errors
from tinyhil.cli.cluster import BUILD_HERE, CLUSTER, INSECURE, TLS_CA, TLS_CERT, TLS_KEY, cluster_executor


@app.command()
@reports_errors
def characterize(
    space: str = typer.Option(..., help="micronas | tinytnas | timenas"),
    input: str = typer.Option(..., "--input", help="window x channels, e.g. 128x9"),
    classes: int = typer.Option(..., min=1, help="number of classes (1: regression)"),
    board: str = options.BOARD,
    luts: Path = options.LUTS,
    repeats: int = typer.Option(None, min=1, max=1000, show_default=False,
                                help="timed inferences per op [default: 1 on an emulated board, whose "
                                     "counts repeat exactly; 3 after a warm-up on a physical one]"),
    per_image: int = typer.Option(100, min=1, max=1000, help="most benchmarks per firmware image"),
    limit: int = typer.Option(None, min=1, help="only the space's first N ops (a quick, resumable subset)"),
    port: str = options.PORT,
    sample: str = typer.Option(None, help="only a sample that calibration learns most from, "
                               "e.g. 5% or 40 (ops spread over kernel paths and sizes)"),
    seed: int = typer.Option(0, help="seed of --sample"),
    model_maker: str = typer.Option("direct", help="how single-op models are made: direct "
                                    "(flatbuffer written from the op) | converter (Keras + TFLite converter)"),
    cluster: str = CLUSTER, tls_ca_file: Path = TLS_CA, tls_cert: Path = TLS_CERT, tls_key: Path = TLS_KEY,
    insecure: bool = INSECURE, build_here: bool = BUILD_HERE,
) -> None:
    """Measure every op of a search space on a board into a lookup table (resumable)."""
    from tinyhil.measure.characterize import Characterizer
    from tinyhil.spaces import parse_input

    window, channels = parse_input(input)
    config = get_board(board)
    with cluster_executor(cluster, tls_ca_file, tls_cert, tls_key, insecure, build_here) as executor, \
            progress_bars() as progress:
        characterizer = Characterizer(config, luts, repeats, per_image, port, progress, model_maker=model_maker,
                                      executor=executor)
        characterizer.check_port()  # before any model is made
        result = characterizer.run(space, window, channels, classes, limit, sample, seed)
    print_characterization(result)


def print_characterization(result) -> None:
    t = result.timing
    table = Table("", "value", title=f"characterization -> {result.lut_path}")
    table.add_row(f"ops sampled ({result.sample})" if result.sample else "ops in space", f"{result.total_ops}")
    table.add_row("already in the LUT", f"{result.already_measured}")
    table.add_row("measured now", f"{result.measured_now} ops in {t.images} image(s)")
    table.add_row("flagged (not recorded as good)", f"{len(t.flagged)}")
    table.add_row("skipped (board gave up; measured next run)", f"{len(t.skipped)}")
    per_minute = result.measured_now / t.wall_s * 60 if t.wall_s else 0
    table.add_row("wall time", f"{t.wall_s:.1f} s ({per_minute:.0f} ops/min)")
    table.add_row("model generation", f"{t.generate_s:.1f} s")
    table.add_row("firmware builds", f"{t.build_s:.1f} s (overlaps measuring)")
    table.add_row("boots", f"{t.boot_s:.1f} s" + (" (overlap measuring)" if t.images > 1 else ""))
    table.add_row("measuring", f"{t.measure_s:.1f} s")
    table.add_row("waiting for the next image", f"{t.wait_s:.1f} s (made, built and booted: not yet)")
    for label, value in emulator_ceiling_rows(t):
        table.add_row(label, value)
    console.print(table)
    for line in t.flagged[:20]:
        console.print(f"[yellow]flagged[/] {line}", highlight=False)
    for line in t.skipped[:20]:
        console.print(f"[red]skipped[/] {line}", highlight=False)
    for line in result.report:
        console.print(f"[yellow]store[/] {line}", highlight=False)


def emulator_ceiling_rows(t) -> list[tuple[str, str]]:
    """The emulator's own limit beside the measuring: the guest instructions
    the images ran, at QEMU's pace on this machine (both measured in the run)."""
    if not t.guest_images:
        return []
    rows = [("guest instructions run", f"{t.guest_instructions / 1e9:.2f} G in {t.guest_images} image(s): the "
             "ops' inferences and the runner's work around them (the firmware's busy ticks)")]
    if not t.guest_rate:
        return rows + [("emulator ceiling", "not measured (no op large enough to time QEMU by)")]
    rows.append(("QEMU's pace", f"{t.guest_rate / 1e6:.0f} M guest instructions/s on this run's ops, sampled "
                 f"on {t.rate_samples} image(s) ({t.rate_probe_s:.1f} s, not in the figures above)"))
    ratio = f", {t.measure_s / t.ceiling_s:.2f}x the ceiling" if t.ceiling_s else ""
    rows.append(("emulator ceiling", f"{t.ceiling_s:.1f} s (guest instructions / QEMU's pace); "
                 f"measuring took {t.measure_s:.1f} s{ratio}"))
    return rows
