"""Which few ops to measure on a new board, so that a calibration fitted on
them predicts the rest well.

A regression learns most from rows that span its inputs: every kernel path
(op type, with 1x1 convolutions apart: see `calibrate.kernel_path`), and
within each the smallest, the largest and shapes unlike each other. So each
path first gets enough rows for its own calibration terms (as many as the
sample allows), the rest goes in proportion to its ops, and within a path ops
are picked by
farthest-point sampling over log sizes (MACs, input, output, weights) and
kernel/stride geometry, starting from the largest op. It needs only the op
configurations, so it runs before anything is measured.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from tinyhil.errors import TinyhilError
from tinyhil.lut.calibration.features import kernel_path
from tinyhil.lut.calibration.models import Features
from tinyhil.spaces.ops import OpConfig

# enough rows for a path's own terms in the features model
MIN_PER_PATH = Features().min_type_rows



class SampleError(TinyhilError):
    """A sample size that cannot be drawn."""


def parse_fraction(text: str, total: int) -> int:
    """"5%" -> 5 % of total (at least one); "40" -> 40 ops."""
    text = (text or "").strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return max(1, math.ceil(total * percent / 100))
        count = int(text)
        if count < 1:
            raise ValueError
        return min(count, total)
    except ValueError:
        raise SampleError(f"sample {text!r}: give a percentage (5%) or a number of ops (40)") from None


def shape_features(op: OpConfig) -> np.ndarray:
    """Where an op sits among others of its type (log sizes, geometry)."""
    return np.array([math.log1p(op.macs), math.log1p(op.n_inputs * op.input_bytes),
                     math.log1p(op.output_bytes), math.log1p(op.weights_bytes),
                     math.log(math.prod(op.kernel)), math.log(math.prod(op.strides)),
                     math.log1p(op.out_channels)])


def type_quotas(counts: dict[str, int], n: int) -> dict[str, int]:
    """n split over kernel paths: up to MIN_PER_PATH each, round-robin from the
    largest path while the sample allows, then the rest by size."""
    quota = dict.fromkeys(counts, 0)
    for _ in range(MIN_PER_PATH):
        for t in sorted(counts, key=lambda t: -counts[t]):
            if sum(quota.values()) < n and quota[t] < counts[t]:
                quota[t] += 1
    if sum(quota.values()) >= n:
        return quota
    left = n - sum(quota.values())
    room = {t: counts[t] - quota[t] for t in counts}
    total_room = sum(room.values())
    shares = {t: left * room[t] / total_room for t in counts} if total_room else {}
    for t, share in shares.items():
        quota[t] += min(room[t], int(share))
    # largest remainders get the picks that rounding down left over
    for t in sorted(shares, key=lambda t: -(shares[t] - int(shares[t]))):
        if sum(quota.values()) >= n:
            break
        if quota[t] < counts[t]:
            quota[t] += 1
    return quota


def farthest_points(features: np.ndarray, k: int, first: int) -> list[int]:
    chosen = [first]
    distance = np.linalg.norm(features - features[first], axis=1)
    while len(chosen) < k:
        nxt = int(np.argmax(distance))
        if distance[nxt] == 0 and len(chosen) >= len(features):
            break
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(features - features[nxt], axis=1))
    return chosen


def choose_ops(op_list: list[OpConfig], n: int, seed: int = 0) -> list[OpConfig]:
    """n of the ops (distinct keys) that span kernel paths and sizes; `seed`
    varies where the farthest-point walk starts, never the spread."""
    unique = list({op.key: op for op in op_list}.values())
    if n >= len(unique):
        return unique
    by_type: dict[str, list[OpConfig]] = defaultdict(list)
    for op in unique:
        by_type[kernel_path(op)].append(op)
    quotas = type_quotas({t: len(v) for t, v in by_type.items()}, n)
    rng = np.random.default_rng(seed)
    picked: list[OpConfig] = []
    for op_type, members in sorted(by_type.items()):
        k = quotas[op_type]
        if not k:
            continue
        members = [members[i] for i in rng.permutation(len(members))]
        features = np.array([shape_features(op) for op in members])
        spread = features.std(axis=0)
        features = (features - features.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
        # seed 0 starts from the largest op; other seeds from a random one
        first = int(np.argmax([op.macs for op in members])) if seed == 0 else int(rng.integers(len(members)))
        picked += [members[i] for i in farthest_points(features, k, first)]
    return picked
