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


def progress_lines(console, every_s: float = 30.0, clock=None):
    """A rich Progress for a log (CI, nohup), where its live bars would print
    nothing until the end: a plain line when a task starts, when its
    description changes (an epoch's figures), at each tenth of it, at least
    every `every_s` seconds while it moves, and when it ends."""
    import time

    from rich.progress import Progress

    class ProgressLines(Progress):
        def __init__(self):
            super().__init__(console=console, disable=True)
            self.clock = clock or time.monotonic
            self.shown: dict[int, tuple[str, int, float, float]] = {}  # id -> description, tenth, done, when

        def add_task(self, description, *args, **kwargs):
            task_id = super().add_task(description, *args, **kwargs)
            self._line(task_id)
            return task_id

        def update(self, task_id, **kwargs):
            super().update(task_id, **kwargs)
            self._line(task_id)

        def advance(self, task_id, advance: float = 1):
            super().advance(task_id, advance)
            self._line(task_id)

        def _line(self, task_id) -> None:
            task = self._tasks[task_id]
            total, done = task.total, task.completed
            tenth = int(done * 10 // total) if total else 0
            now = self.clock()
            before = self.shown.get(task_id)
            if before is not None:
                description, shown_tenth, shown_done, when = before
                moved = done != shown_done
                if (description, shown_tenth) == (task.description, tenth) and not (
                        moved and now - when >= every_s) and not (moved and total and done >= total):
                    return
            self.shown[task_id] = (task.description, tenth, done, now)
            count = f"{done:,.0f}/{total:,.0f}" if total else f"{done:,.0f}"
            self.console.print(f"{task.description}: {count}", highlight=False, markup=False)

    return ProgressLines()
