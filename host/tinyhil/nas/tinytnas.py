"""TinyTNAS: a time-bound search on the CPU (Saha et al.; BidyutSaha/TinyTNAS),
with the device's latency as one more constraint.

The seed's API, so its README's Search.py runs with only its imports changed:

    algo = TinyTNAS(train_ds, val_ds, input_shape, num_class, learning_rate, constraints_specs)
    results = algo.search(epochs, lossf, search_time_minute)   # [k, c, acc, ram, flash, macc]
    model, ram, flash, macc = BuildModelwithSpecs(k, c, num_class, ds, input_shape, learning_rate, lossf)
    best_val_acc = ModelTraning(model, train_ds, val_ds, epochs)

constraints_specs: {"ram": bytes, "flash": bytes, "macc": MACs} as the seed,
plus tinyhil's "latency" (ms on the board); a missing key is no limit.
`board=` (default the emulated Cortex-M4) picks the LUT that prices each
candidate before it is trained (the seed profiled a converted model with
Silicon Labs MLTK); ops the LUT lacks are measured on the board first.
`lossf`: 0 = one-hot labels (categorical crossentropy), 1 = class indices
(sparse), as the seed's README says (its ModelBank.py maps them the other way
round; the README is what its users follow).

Search order, as the seed's code (TinyTNAS.py): start at k=4, c=3. A feasible
candidate that beats the best is adopted: the pending list becomes
[k + i*floor(k/4), c] for i = 0..3 and k doubles. Otherwise every other depth
0..max_cnn_layer-2 is scanned in ascending order, each feasible one trained,
stopping at the first infeasible one; the best of them is adopted if it beats
the best so far; else the last pending entry (the largest k) is taken next;
an empty list ends the search. The time bound is checked before each
candidate, so a search overruns its budget by at most one candidate.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tinyhil.errors import TinyhilError
from tinyhil.lut.table import Lut
from tinyhil.nas.constraints import Profile
from tinyhil.nas.hardware import BoardPricer
from tinyhil.spaces.tinytnas import TinyTnasArch, TinyTnasSpace, build_architecture

__all__ = ["TinyTNAS", "BuildModelwithSpecs", "ModelTraning"]  # the seed's TinyTNAS.py and ModelBank.py

LOSSES = {0: "categorical_crossentropy", 1: "sparse_categorical_crossentropy"}
VALIDATION_SPLIT = 0.15  # the seed's ModelTraning without val_ds
_pricers: dict[tuple, BoardPricer] = {}



class Found(NamedTuple):
    """What the seed's search returns as a list, by name (a list again in JSON)."""

    k: int
    c: int
    accuracy: float  # -1: nothing feasible found in time
    ram: int
    flash: int
    macs: int


def pricer_for(board: str | None = None, lut: Lut | None = None, luts: Path | None = None,
               log: Callable[[str], None] = print) -> BoardPricer:
    """One pricer per board and LUT directory, so on-demand measurements are reused."""
    if lut is not None:
        return BoardPricer(board, lut, luts, log=log)
    key = (board, str(luts))
    if key not in _pricers:
        _pricers[key] = BoardPricer(board, None, luts, log=log)
    return _pricers[key]


