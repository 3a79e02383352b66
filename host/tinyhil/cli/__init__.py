"""The `tinyhil` command: a typer app and one thin module per stage.

Each module parses its options, calls the stage that does the work, and prints
what came back; the logic lives in the stages. `reports_errors` turns any
TinyhilError into a one-line error and exit status 2, for every command. The
console entry is tinyhil.__main__:main, which makes Ctrl-C one line and exit
status 130, this package's imports included.
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from typing import NoReturn

import typer
from rich.console import Console

from tinyhil.errors import TinyhilError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hardware-in-the-loop benchmarking for TinyML time-series NAS.")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _quiet_tensorflow() -> None:
    # Before any command imports TensorFlow: its C++ INFO/WARNING lines would bury the figures.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fail(error: Exception) -> NoReturn:
    from rich.markup import escape

    # escaped: a message quoting "[window, channels]" is text, not rich markup
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
    raise typer.Exit(2)


def reports_errors(command: Callable) -> Callable:
    """A command's TinyhilError becomes `error: ...` on stderr and exit status 2."""
    @functools.wraps(command)
    def reporting(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TinyhilError as error:
            fail(error)
    return reporting


def progress_bars():
    """The progress bars long stages report to (passed to them, never patched in)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                    console=console, transient=False)


@contextlib.contextmanager
def waiting(message: str):
    """A spinner saying `message` until a stage names a longer wait: yields
    the stages' on_stage (stage_progress.StageProgress)."""
    from tinyhil.stage_progress import StageLines

    with console.status(message) as status:
        yield StageLines(console, status)


# The commands, registered in the order of the data path (`tinyhil --help` lists them so).
# isort: off
from tinyhil.cli import boards, run, space, characterize, lut, validate, search, data, deploy, regress, cluster, bench  # noqa: E402, F401
# isort: on
