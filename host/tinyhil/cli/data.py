"""`tinyhil data SPEC`: a data set loaded as the searches load it, and its split sizes."""
from __future__ import annotations

import typer

from tinyhil.cli import app, console, options, reports_errors, waiting
from tinyhil.cli.search import DATA_HELP


@app.command("data")
@reports_errors
def data_info(
    spec: str = typer.Argument(..., help=DATA_HELP),
    task: str = typer.Option("classification", help="classification | regression"),
    window: int = options.WINDOW,
    seed: int = typer.Option(0, help="the split's seed (sets without their own split)"),
) -> None:
    """Loads a data set as `tinyhil search --data` does (building and caching what needs
    it, e.g. `uci_har`) and prints its windows per split, classes and shape."""
    from tinyhil.nas.engines import DataSpec

    with waiting(f"loading {spec} ..."):
        splits = DataSpec(spec, window, seed, task).load()
    if splits.report:
        console.print(splits.report, highlight=False, soft_wrap=True)
    console.print(f"{splits.name}: windows {splits.window} x {splits.channels} channels, "
                  f"{splits.classes if splits.task == 'classification' else 'regression'}"
                  f"{' classes' if splits.task == 'classification' else ''}; train {len(splits.y_train):,}, "
                  f"validation {len(splits.y_val):,}, test {len(splits.y_test):,}", highlight=False, soft_wrap=True)
