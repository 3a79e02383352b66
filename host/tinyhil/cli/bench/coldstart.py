"""`tinyhil bench coldstart`: a new user's and CI's waits, from empty caches."""
from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from tinyhil.cli import Table, console, reports_errors
from tinyhil.cli.bench import bench_app


@bench_app.command("coldstart")
@reports_errors
def bench_coldstart(
    steps: str = typer.Option(",".join(("first-run", "warm-checkout", "second-board", "demo", "timenas", "ci")),
                              help="steps to run, in order: first-run, warm-checkout, second-board, demo, "
                                   "timenas, ci"),
    before: str = typer.Option("e5310ae", help="baseline revision measured in the same run ('none': skip)"),
    work: Path = typer.Option(None, help="where the clones and caches go (default: a temporary directory, "
                              "removed at the end)"),
) -> None:
    """Time a first `tinyhil run` (empty caches), the same from another
    checkout, a second board of the same core, the demo, the Tiny-TimeNAS
    100x6 table and CI on a clean clone, for HEAD and a baseline revision."""
    from tinyhil.benchmarks.coldstart import TARGETS_S, WHAT
    from tinyhil.benchmarks.coldstart import bench_coldstart as run_bench

    chosen = tuple(s.strip() for s in steps.split(",") if s.strip())
    baseline = None if before.lower() == "none" else before
    log = lambda line: console.print(line, highlight=False, markup=False)  # noqa: E731
    if work is None:
        with tempfile.TemporaryDirectory(prefix="tinyhil-coldstart-") as scratch:
            after, base = run_bench(chosen, Path(scratch), baseline, log)
    else:
        after, base = run_bench(chosen, work, baseline, log)
    table = Table("step", "target", f"before ({base.revision})" if base else "before", f"after ({after.revision})",
                  "", title="cold start: seconds from empty caches, on this machine")
    for step in chosen:
        a, b = after.steps[step], base.steps.get(step) if base else None
        met = "ok" if a.ok and a.seconds <= TARGETS_S[step] else "MISSED" if a.ok else "FAILED"
        table.add_row(WHAT[step], f"< {TARGETS_S[step] // 60} min" if TARGETS_S[step] >= 60 else f"< {TARGETS_S[step]} s",
                      "-" if b is None else f"{b.seconds:,.0f} s" + ("" if b.ok else " (failed)"),
                      f"{a.seconds:,.0f} s", met)
    console.print(table)
    for step in chosen:
        for side in filter(None, (base, after)):
            if side.steps[step].note:
                console.print(f"{step} ({side.revision}): {side.steps[step].note}", highlight=False, markup=False)
    failed = [s for s in chosen if not after.steps[s].ok]
    console.print("BENCH coldstart: " + ", ".join(f"{s} {after.steps[s].seconds:.0f} s" for s in chosen)
                  + (f"; failed: {', '.join(failed)}" if failed else ""), highlight=False)
    if failed:
        raise typer.Exit(1)
