"""Errors a user can act on. Every message names the problem and, where there
is one, the command that fixes it; the CLI prints them without a traceback."""


# What the command prints, and its exit status, when Ctrl-C ends it (128 + SIGINT,
# as a shell reports a command ended so).
INTERRUPTED = "tinyhil: interrupted (Ctrl-C)\n"
INTERRUPTED_STATUS = 130


class TinyhilError(Exception):
    """Base class: a problem with the user's input or set-up, explained."""


class InvalidModel(TinyhilError):
    """The file is not a .tflite model tinyhil can run (corrupt, float, ...)."""


class UnsupportedOp(TinyhilError):
    """The model uses an op that the firmware's TFLM build cannot register."""


class ImageTooLarge(TinyhilError):
    """The firmware image does not fit the board's flash or RAM."""


class ToolMissing(TinyhilError):
    """QEMU, the Arm toolchain or PlatformIO is not installed."""


class BuildFailed(TinyhilError):
    """PlatformIO failed for another reason; the message points at the log."""


class UnknownBoard(TinyhilError):
    """The board name is not an environment of platformio.ini."""


class BoardNotResponding(TinyhilError):
    """No valid answer from the board after the timeout and all retries."""


class SampleDisturbed(BoardNotResponding):
    """Every try of a RUN came back with a timed sample that another interrupt
    disturbed: the board sent no figure and none may be recorded; the board's
    recovery steps come next, as for a board that does not answer."""


class DeviceError(TinyhilError):
    """The firmware answered with an ERROR frame."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class BoardGaveUp(BoardNotResponding):
    """Still no valid answer after every recovery step (reset, power-cycle,
    re-flash): the measurement is skipped and reported, never guessed."""
