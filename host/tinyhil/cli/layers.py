"""`--compare-layers` of `tinyhil run` and `tinyhil deploy`: the input chosen
(a file, a data set's test window), and the per-layer table printed."""
from __future__ import annotations

from pathlib import Path

from tinyhil.cli import Table, console
from tinyhil.errors import TinyhilError

INPUT_HELP = ("the input: a .npy array (int8 as is, float quantized with the model's input scale) or a "
              "raw file of the model's input bytes")
WINDOW_HELP = "the input: this held-out test window of --data (0-based, as the deploy report numbers them)"
DATA_HELP = "with --test-window: a data set (as `tinyhil search --data`) or a search run directory (its data)"


def chosen_input(model, input_file: Path | None, window: int | None, data: str | None,
                 seed: int) -> tuple[bytes, str]:
    """(input bytes, what they are) for `tinyhil run`: --input, --test-window of --data, or random."""
    import numpy as np

    if input_file is not None and window is not None:
        raise TinyhilError("give --input or --test-window, not both")
    if (window is None) != (data is None):
        raise TinyhilError("--test-window and --data go together: which test window of which data set")
    if input_file is not None:
        if not input_file.is_file():
            raise TinyhilError(f"--input {input_file}: no such file")
        if input_file.suffix == ".npy":
            array = np.load(input_file, allow_pickle=False)
            data_bytes = (array.astype(np.int8).tobytes() if array.dtype == np.int8
                          else model.quantize(array))
        else:
            data_bytes = input_file.read_bytes()
        name = str(input_file)
    elif window is not None:
        x = held_out_windows(data)
        if not 0 <= window < len(x):
            raise TinyhilError(f"--test-window {window}: {data} has {len(x)} test windows (0..{len(x) - 1})")
        data_bytes, name = model.quantize(x[window]), f"test window {window} of {data}"
    else:
        data_bytes, name = model.random_input(seed), f"random input, seed {seed}"
    if len(data_bytes) != model.input_bytes:
        raise TinyhilError(f"{name}: {len(data_bytes)} bytes, {model.name} takes {model.input_bytes}")
    return data_bytes, name


def held_out_windows(data: str):
    """The held-out test windows of a data spec, or of a search run's data."""
    from tinyhil.nas.engines import DataSpec, SearchRun

    run = Path(data)
    spec = SearchRun.load(run).data if (run / "run.json").is_file() else DataSpec(data)
    return spec.load().x_test


def print_layers(c) -> None:
    """The per-op table of a LayerComparison, the first diverging op marked."""
    first = c.first_diverging
    table = Table("#", "op", "LUT key", "kernel", "output shape", "board vs host",
                  title=f"{c.model} on {c.board}, layer by layer: {c.input}")
    for d in c.layers:
        style = "red" if d is first else ("yellow" if not d.equal else None)
        table.add_row("in" if d.unit == 0 else str(d.index), d.op, d.lut_key or "-", d.kernel or "-",
                      "x".join(map(str, d.shape)) or "scalar", d.verdict(), style=style)
    console.print(table)
    console.print(f"streamed {len(c.layers)} units in {c.frames} TENSOR frames, {c.requests} LAYERS "
                  f"request(s); arena {c.arena_used:,} B", highlight=False)
    colour = "green" if first is None else "red"
    console.print(f"[{colour}]{c.summary()}[/]", highlight=False)
