"""`tinyhil deploy` (a found model retrained, converted, measured) and `tinyhil pipeline`."""
from __future__ import annotations

from pathlib import Path

import typer

from tinyhil.board_catalog import get_board
from tinyhil.cli import Table, app, console, options, progress_bars, reports_errors, waiting
from tinyhil.cli.cluster import CLUSTER, INSECURE, TLS_CA, TLS_CERT, TLS_KEY, cluster_executor
from tinyhil.cli.layers import print_layers
from tinyhil.cli.run import print_prediction
from tinyhil.cli.search import DATA_HELP
from tinyhil.errors import TinyhilError


def _print_deployment(d, report: Path) -> None:
    from tinyhil.report.deployment import FIGURE_HEADER, figure_rows

    table = Table(*FIGURE_HEADER,
                  title=f"{d.engine} on {d.board}: {d.data}, architecture {d.architecture_id}")
    for row in figure_rows(d):
        table.add_row(*row)
    console.print(table)
    s = d.scores
    regression = s["int8_host"].is_regression
    sampled = d.host_windows is not None and d.host_windows != d.test_windows
    console.print(f"latency estimate error {d.latency_error_pct:+.2f} % ({d.counter}); "
                  f"{'MAE / RMSE' if regression else 'accuracy / F1'} on "
                  f"{d.host_windows if sampled else d.test_windows} test windows: "
                  f"float {s['float'].text()}, QAT {s['qat'].text()}, int8 host {s['int8_host'].text()}, "
                  f"int8 device {s['int8_device'].text()}"
                  + (f" (on {d.test_windows} of them)" if sampled else "") + "; device = host int8: "
                  f"{'values' if regression else 'classes'} {d.predictions_equal}/{d.test_windows}, "
                  f"outputs {d.outputs_equal}/{d.test_windows} (max {d.max_output_steps} step)",
                  highlight=False)
    if d.differing_windows:
        from tinyhil.report.deployment import differing_rows, rerun_command

        rows = differing_rows(d)
        console.print(f"test windows whose outputs differ ({len(rows)}; window: label, host, device): "
                      + "; ".join(f"{w}: {label}, {h}, {dev} ({outputs})" for w, label, h, dev, outputs in rows[:8])
                      + (f"; and {len(rows) - 8} more" if len(rows) > 8 else ""), highlight=False)
        console.print(f"  layer by layer: {rerun_command(d, d.differing_windows[0].window)}", highlight=False)
    if d.layers_compared is not None:
        print_layers(d.layers_compared)
    for w in d.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"report: {report}")


def deploy_options(epochs: int, qat_epochs: int, repeats: int, seed: int, port: str,
                   compare_layers: bool = False, window: int | None = None):
    from tinyhil.deploy.deployment import DeployOptions

    return DeployOptions(epochs=epochs, qat_epochs=qat_epochs, repeats=repeats, seed=seed, port=port,
                         compare_layers=compare_layers, compare_window=window)


@app.command(renamed={"--window": "--test-window N"})
@reports_errors
def deploy(
    run_dir: Path = typer.Argument(..., help="a search run directory (run.json)"),
    board: str = typer.Option(None, help="board name (see `tinyhil boards`) [default: the board the search used]"),
    epochs: int = typer.Option(50, min=1, help="float training from scratch"),
    qat_epochs: int = typer.Option(20, min=0, help="quantization-aware training"),
    repeats: int = typer.Option(10, min=1, help="timed inferences"),
    report: Path = typer.Option(None, help="the HTML report [default: RUN_DIR/report.html]"),
    port: str = options.PORT,
    luts: Path = options.LUTS,
    seed: int = options.SEED,
    predict: str = typer.Option(None, help="also predict the model's latency on this (calibrated) "
                                "board from its LUT, per op and in total with its bound; the latency "
                                "target is then judged by that board's bound"),
    latency_at: str = typer.Option("p95", help="the bound printed with --predict: p50, p90, p95, p99"),
    compare_layers: bool = typer.Option(False, "--compare-layers", help="also compare one test window's every "
                                        "op with the host interpreter's, and run the first op that differs alone"),
    test_window: int = typer.Option(None, min=0, help="with --compare-layers: this test window [default: the "
                                    "first whose output differs, else 0]"),
) -> None:
    """Retrain a found model with QAT, convert to int8, build it into firmware,
    measure it and its test windows on the board, and report estimate vs measured."""
    from tinyhil.deploy.deployment import deploy as deploy_run
    from tinyhil.files import writable_file
    from tinyhil.measure.characterize import space_lut
    from tinyhil.nas.engines import SearchRun
    from tinyhil.report.deployment import write_report
    from tinyhil.reproducible import deterministic_tensorflow

    deterministic_tensorflow()  # the same retraining on any machine

    if test_window is not None and not compare_layers:
        raise TinyhilError("--test-window picks the window --compare-layers compares: give both")
    found = SearchRun.load(run_dir)
    report = writable_file(report or run_dir / "report.html", "the HTML report")  # before deploying
    config = get_board(board or found.board)
    prediction = None
    if predict:  # the architecture's ops, as the board LUT's estimator sums them
        from tinyhil.estimate.predict import predict as predict_latency

        get_board(predict)
        prediction = predict_latency(list(found.architecture.runtime().ops), predict, luts, latency_at)
    if found.architecture.space == "micronas":
        with progress_bars() as progress:
            lut = space_lut(config, found.architecture.space, *found.input, found.classes, luts, progress)
    else:
        from tinyhil.nas.hardware import covering_lut, engine_lut

        lut = covering_lut(config.name, engine_lut(config.name, found.architecture.space, *found.input,
                                                   found.classes, luts), luts, [found.architecture],
                           log=lambda m: console.print(m, highlight=False))
    with waiting("deploying ...") as on_stage:
        result = deploy_run(run_dir, config, lut, deploy_options(epochs, qat_epochs, repeats, seed, port,
                                                                 compare_layers, test_window),
                            log=lambda m: console.print(m, highlight=False), on_stage=on_stage,
                            predicted=prediction.latency() if prediction else None)
    path = write_report([result], report, f"tinyhil deploy: {run_dir}", prediction=prediction)
    _print_deployment(result, path)
    if prediction:
        from dataclasses import replace

        by_key = {o.op.key: o for o in prediction.ops}
        layers = [layer for layer in result.layers if layer.lut_key in by_key]
        ordered = replace(prediction, ops=tuple(by_key[layer.lut_key] for layer in layers))
        if len(layers) != len(prediction.ops):  # an op the device profile did not pair: the LUT's order
            layers, ordered = [], prediction
        print_prediction(ordered, [(layer.index, layer.op, layer.device_cycles) for layer in layers]
                          or [(o.index, o.op.op, float("nan")) for o in prediction.ops],
                          result.cycles, result.board, result.counter)


