"""`tinyhil bench ...`: the benchmarks of tinyhil itself, one module per group;
each benchmark's own figures and verdicts live in `tinyhil.benchmarks`."""
from __future__ import annotations

from tinyhil.cli import App, app

bench_app = App(help="Benchmarks of tinyhil itself (print their figures).")
app.add_typer(bench_app, name="bench")

from tinyhil.cli.bench import calibrate, characterize, coldstart, farm, paper, search  # noqa: E402, F401