def label_format(y, what: str) -> str:
    """'one-hot' or 'indices'; anything else is refused, saying why."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if not np.all(np.asarray(y, float) == np.round(np.asarray(y, float))) or np.min(y) < 0:
            raise TinyhilError(f"{what}: labels must be class indices 0..C-1 or one-hot rows; "
                               f"found {y[:3]}")
        return "indices"
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and np.all(y.sum(axis=1) == 1)):
            bad = int(np.flatnonzero(~(np.isin(y, (0, 1)).all(axis=1) & (y.sum(axis=1) == 1)))[0])
            raise TinyhilError(f"{what}: labels of shape {y.shape} are not one-hot (row {bad}: {y[bad]})")
        return "one-hot"
    raise TinyhilError(f"{what}: labels must be (N,) or one-hot (N, C), got shape {y.shape}")


def loss_for(lossf, y_train, y_val=None, num_class: int | None = None) -> str:
    """The Keras loss the seed's `lossf` stands for, checked against the labels."""
    if isinstance(lossf, (int, np.integer)) and not isinstance(lossf, bool) and int(lossf) in LOSSES:
        name = LOSSES[int(lossf)]
    elif lossf in LOSSES.values():
        name = lossf
    else:
        raise TinyhilError(f"lossf must be 0 (one-hot labels), 1 (class indices) or a loss name, "
                           f"not {lossf!r}")
    train = label_format(y_train, "training labels")
    if y_val is not None:
        val = label_format(y_val, "validation labels")
        if val != train:
            raise TinyhilError(f"training labels are {train} {np.shape(y_train)}, validation labels are "
                               f"{val} {np.shape(y_val)}: give both the same way")
    wanted = "one-hot" if name == "categorical_crossentropy" else "indices"
    if train != wanted:
        fits = 0 if train == "one-hot" else 1
        raise TinyhilError(f"lossf={lossf!r} ({name}) needs {'one-hot labels' if wanted == 'one-hot' else 'class indices'}"
                           f"; these labels are {train} {np.shape(y_train)}: use lossf={fits}")
    if num_class is not None:
        for y in (y_train, y_val):
            if y is None:
                continue
            y = np.asarray(y)
            seen = y.shape[1] if train == "one-hot" else int(np.max(y)) + 1
            if seen > num_class:
                raise TinyhilError(f"num_class is {num_class} but the labels have "
                                   f"{'columns' if train == 'one-hot' else 'classes up to'} {seen}")
    return name


def sequences(x) -> np.ndarray:
    """(N, T) or (N, T, C) windows as float32 (N, T, C)."""
    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise TinyhilError(f"features must be (N, T) or (N, T, C), got shape {x.shape}")
    return x


def space_for(input_shape, num_class: int, max_cells: int = 4) -> TinyTnasSpace:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 1:
        shape = (shape[0], 1)
    if len(shape) != 2:
        raise TinyhilError(f"input_shape must be (T,) or (T, C), got {tuple(input_shape)}")
    return TinyTnasSpace(shape[0], shape[1], num_class, k_max=10**6, max_cells=max_cells)


def BuildModelwithSpecs(k, c, num_class=2, ds=None, input_shape=None, learning_rate=0.0001, lossf=1,  # noqa: N802
                        board=None, lut=None, luts=None):
    """The template for (k, c), compiled, and its RAM, flash (bytes) and MACs on
    `board`: (model, ram, flash, macc), the seed's tuple."""
    import tensorflow as tf

    from tinyhil.models.whole_model import keras_model

    if input_shape is None:
        if ds is None:
            raise TinyhilError("BuildModelwithSpecs needs input_shape or ds")
        input_shape = np.shape(ds[0])[1:]
    loss = loss_for(lossf, ds[1], num_class=num_class) if ds is not None else _loss_name(lossf)
    arch = build_architecture(space_for(input_shape, num_class), TinyTnasArch(int(k), int(c)))
    p = pricer_for(board, lut, luts).profile(arch)
    model = keras_model(arch, batch_size=None, sequence_input=True)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate), loss=loss,
                  metrics=["accuracy"])
    return model, p.ram, p.flash, p.macs


def _loss_name(lossf) -> str:
    if lossf in LOSSES:
        return LOSSES[lossf]
    if lossf in LOSSES.values():
        return lossf
    raise TinyhilError(f"lossf must be 0 (one-hot labels) or 1 (class indices), not {lossf!r}")


