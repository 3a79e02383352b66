"""Writes all_datasets/train_data_mitbih.npz and test_data_mitbih.npz in the
format TinyTNAS's README expects (arrays `features` (N, 187, 1) and one-hot
`labels` (N, 5)), from synthetic five-class beats, for running
tinytnas_search.py without the real MIT-BIH download.

    python make_mitbih_like.py [DIR] [N_TRAIN] [N_TEST]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

WINDOW, CLASSES = 187, 5


def beats(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class c: a pulse whose width and position depend on c, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    t = np.arange(WINDOW)[None, :]
    centre = 40 + 25 * y[:, None] + rng.normal(0, 3, (n, 1))
    width = 4 + 3 * y[:, None]
    x = np.exp(-0.5 * ((t - centre) / width) ** 2) + 0.1 * rng.standard_normal((n, WINDOW))
    return x[:, :, None].astype(np.float32), np.eye(CLASSES, dtype=np.float32)[y]


def main(out: Path, n_train: int, n_test: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        x, y = beats(n, seed)
        np.savez(out / f"{name}_data_mitbih.npz", features=x, labels=y)
        print(f"wrote {out / f'{name}_data_mitbih.npz'}: features {x.shape}, one-hot labels {y.shape}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("all_datasets"),
         int(sys.argv[2]) if len(sys.argv) > 2 else 600, int(sys.argv[3]) if len(sys.argv) > 3 else 200)
