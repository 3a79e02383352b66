"""Surviving faults: what a measurement does when its board stops answering.

The driver already resends a request whose reply is lost or garbled. When
that is not enough, the board's strategy is asked for heavier steps, one
after the other (reset, power-cycle, re-flash; `RECOVERY_STEPS`), and the
request is sent again after each. When every step has failed the caller gets
`BoardGaveUp`: it skips the measurement and reports it. A reply is only ever
taken from a frame whose CRC holds, so no step can turn a fault into a number.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tinyhil.device.boards import RECOVERY_STEPS, Board
from tinyhil.device.driver import DeviceInfo
from tinyhil.errors import BoardGaveUp, BoardNotResponding, TinyhilError
from tinyhil.image.firmware import BuiltImage
from tinyhil.protocol import RunReply, RunRequest

T = TypeVar("T")


def with_recovery(board: Board, action: Callable[[], T], what: str,
                  steps: tuple[str, ...] = RECOVERY_STEPS) -> T:
    """`action()`, retried after each recovery step while the board does not answer."""
    failures: list[str] = []
    for step in (None, *steps):
        try:
            if step is not None:
                board.recover(step)
            return action()
        except BoardNotResponding as error:
            failures.append(f"{step or 'first try'}: {error}")
        except TinyhilError as error:  # e.g. a reset that came back with another image
            if step is None:
                raise
            failures.append(f"{step}: {error}")
    raise BoardGaveUp(f"board {board.config.name} gave up on {what} after "
                      f"{', '.join(steps)}; " + " | ".join(failures[-2:]))


def run_with_recovery(board: Board, request: RunRequest, steps: tuple[str, ...] = RECOVERY_STEPS,
                      timeout: float | None = None) -> RunReply:
    what = f"benchmark {request.benchmark}"
    return with_recovery(board, lambda: board.driver.run(request, timeout), what, steps)


def boot_with_recovery(board: Board, image: BuiltImage,
                       steps: tuple[str, ...] = RECOVERY_STEPS) -> DeviceInfo:
    """Boots `image`; a board that does not come up gets the recovery steps."""
    failures: list[str] = []
    for step in (None, *steps):
        try:
            return board.boot(image) if step is None else board.recover(step)
        except BoardNotResponding as error:
            failures.append(f"{step or 'boot'}: {error}")
    raise BoardGaveUp(f"board {board.config.name} did not come up with image {image.image_id} "
                      f"after {', '.join(steps)}; " + " | ".join(failures[-2:]))
