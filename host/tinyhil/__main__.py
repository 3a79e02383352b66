"""The `tinyhil` command: `python -m tinyhil`, and pyproject's console entry (`main`).

Ctrl-C at any moment ends it with exit status 130 and one line on stderr, never
a traceback: during the second or so of imports (typer, rich, pandas, the
stages) nothing has started yet and the process ends at once; during a command
the KeyboardInterrupt reaches the command, whose clean-up runs, and typer ends
it with status 130.

The handler is set as this module is imported, through the C module _signal
(nothing to read from disk: `signal` itself imports enum, tens of milliseconds
on a loaded machine in which a Ctrl-C would be a traceback).
"""
import _signal
import os  # loaded by the interpreter at start-up already
import sys


def _interrupted_while_starting(signum, frame) -> None:
    from tinyhil.errors import INTERRUPTED, INTERRUPTED_STATUS  # a leaf that imports nothing

    os.write(2, INTERRUPTED.encode())
    os._exit(INTERRUPTED_STATUS)


_previous = _signal.getsignal(_signal.SIGINT)
# only as the program (the console entry, `python -m tinyhil`), not for a module importing main
_program = __name__ == "__main__" or os.path.basename(sys.argv[0] if sys.argv else "") == "tinyhil"
if _program and _previous is not _signal.SIG_IGN:  # a SIGINT someone chose to ignore stays ignored
    _signal.signal(_signal.SIGINT, _interrupted_while_starting)

import signal  # noqa: E402

from tinyhil.errors import INTERRUPTED, INTERRUPTED_STATUS  # noqa: E402


def main() -> None:
    previous = _previous
    if previous is not signal.SIG_IGN:
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
