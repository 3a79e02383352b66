"""The MicroNAS search learns: on data only sensor fusion can classify, the
argmax network fuses the sensors and beats chance well before a long search
would end (a small space and a LUT made up from MACs: no device)."""
import numpy as np

from test_micronas_baselines import made_up_lut
from tinyhil.estimate import lut_latency
from tinyhil.nas.data import Splits
from tinyhil.nas.micronas.search import SearchConfig, search, smallest_architecture
from tinyhil.spaces.micronas import MicroNasSpace


def antiphase_channel(n: int, window: int, channels: int, classes: int, seed: int) -> Splits:
    """Every channel carries the same sine (random phase and frequency) plus
    noise; class c flips channel c. Each channel alone looks the same in every
    class, so a network that never mixes channels (no branch: only 1x1
    residuals) stays at chance."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    t = np.arange(window)[None, :, None]
    freq = rng.uniform(1.5, 4, (n, 1, 1)) / window
    wave = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi, (n, 1, 1)))
    sign = np.ones((n, 1, channels))
    sign[np.arange(n), 0, y] = -1
    x = (wave * sign + 0.3 * rng.standard_normal((n, window, channels))).astype(np.float32)
    a, b = int(0.6 * n), int(0.8 * n)
    return Splits(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], classes, "antiphase")


def test_search_finds_a_network_that_fuses_sensors_and_beats_chance():
    space = MicroNasSpace(32, 5, 3, tr_fmax=8, sf_fmax=16)
    lut = made_up_lut(space)
    splits = antiphase_channel(n=400, window=32, channels=5, classes=3, seed=0)
    target = lut_latency(smallest_architecture(space), lut) / lut.meta.clock_hz * 1e3 * 50  # not binding
    result = search(splits, space, lut, SearchConfig(target, None, epochs=9, warmup_epochs=3, seed=0))
    chance = np.max(np.bincount(splits.y_val)) / len(splits.y_val)
    branches = [cell["branches"] for cell in result.architecture.choices["sf"] if not cell["skip"]]
    assert any(branches), result.architecture.choices  # some cell runs its bottleneck: sensors are fused
    assert result.val_accuracy > 2 * chance - 0.05, [r.val_accuracy for r in result.history]
