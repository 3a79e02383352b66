"""Tiny-TimeNAS: zero-cost-proxy search over MLPs and CNNs (the JOSS paper;
its tiny_tnas code), with the device's latency as one more constraint.

    Searcher(max_ram, max_flash, task, x_train, y_train, network_type="ALL",
             max_latency=None, lut=...).run_search(n_archs, top_k, proxy)

keeps the seed's names; limits are in kB (as the seed) and ms. Candidates
are sampled with the selection probabilities of its Table 1, priced with the
LUT before anything else, and the feasible ones ranked by the proxy.
"""
from __future__ import annotations

import numpy as np

from ..errors import TinyhilError
from ..estimate import MissingOps
from ..lut.table import Lut
from ..spaces.timenas import TimeNasSpace, build_architecture, sample_choices
from .constraints import Limits, profile
from .proxies import zico


def quantize_model(model, x_train, mode: str = "int") -> bytes:
    """'int': full-integer int8 (int8 input and output); 'float': float32."""
    import tensorflow as tf

    from ..bench.convert import to_int8_tflite

    if mode == "float":
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()
    if mode != "int":
        raise TinyhilError(f"quantize_model: mode must be 'int' or 'float', not {mode!r}")
    x = np.asarray(x_train, np.float32)
    return to_int8_tflite(model, list(x[:100]))


class Searcher:
    def __init__(self, max_ram, max_flash, task, x_train, y_train, network_type="ALL",
                 max_latency=None, max_macs=None, lut: Lut | None = None, seed: int = 0):
        if task not in ("classification", "regression"):
            raise TinyhilError(f"task must be classification or regression, not {task!r}")
        x = np.asarray(x_train, np.float32)
        y = np.asarray(y_train)
        if task == "classification":
            if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
                raise TinyhilError("classification needs class labels; these targets are "
                                   "continuous: use task='regression'")
            classes = int(y.max()) + 1
        else:
            classes = 1
        if lut is None:
            raise TinyhilError("Searcher needs the board's LUT to price candidates")
        self.space = TimeNasSpace(x.shape[1], x.shape[2] if x.ndim == 3 else 1, classes)
        self.task, self.lut, self.seed = task, lut, seed
        self.x, self.y = x if x.ndim == 3 else x[:, :, None], y
        self.network_type = network_type.upper()
        self.limits = Limits(max_ram * 1024 if max_ram else None,
                             max_flash * 1024 if max_flash else None, max_macs, max_latency)
        self.rejected: list[dict] = []

    def sample(self, rng):
        while True:
            choices = sample_choices(self.space, rng, self.task)
            if self.network_type in ("ALL", choices["type"].upper()):
                return build_architecture(self.space, choices)

    def run_search(self, n_archs=1000, top_k=1, proxy="flops", **kwargs):
        if proxy not in ("flops", "zico"):
            raise TinyhilError(f"proxy must be 'flops' or 'zico', not {proxy!r}")
        rng = np.random.default_rng(self.seed)
        feasible, seen = [], set()
        closest = None
        for _ in range(n_archs):
            arch = self.sample(rng)
            if arch.id in seen:
                continue
            seen.add(arch.id)
            try:
                prof = profile(arch, self.lut)
            except MissingOps as error:
                self.rejected.append({"choices": arch.choices, "why": [str(error)]})
                continue
            violations = self.limits.violations(prof)
            if violations:
                self.rejected.append({"choices": arch.choices, "why": violations, **prof.to_dict()})
                over = sum(_over(v) for v in violations)
                if closest is None or over < closest[0]:
                    closest = (over, arch, prof)
                continue
            feasible.append((arch, prof))
        if not feasible:
            detail = f"; closest: {closest[1].choices} with {closest[2].to_dict()}" if closest else ""
            raise TinyhilError(f"none of {len(seen)} sampled candidates meets the limits{detail}")
        scored = [(self._score(arch, proxy, **kwargs), arch, prof) for arch, prof in feasible]
        scored.sort(key=lambda t: t[0], reverse=True)  # highest first, as the seed
        return [{"model": self.keras(arch), "architecture": arch, "score": score,
                 "profile": prof.to_dict()} for score, arch, prof in scored[:top_k]]

    def keras(self, arch):
        from ..bench.whole_model import keras_model

        return keras_model(arch, batch_size=None)

    def loss(self):
        import tensorflow as tf

        if self.task == "regression":
            return tf.keras.losses.MeanSquaredError()
        return tf.keras.losses.SparseCategoricalCrossentropy()

    def _score(self, arch, proxy, batch_size=16, batches=4):
        if proxy == "flops":
            return float(arch.runtime().macs)
        model = self.keras(arch)
        return zico(model, self.x[:, :, None, :], self.y, self.loss(), batch_size, batches, self.seed)


def _over(violation: str) -> float:
    value, limit = violation.split(" ", 1)[1].split(" > ")
    return float(value.replace(",", "")) / float(limit.replace(",", "")) - 1
