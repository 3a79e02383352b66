"""Measure the MicroNAS search's defaults on real data: for each variant of
the search configuration, the argmax network's validation accuracy per epoch
(what `curves.png` shows) and at the end, over seeds.

    python scripts/micronas_defaults.py --data japanese_vowels --board qemu-m4 \
        --variants default,before,warmup5 --seeds 2 --out runs/defaults.csv

Prints one line per run and a summary: chance level, the epoch the argmax
network first exceeds twice chance, last-epoch and best validation accuracy.
"""
from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from tinyhil.benchmarks.micronas_sweep import largest_architecture
from tinyhil.board_catalog import get_board
from tinyhil.estimate import lut_latency
from tinyhil.lut.table import Lut
from tinyhil.measure.characterize import space_lut
from tinyhil.nas import data as datasets
from tinyhil.nas.micronas.search import SearchConfig, search, smallest_architecture
from tinyhil.spaces import make_space

# Each variant changes the defaults (SearchConfig) in the fields it names;
# "before" is the configuration before issue 19 (no warm-up, weights at Adam
# 1e-3), run by today's code. Figures: README, "Measured on JapaneseVowels".
VARIANTS = {
    "default": {},
    "before": {"warmup_epochs": 0, "weight_lr": 1e-3},
    "warmup5": {"warmup_epochs": 5},
    "warmup15": {"warmup_epochs": 15},
    "b16": {"batch_size": 16},
    "weights1e-3": {"weight_lr": 1e-3},
    "tau0.2": {"tau_end": 0.2},
    "adam3e-2": {"alpha_optimizer": "adam", "alpha_lr": 3e-2, "alpha_lr_end": 3e-3},
    "sample-priced": {"hardware_pricing": "sample"},  # the authors' pricing (README, "the collapse")
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="japanese_vowels")
    parser.add_argument("--board", default="qemu-m4")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/micronas-defaults.csv"))
    args = parser.parse_args()
    splits = datasets.load(args.data)
    space = make_space("micronas", splits.window, splits.channels, splits.classes)
    committed = Path("luts") / args.board / f"micronas-{splits.window}x{splits.channels}-c{splits.classes}.csv"
    if committed.is_file() and all(op in Lut.load(committed) for op in space.op_configs()):
        lut = Lut.load(committed)  # complete: no firmware needed
    else:
        lut = space_lut(get_board(args.board), "micronas", splits.window, splits.channels, splits.classes,
                        Path("luts"))
    ms = lambda a: lut_latency(a, lut) / lut.meta.clock_hz * 1e3  # noqa: E731
    # a latency target halfway (geometrically) between the smallest and largest network
    target = float(np.sqrt(ms(smallest_architecture(space)) * ms(largest_architecture(space))))
    chance = float(np.max(np.bincount(splits.y_val)) / len(splits.y_val))
    print(f"{splits.name}: {len(splits.y_train)} training windows, chance {chance:.3f}, "
          f"latency target {target:.1f} ms")
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants.split(","):
        for seed in range(args.seeds):
            config = replace(SearchConfig(target, None), epochs=args.epochs, seed=seed, **VARIANTS[name])
            started = time.monotonic()
            result = search(splits, space, lut, config)
            curve = [r.val_accuracy for r in result.history]
            above = next((r.epoch for r in result.history if r.val_accuracy > 2 * chance), None)
            rows.append({"variant": name, "seed": seed, "last": curve[-1], "best": max(curve),
                         "first_above_2x_chance": above, "latency_ms": result.estimated_latency_ms,
                         "seconds": time.monotonic() - started,
                         "curve": " ".join(f"{a:.2f}" for a in curve),
                         "train_curve": " ".join(f"{r.train_accuracy:.2f}" for r in result.history)})
            print(rows[-1], flush=True)
            with open(args.out, "w", newline="") as f:
                writer = csv.DictWriter(f, list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    print("variant: mean last / mean best validation accuracy of the argmax network")
    for name in args.variants.split(","):
        mine = [r for r in rows if r["variant"] == name]
        print(f"{name:18s} {np.mean([r['last'] for r in mine]):.3f} / {np.mean([r['best'] for r in mine]):.3f}"
              f"  first > 2x chance at epochs {[r['first_above_2x_chance'] for r in mine]}")


if __name__ == "__main__":
    main()