@app.command()
@reports_errors
def pipeline(
    engine: str = typer.Option(..., help="micronas | tinytnas | timenas"),
    data: str = typer.Option(..., help=DATA_HELP),
    task: str = typer.Option("classification", help="classification | regression (timenas)"),
    board: str = options.BOARD,
    latency: str = options.LATENCY,
    memory: str = options.MEMORY,
    flash: str = options.FLASH,
    macs: str = options.MACS,
    search_epochs: int = typer.Option(30, min=1, help="MicroNAS search epochs"),
    time_budget: str = options.time_budget("2m"),
    candidates: int = options.candidates(100),
    epochs: int = typer.Option(50, min=1, help="deployment: float training epochs"),
    qat_epochs: int = typer.Option(20, min=0, help="deployment: quantization-aware training epochs"),
    window: int = options.WINDOW,
    out: Path = typer.Option(None, help="the run's directory [default: runs/ENGINE-DATA-BOARD]"),
    report: Path = typer.Option(None, help="the HTML report [default: OUT/report.html]"),
    port: str = options.PORT,
    luts: Path = options.LUTS,
    seed: int = options.SEED,
    cluster: str = CLUSTER, tls_ca_file: Path = TLS_CA, tls_cert: Path = TLS_CERT, tls_key: Path = TLS_KEY,
    insecure: bool = INSECURE,
) -> None:
    """characterize (cached; on a cluster with --cluster) -> search -> deploy -> report."""
    from tinyhil.nas.engines import ENGINES, DataSpec, Targets, default_run_dir
    from tinyhil.pipeline import EngineSettings, PipelineConfig
    from tinyhil.pipeline import pipeline as run_pipeline
    from tinyhil.reproducible import deterministic_tensorflow
    from tinyhil.stage_progress import progress_bar_stage
    from tinyhil.units import parse_duration_s

    if engine not in ENGINES:
        raise TinyhilError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if task not in ("classification", "regression"):
        raise TinyhilError(f"--task must be classification or regression, not {task!r}")
    if task == "regression" and engine != "timenas":
        raise TinyhilError(f"--task regression: only timenas searches regression models "
                           f"({engine}'s space ends in a softmax classifier)")
    config = PipelineConfig(
        engine, DataSpec(data, window, seed, task), Targets.parse(latency, memory, flash, macs),
        out or default_run_dir(engine, data, board),
        EngineSettings(search_epochs=search_epochs, budget_s=parse_duration_s(time_budget, "--time-budget"),
                       n_archs=candidates),
        deploy_options(epochs, qat_epochs, 10, seed, port))
    board_config = get_board(board)
    deterministic_tensorflow()  # the same network and figures on any machine (the README's demo)
    with cluster_executor(cluster, tls_ca_file, tls_cert, tls_key, insecure) as executor, \
            progress_bars() as progress:
        result = run_pipeline(config, board_config, luts, report, progress,
                              log=lambda m: progress.console.print(m, highlight=False),
                              on_stage=progress_bar_stage(progress), executor=executor)
    console.print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()))
    _print_deployment(result.deployment, result.report)
