"""TinyTNAS: a time-bound search on the CPU (Saha et al.; BidyutSaha/TinyTNAS),
with the device's latency as one more constraint.

    TinyTNAS(train_ds, val_ds, input_shape, num_class, learning_rate,
             constraints_specs).search(epochs, lossf, search_time_minute)

keeps the seed's names. constraints_specs: {"ram": bytes, "flash": bytes,
"macc": MACs, "latency": ms}; a board's LUT prices each candidate before it is
trained, so infeasible candidates cost no training time.

Search order (seed code): start at k=4, c=3. A candidate that beats the best
is recorded, the pending list is refilled with k + i*floor(k/4) (i = 0..3)
and k doubles; otherwise every depth c in 0..4 but the current is tried in
ascending order (stopping at the first infeasible one); if none beats the
best, the next pending k is taken; an empty list ends the search. The time
bound is checked between candidates, so a search overruns its budget by at
most one candidate's training.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import TinyhilError
from ..estimate import MissingOps
from ..lut.table import Lut
from ..spaces.tinytnas import TinyTnasArch, TinyTnasSpace, build_architecture
from .constraints import Limits, Profile, profile

MAX_CELLS = 4


@dataclass
class Candidate:
    k: int
    c: int
    profile: Profile
    feasible: bool
    accuracy: float | None = None
    violations: list[str] = field(default_factory=list)


class TinyTNAS:
    def __init__(self, train_ds, val_ds, input_shape, num_class, learning_rate=1e-3,
                 constraints_specs=None, lut: Lut | None = None):
        self.x_train, self.y_train = train_ds
        self.x_val, self.y_val = val_ds
        window, channels = input_shape[0], (input_shape[1] if len(input_shape) > 1 else 1)
        self.space = TinyTnasSpace(window, channels, num_class, k_max=10**6, max_cells=MAX_CELLS)
        self.num_class = num_class
        self.learning_rate = learning_rate
        specs = constraints_specs or {}
        self.limits = Limits(specs.get("ram"), specs.get("flash"), specs.get("macc"), specs.get("latency"))
        if lut is None:
            raise TinyhilError("TinyTNAS needs the board's LUT to price candidates")
        self.lut = lut
        # the seed's bookkeeping, under its names
        self.explored_model_count = 0
        self.explored_model_configs: list[tuple[int, int]] = []
        self.feasible_solutions: list[dict] = []
        self.infeasible_configarations: list[dict] = []  # (sic, as in the seed)
        self.search_path: list[dict] = []
        self._seen: dict[tuple[int, int], Candidate] = {}

    def architecture(self, k: int, c: int):
        return build_architecture(self.space, TinyTnasArch(k, c))

    def _train(self, arch, epochs: int, lossf: str) -> float:
        import tensorflow as tf

        from ..bench.whole_model import keras_model

        model = keras_model(arch, batch_size=None)
        model.compile(optimizer=tf.keras.optimizers.Adam(self.learning_rate), loss=lossf,
                      metrics=["accuracy"])
        y_train, y_val = self.y_train, self.y_val
        if lossf == "categorical_crossentropy" and np.ndim(y_train) == 1:
            y_train = tf.keras.utils.to_categorical(y_train, self.num_class)
            y_val = tf.keras.utils.to_categorical(y_val, self.num_class)
        history = model.fit(self._x(self.x_train), y_train, epochs=epochs, batch_size=32, verbose=0,
                            validation_data=(self._x(self.x_val), y_val))
        return float(max(history.history["val_accuracy"]))

    @staticmethod
    def _x(x):
        x = np.asarray(x, np.float32)
        return x[:, :, None, :] if x.ndim == 3 else x[:, :, None, None]  # (N, T, 1, C)

    def evaluate(self, k: int, c: int, epochs: int, lossf: str) -> Candidate:
        if (k, c) in self._seen:
            return self._seen[(k, c)]
        arch = self.architecture(k, c)
        try:
            prof = profile(arch, self.lut)
        except MissingOps as error:  # wider than the characterized space: out of bounds here
            prof, violations = Profile(0, 0, arch.macs, 0.0), [f"not in the LUT: {error}"]
        else:
            violations = self.limits.violations(prof)
        candidate = Candidate(k, c, prof, not violations, violations=violations)
        self.explored_model_count += 1
        self.explored_model_configs.append((k, c))
        if violations:  # priced before training: costs no training time
            self.infeasible_configarations.append({"k": k, "c": c, "why": violations, **prof.to_dict()})
        else:
            t0 = time.monotonic()
            candidate.accuracy = self._train(arch, epochs, lossf)
            self.feasible_solutions.append({"k": k, "c": c, "accuracy": candidate.accuracy,
                                            "train_seconds": time.monotonic() - t0, **prof.to_dict()})
        self._seen[(k, c)] = candidate
        return candidate

    def search(self, epochs=5, lossf="categorical_crossentropy", search_time_minute=10.0):
        """Returns [best_k, best_c, accuracy, ram, flash, macs, latency_ms] (the
        seed's list, plus the latency); None entries if nothing was feasible."""
        if lossf == "categorical_crossentropy" and np.ndim(self.y_train) == 2 and \
                np.shape(self.y_train)[1] != self.num_class:
            raise TinyhilError(f"one-hot labels have {np.shape(self.y_train)[1]} columns, "
                               f"num_class is {self.num_class}")
        if lossf == "sparse_categorical_crossentropy" and np.ndim(self.y_train) != 1:
            raise TinyhilError("sparse_categorical_crossentropy needs class indices, not one-hot labels")
        started = time.monotonic()
        budget = search_time_minute * 60
        self.started, self.budget = started, budget
        out_of_time = lambda: time.monotonic() - started >= budget  # noqa: E731
        best: Candidate | None = None
        k, c, pending = 4, 3, []

        def better(cand: Candidate) -> bool:
            return cand.feasible and (best is None or cand.accuracy > best.accuracy)

        def adopt(cand: Candidate):
            nonlocal best, pending, k, c
            best = cand
            self.search_path.append({"k": cand.k, "c": cand.c, "accuracy": cand.accuracy})
            pending = [cand.k + i * (cand.k // 4) for i in range(1, 4)]
            k, c = cand.k * 2, cand.c

        while not out_of_time():
            cand = self.evaluate(k, c, epochs, lossf)
            if better(cand):
                adopt(cand)
                continue
            improved = False
            for depth in range(MAX_CELLS + 1):
                if depth == c or out_of_time():
                    continue
                other = self.evaluate(k, depth, epochs, lossf)
                if not other.feasible:
                    break
                if better(other):
                    adopt(other)
                    improved = True
                    break
            if improved:
                continue
            if not pending:
                break
            k = pending.pop(0)
        self.elapsed_seconds = time.monotonic() - started
        self.best = best
        if best is None:
            return [None] * 7
        p = best.profile
        return [best.k, best.c, best.accuracy, p.ram, p.flash, p.macs, p.latency_ms]
