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
from collections.abc import Callable
from typing import NoReturn

import rich.table
import typer
from rich.console import Console

from tinyhil.cli.commands import App
from tinyhil.errors import TinyhilError

app = App(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]},
          help="Hardware-in-the-loop benchmarking for TinyML time-series NAS.")
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from tinyhil import __version__

        console.print(f"tinyhil {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print tinyhil's version and exit."),
    verbose: bool = typer.Option(False, "--verbose", help="Show TensorFlow's and absl's log lines "
                                 "(hidden by default: CUDA probes, absl notices)."),
) -> None:
    # before any command imports TensorFlow: its log lines would bury the figures
    from tinyhil.quiet import quiet

    quiet(not verbose)


class Table(rich.table.Table):
    """A rich Table whose cells wrap instead of being cut at a narrow terminal:
    names users type (boards, LUT keys) and paths stay whole."""

    def add_column(self, *args, **kwargs) -> None:
        kwargs.setdefault("overflow", "fold")
        super().add_column(*args, **kwargs)


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
    """The progress bars long stages report to (passed to them, never patched in);
    in a log (CI, nohup), where bars would print nothing until the end, plain lines."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not console.is_terminal:
        from tinyhil.stage_progress import progress_lines

        return progress_lines(console)
    return Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                    console=console, transient=False)


@contextlib.contextmanager
def waiting(message: str):
    """A spinner saying `message` until a stage names a longer wait: yields
    the stages' on_stage (stage_progress.StageProgress)."""
    from tinyhil.stage_progress import StageLines

    if not console.is_terminal:  # a spinner prints nothing in a log
        console.print(message, highlight=False, markup=False)
    with console.status(message) as status:
        yield StageLines(console, status)


# The commands, registered in the order of the data path (`tinyhil --help` lists them so).
# isort: off
from tinyhil.cli import boards, run, space, characterize, lut, validate, search, data, deploy, regress, cluster, bench  # noqa: E402, F401
# isort: on
