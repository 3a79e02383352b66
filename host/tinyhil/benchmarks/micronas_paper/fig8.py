"""Fig. 8 of the MicroNAS paper on UCI-HAR: accuracy (left) and macro F1
(right) of the networks found under latency targets with the memory loss
off, for each board; float and int8, mean and spread over seeds."""
from __future__ import annotations

from pathlib import Path

LABELS = {"nucleo_f446re": "NUCLEO-F446RE", "nucleo_l552ze_q": "NUCLEO-L552ZE-Q"}


def plot_fig8(outcomes, out: Path) -> list[Path]:
    """OUT/fig8-uci_har.png (both boards) and OUT/fig8-BOARD.png (each alone)."""
    from tinyhil.benchmarks.micronas_paper.uci_har import groups

    rows = [g for g in groups(outcomes) if g.experiment == "fig8"]
    boards = sorted({g.board for g in rows})
    paths = [_plot(rows, boards, Path(out) / "fig8-uci_har.png")]
    paths += [_plot(rows, [board], Path(out) / f"fig8-{board}.png") for board in boards]
    return paths


def _plot(rows, boards, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinyhil.files import atomic_write

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (title, metric) in zip(axes, (("Accuracy", "accuracy"), ("F1-Score (Macro)", "f1"))):
        for color, board in enumerate(boards):
            mine = sorted((g for g in rows if g.board == board), key=lambda g: g.lat_target_ms)
            x = [g.lat_target_ms for g in mine]
            for style, suffix, label in (("-", "", "float"), ("--", "_int8", "int8")):
                name = metric + suffix
                ax.errorbar(x, [100 * g.mean(name) for g in mine], yerr=[100 * g.spread(name) for g in mine],
                            fmt=style + "o", color=f"C{color}", capsize=3,
                            label=f"{LABELS.get(board, board)}, {label}")
        ax.set_xscale("log")
        ax.set_xlabel("latency target (ms, on the board; predicted at p95)")
        ax.set_ylabel(f"{title} (%)")
        ax.set_title(f"UCI-HAR: {title}, memory loss off")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, buffer.getvalue())
