"""`tinyhil space`: a search space's size for an input."""
from __future__ import annotations

import typer

from tinyhil.cli import app, console, reports_errors


@app.command("space")
@reports_errors
def space_info(
    name: str = typer.Argument(..., help="micronas | tinytnas | timenas"),
    input: str = typer.Option(..., "--input", help="window x channels, e.g. 128x9"),
    classes: int = typer.Option(..., min=1, help="number of classes"),
) -> None:
    """A search space's size for an input: its architectures and the ops its LUT needs."""
    from tinyhil.spaces import make_space, parse_input

    space = make_space(name, *parse_input(input), classes)
    line = f"{name} {input} c{classes}: {len(space.op_configs())} ops in its LUT"
    if hasattr(space, "architecture_count"):
        mantissa, exponent = f"{space.architecture_count():.1e}".split("e")
        line += f"; {mantissa}e{int(exponent)} architectures ({len(space.decision_groups())} decision groups)"
    console.print(line, highlight=False, soft_wrap=True)
