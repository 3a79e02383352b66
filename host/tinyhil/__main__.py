"""The `tinyhil` command: `python -m tinyhil`, and pyproject's console entry (`main`).

Ctrl-C at any moment ends it with exit status 130 and one line on stderr, never
a traceback: during the second or so of imports (typer, rich, pandas, the
stages) nothing has started yet and the process ends at once; during a command
the KeyboardInterrupt reaches the command, whose clean-up runs, and typer ends
it with status 130.

This module imports nothing but the standard library and tinyhil.errors (a leaf
that imports nothing) before it has set that up.
"""
import os
import signal
import sys

from tinyhil.errors import INTERRUPTED, INTERRUPTED_STATUS


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, INTERRUPTED.encode())
    os._exit(INTERRUPTED_STATUS)


def main() -> None:
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:  # a SIGINT someone chose to ignore stays ignored
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    from tinyhil.cli import app

    # commands get KeyboardInterrupt, and clean up
    signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    try:
        app()  # exits; a KeyboardInterrupt in a command: status 130 (typer)
    except KeyboardInterrupt:  # outside any command (typer building its commands)
        sys.stderr.write(INTERRUPTED)
        sys.exit(INTERRUPTED_STATUS)
    except SystemExit as done:
        if done.code == INTERRUPTED_STATUS:
            sys.stderr.write(INTERRUPTED)
        raise


if __name__ == "__main__":
    main()
