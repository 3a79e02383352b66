"""Long waits named while they last (TFLM compiled for a core, a lock held by
another process): a stage calls its `on_stage(what, done, total)`, `what` a
str.format template of done and total; these turn the calls into what the user
sees: a progress bar, a spinner's text, or plain lines in a log (CI, nohup)."""
from __future__ import annotations

from collections.abc import Callable

StageProgress = Callable[[str, int, int], None]


class StageLines:
    """The spinner's text in a terminal; in a log, a line when the stage
    changes and at each tenth of it."""

    def __init__(self, console, status=None):
        self.console, self.status = console, status
        self.last: tuple[str, int] = ("", -1)

    def __call__(self, what: str, done: int, total: int) -> None:
        text = what.format(done=done, total=total)
        if self.console.is_terminal and self.status is not None:
            self.status.update(text)
            return
        step = (what, done * 10 // total if total else 0)
        if step != self.last:
            self.last = step
            self.console.print(text, highlight=False, markup=False)


def progress_bar_stage(progress) -> StageProgress:
    """A bar of its own per stage in a rich Progress (its lines in a log)."""
    if not progress.console.is_terminal:
        return StageLines(progress.console)
    tasks: dict[str, object] = {}

    def on_stage(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = progress.add_task(what.split(":")[0], total=total or None)
        progress.update(tasks[what], completed=done)
    return on_stage