def ModelTraning(model, train_ds, val_ds=None, epochs=3, verbose=0):  # noqa: N802 (the seed's name, sic)
    """Trains `model` and returns its best validation accuracy. Without val_ds the
    last 15 % of train_ds validates, as in the seed. (The seed's code returns
    the best validation macro F1 under this name; its paper reports accuracy.)"""
    x = sequences(train_ds[0])
    if val_ds is None:
        history = model.fit(x, np.asarray(train_ds[1]), epochs=epochs, verbose=verbose,
                            validation_split=VALIDATION_SPLIT)
    else:
        history = model.fit(x, np.asarray(train_ds[1]), epochs=epochs, verbose=verbose,
                            validation_data=(sequences(val_ds[0]), np.asarray(val_ds[1])))
    return float(np.around(np.max(history.history["val_accuracy"]), 3))


class TinyTNAS:
    def __init__(self, train_ds, val_ds, input_shape, num_class, learning_rate=1e-3,
                 constraints_specs=None, max_cnn_layer=6, board: str | None = None,
                 lut: Lut | None = None, luts: Path | None = None, log: Callable[[str], None] = print):
        if train_ds is None or len(train_ds) != 2:
            raise TinyhilError("train_ds must be a tuple (X, Y)")
        if val_ds is not None and len(val_ds) != 2:
            raise TinyhilError("val_ds must be a tuple (X, Y) or None (then 15 % of train_ds validates)")
        self.train_ds = (sequences(train_ds[0]), np.asarray(train_ds[1]))
        self.val_ds = None if val_ds is None else (sequences(val_ds[0]), np.asarray(val_ds[1]))
        self.input_shape = tuple(input_shape)
        self.num_class = int(num_class)
        self.learning_rate = learning_rate
        self.max_cnn_layer = int(max_cnn_layer)
        self.space = space_for(input_shape, self.num_class, max_cells=max(self.max_cnn_layer - 2, 0))
        if self.train_ds[0].shape[1:] != (self.space.window, self.space.channels):
            raise TinyhilError(f"input_shape {self.input_shape} does not match the training windows "
                               f"{self.train_ds[0].shape[1:]}")
        specs = dict(constraints_specs or {})
        unknown = set(specs) - {"ram", "flash", "macc", "latency"}
        if unknown:
            raise TinyhilError(f"constraints_specs: unknown key(s) {sorted(unknown)}; known: ram, flash "
                               "(bytes), macc, latency (ms)")
        self.constraints_specs = specs
        self.pricer = pricer_for(board, lut, luts, log)
        self.log = log
        # the seed's state and bookkeeping, under its names
        self.k, self.c, self.K, self.C = 4, 3, 4, 3
        self.divier = 4  # (sic) the pending list's k + i * floor(k / divier), i < divier
        self.max_acc_found = -1
        self.pendings: list[list[int]] = []
        self.RAM = self.FLASH = self.MACC = -1
        self.LATENCY = -1.0  # tinyhil: the best's latency on the board (ms)
        self.explored_model_count = 0
        self.explored_model_configs: list[list] = []  # [k, c, acc, ram, flash, macc]
        self.feasible_solutions: list[list] = []  # the search path: each adopted best
        self.infeasible_configarations: list[list] = []  # (sic) [k, c, -1, ram, flash, macc]
        self.profiles: dict[tuple[int, int], Profile] = {}
        self.train_seconds: list[float] = []  # tinyhil: each candidate's training time
        self.search_started_time: float | None = None
        self.search_time_minute: float | None = None
        self.elapsed_seconds = 0.0

    # -- the template and its price -------------------------------------------------
    def architecture(self, k: int, c: int):
        return build_architecture(self.space, TinyTnasArch(k, c))

    def price(self, k: int, c: int) -> tuple[Profile, bool]:
        if (k, c) not in self.profiles:
            # every depth of this width in one batch of measurements, if any is missing
            self.pricer.prefetch([self.architecture(k, d) for d in range(self.max_cnn_layer - 1)])
            self.profiles[(k, c)] = self.pricer.profile(self.architecture(k, c))
        p = self.profiles[(k, c)]
        s = self.constraints_specs
        feasible = all(limit is None or value <= limit for value, limit in (
            (p.ram, s.get("ram")), (p.flash, s.get("flash")), (p.macs, s.get("macc")),
            (p.latency_ms, s.get("latency"))))
        return p, feasible

    def _train(self, k: int, c: int, epochs: int) -> float:
        import tensorflow as tf

        from tinyhil.models.whole_model import keras_model

        model = keras_model(self.architecture(k, c), batch_size=None, sequence_input=True)
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=self.learning_rate),
                      loss=self.loss, metrics=["accuracy"])
        started = time.monotonic()
        try:
            return ModelTraning(model, self.train_ds, self.val_ds, epochs)
        finally:
            self.train_seconds.append(time.monotonic() - started)

    def _out_of_time(self) -> bool:
        return time.monotonic() - self.search_started_time >= self.search_time_minute * 60

    # -- the seed's search ----------------------------------------------------------
    def update_status(self, acc: float, profile: Profile) -> None:
        self.max_acc_found = acc
        increment = int(math.floor(self.k / self.divier))  # (2k - k) / 4
        self.pendings = [[self.k + i * increment, self.c] for i in range(self.divier)] if increment >= 1 else []
        self.K, self.C = self.k, self.c
        self.RAM, self.FLASH, self.MACC, self.LATENCY = profile.ram, profile.flash, profile.macs, profile.latency_ms
        self.feasible_solutions.append([self.K, self.C, acc, self.RAM, self.FLASH, self.MACC])
        self.log(f"TinyTNAS: best so far k={self.K} c={self.C} acc {acc:.3f}")
        self.k = self.k * 2

    def ExploreDepth(self, k: int, current_c: int, current_acc: float, epochs: int):  # noqa: N802
        """Every other depth, ascending, up to the first infeasible one: the best
        of them if it beats current_acc, else (-1, -1, None)."""
        best_acc, best_c, best_profile = -1, -1, None
        for depth in sorted(set(range(self.max_cnn_layer - 1)) - {current_c}):
            if self._out_of_time():
                continue
            p, feasible = self.price(k, depth)
            if not feasible:
                self.infeasible_configarations.append([k, depth, -1, p.ram, p.flash, p.macs])
                break
            acc = self._train(k, depth, epochs)
            self.explored_model_count += 1
            self.explored_model_configs.append([k, depth, acc, p.ram, p.flash, p.macs])
            if acc > best_acc:
                best_acc, best_c, best_profile = acc, depth, p
        if best_acc > current_acc:
            return best_acc, best_c, best_profile
        return -1, -1, None

    def search(self, epochs=3, lossf=1, search_time_minute=5):
        """Returns [best_k, best_c, best_acc, ram, flash, macc], the seed's list
        (best_acc -1 and k, c the start if nothing feasible was found in time);
        self.LATENCY holds the best's latency on the board."""
        self.loss = loss_for(lossf, self.train_ds[1], None if self.val_ds is None else self.val_ds[1],
                             self.num_class)
        self.search_time_minute = float(search_time_minute)
        self.search_started_time = time.monotonic()
        try:
            return self._search(epochs)
        finally:
            self.elapsed_seconds = time.monotonic() - self.search_started_time

    def _search(self, epochs: int) -> list:
        while True:
            if self._out_of_time():
                return self.results()
            p, feasible = self.price(self.k, self.c)
            acc = -1
            if feasible:
                acc = self._train(self.k, self.c, epochs)
                self.explored_model_count += 1
                self.explored_model_configs.append([self.k, self.c, acc, p.ram, p.flash, p.macs])
                if self.max_acc_found < acc:
                    self.update_status(acc, p)
                    continue
                acc = -1
            else:
                self.infeasible_configarations.append([self.k, self.c, -1, p.ram, p.flash, p.macs])
            depth_acc, depth_c, depth_profile = self.ExploreDepth(self.k, self.c, acc, epochs)
            if depth_acc > self.max_acc_found:
                self.c = depth_c
                self.update_status(depth_acc, depth_profile)
                continue
            if not self.pendings:
                return self.results()
            self.k, self.c = self.pendings.pop()  # the last: the largest k

    def results(self) -> list:
        return [self.K, self.C, self.max_acc_found, self.RAM, self.FLASH, self.MACC]
