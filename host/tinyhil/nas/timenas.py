"""Tiny-TimeNAS: zero-cost-proxy search over MLPs and CNNs (the JOSS paper;
its tiny_tnas code), with the device's latency as one more constraint.

The seed's API, so its walk-through runs with only its imports changed:

    searcher = Searcher(max_ram, max_flash, task, x_train, y_train, network_type='ALL')
    cand_models = searcher.run_search(n_archs, top_k, proxy, method='random', allow_mix=False)
    model = cand_models[0]['model']          # Keras, takes (T, C) windows
    cand_models[0]['profile']                # model_size, runtime_memory (kB), flops, macs,
                                             # params, zico, + latency_ms, ram, flash (int8)
    quantize_model(model, x_train, mode='int' | 'float'); get_model_size(tflite)
    load_dataset(task, data_name=...); evaluate_classification; evaluate_regression

Limits are in kB of 1000 B, as the seed. `limits=` says what they bound:
- "seed" (the default, so the walk-through's numbers mean what they meant):
  the float32 model the seed's profiler priced: flatbuffer size and runtime
  memory of float32 weights and activations;
- "int8": tinyhil's estimate of the int8 model the board runs (flash and TFLM
  arena from the LUT): the same numbers let through networks about 4x larger.
Either way `max_latency` (ms, on `board`) and `max_macs` can be added.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tinyhil.errors import TinyhilError
from tinyhil.lut.table import Lut
from tinyhil.nas.constraints import Limits, Profile, float32_profile, parameters
from tinyhil.nas.data import AVAILABEL_DATASETS, load_dataset  # noqa: F401 -- the seed's names, re-exported
from tinyhil.nas.evaluate import evaluate_classification, evaluate_regression  # noqa: F401
from tinyhil.nas.hardware import BoardPricer
from tinyhil.nas.proxies import zico
from tinyhil.spaces.micronas import SpaceError
from tinyhil.spaces.timenas import TimeNasSpace, build_architecture, network_types, sample_choices

LIMITS = ("seed", "int8")
KB = 1000  # the seed's kB (its profiler divides bytes by 1000)
REPRESENTATIVE_SAMPLES = 100


def quantize_model(model, x_train, mode: str = "float") -> bytes:
    """As the seed: int8 weights and activations either way; mode 'int' makes
    the input and output int8 too, mode 'float' (the seed's default) keeps a
    float32 input and output (quantize / dequantize around the int8 ops)."""
    from tinyhil.models.convert import to_int8_tflite

    if mode not in ("int", "float"):
        raise TinyhilError(f"quantize_model: mode must be 'int' or 'float', not {mode!r}")
    x = np.asarray(x_train, np.float32)
    if x.ndim == 2 and len(model.inputs[0].shape) == 3:
        x = x[:, :, None]
    return to_int8_tflite(model, list(x[:REPRESENTATIVE_SAMPLES]), io="int8" if mode == "int" else "float32")


def get_model_size(tflite_model: bytes) -> float:
    """kB (of 1000 B) of a .tflite flatbuffer. (The seed measured sys.getsizeof of
    the bytes object, 33 B of Python header more.)"""
    return len(tflite_model) / KB


def sequence_windows(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise TinyhilError(f"x_train must be (N, T) or (N, T, C) windows, got shape {x.shape}")
    return x


def task_targets(task: str, y) -> tuple[np.ndarray, int]:
    """The targets checked against the task (which decides, never the dtype) and the outputs."""
    from tinyhil.nas.data import DataError, targets

    try:
        y = targets(np.asarray(y), "y_train", task)
    except DataError as error:
        raise TinyhilError(str(error).replace("use task ", "use task=")) from None
    if task == "regression":
        return y, 1
    y = y.astype(np.int64)
    if y.min() < 0:
        raise TinyhilError(f"y_train: class labels must be 0..C-1, found {y.min()}")
    return y, max(int(np.unique(y).shape[0]), int(y.max()) + 1)


class Searcher:
    def __init__(self, max_ram, max_flash, task, x_train, y_train, network_type="ALL", *,
                 max_latency=None, max_macs=None, limits: str = "seed", board: str | None = None,
                 lut: Lut | None = None, luts: Path | None = None, seed: int = 0,
                 log: Callable[[str], None] = print):
        if task not in ("classification", "regression"):
            raise TinyhilError(f"task must be classification or regression, not {task!r} "
                               "(the seed's anomaly detection is not supported)")
        if limits not in LIMITS:
            raise TinyhilError(f"limits must be 'seed' (the float32 model, as the seed priced it) or "
                               f"'int8' (tinyhil's estimate of the int8 model), not {limits!r}")
        self.x = sequence_windows(x_train)
        self.y, classes = task_targets(task, y_train)
        if len(self.x) != len(self.y):
            raise TinyhilError(f"x_train has {len(self.x)} windows, y_train {len(self.y)} targets")
        try:
            self.types = network_types(network_type)
        except SpaceError as error:
            raise TinyhilError(str(error)) from None
        self.space = TimeNasSpace(self.x.shape[1], self.x.shape[2], classes)
        self.max_ram, self.max_flash, self.network_type = max_ram, max_flash, network_type
        self.task, self.limits, self.seed, self.log = task, limits, seed, log
        self.max_latency, self.max_macs = max_latency, max_macs
        self.pricer = BoardPricer(board, lut, luts, log=log)
        self.rejected: list[dict] = []
        self.curr_candidates = None

    @property
    def lut(self) -> Lut | None:
        return self.pricer.lut

    def limits_note(self) -> str:
        ram = "-" if self.max_ram is None else f"{self.max_ram:g} kB"
        flash = "-" if self.max_flash is None else f"{self.max_flash:g} kB"
        if self.limits == "seed":
            return (f"limits='seed': max_ram {ram} bounds the float32 model's runtime memory and max_flash "
                    f"{flash} its size (kB of 1000 B), as the seed priced them; the int8 model the board runs "
                    "is about 4x smaller, so limits='int8' lets through networks about 4x larger")
        return (f"limits='int8': max_ram {ram} bounds tinyhil's TFLM arena estimate and max_flash {flash} "
                "the int8 model (kB of 1000 B); the seed priced the float32 model, so these numbers let "
                "through networks about 4x larger than they did in the seed (limits='seed')")

    def sample(self, rng, allow_mix: bool = False):
        return build_architecture(self.space, sample_choices(self.space, rng, self.task, self.types, allow_mix))

    def price(self, arch) -> dict:
        """The seed's profile keys (kB, per `limits`), flops and params, before any LUT."""
        f32 = float32_profile(arch)
        macs = arch.runtime().macs
        return {"model_size": f32.model_bytes / KB, "runtime_memory": f32.runtime_bytes / KB,
                "flops": 2 * macs, "macs": macs, "params": parameters(arch)}

    def violations(self, seed_profile: dict, board: Profile | None) -> list[str]:
        out = []
        if self.limits == "seed":
            for name, value, limit in (("runtime_memory", seed_profile["runtime_memory"], self.max_ram),
                                       ("model_size", seed_profile["model_size"], self.max_flash)):
                if limit is not None and value > limit:
                    out.append(f"{name} {value:,.3f} kB > {limit:,.3f} kB")
        if board is not None:
            int8 = self.limits == "int8"
            out += Limits(self.max_ram * KB if int8 and self.max_ram is not None else None,
                          self.max_flash * KB if int8 and self.max_flash is not None else None,
                          self.max_macs, self.max_latency).violations(board)
        elif self.max_macs is not None and seed_profile["macs"] > self.max_macs:
            out.append(f"macs {seed_profile['macs']:,} > {self.max_macs:,}")
        return out

    def needs_board(self) -> bool:
        """Whether feasibility depends on the LUT (else only the survivors are priced with it)."""
        return self.limits == "int8" or self.max_latency is not None

    def run_search(self, n_archs=1000, top_k=1, proxy="flops", method="random", allow_mix=False,
                   batch_size=32):
        """The top_k feasible candidates by `proxy` (highest first), each
        {'model', 'profile', 'architecture', 'score'}."""
        if proxy not in ("flops", "zico"):
            raise TinyhilError(f"proxy must be 'flops' or 'zico', not {proxy!r}")
        if method != "random":
            raise TinyhilError(f"method {method!r}: the seed samples at random only (method='random')")
        self.log(f"Tiny-TimeNAS: {self.limits_note()}")
        rng = np.random.default_rng(self.seed)
        archs, seen = [], set()
        for _ in range(int(n_archs)):
            arch = self.sample(rng, allow_mix)
            if arch.id not in seen:
                seen.add(arch.id)
                archs.append(arch)
        priced = [(arch, self.price(arch)) for arch in archs]
        feasible, closest = [], None

        def reject(arch, seed_profile, board, why):
            nonlocal closest
            figures = {**seed_profile, **(board.to_dict() if board else {})}
            self.rejected.append({"choices": arch.choices, "why": why, **figures})
            over = sum(_over(v) for v in why)
            if closest is None or over < closest[0]:
                closest = (over, arch, figures)

        if not self.needs_board():  # the seed's limits need no LUT: only survivors are priced on the board
            survivors = []
            for arch, seed_profile in priced:
                why = self.violations(seed_profile, None)
                if why:
                    reject(arch, seed_profile, None, why)
                else:
                    survivors.append((arch, seed_profile))
            priced = survivors
        self.pricer.prefetch([arch for arch, _ in priced])
        for arch, seed_profile in priced:
            board = self.pricer.profile(arch)
            why = self.violations(seed_profile, board)
            if why:
                reject(arch, seed_profile, board, why)
                continue
            feasible.append((arch, {**seed_profile, **board.to_dict(), "limits": self.limits}))
        if not feasible:
            detail = f"; closest: {closest[1].choices} with {closest[2]}" if closest else ""
            raise TinyhilError(f"none of {len(archs)} sampled candidates meets the limits "
                               f"({self.limits_note()}){detail}")
        scored = []
        for arch, prof in feasible:
            if proxy == "zico":
                prof["zico"] = self.zico(arch, batch_size)
            scored.append((prof[proxy], arch, prof))
        scored.sort(key=lambda t: t[0], reverse=True)  # highest first, as the seed
        found = []
        for score, arch, prof in scored[:top_k]:
            if "zico" not in prof:  # the seed scores every candidate with ZiCo; the returned ones here
                prof["zico"] = self.zico(arch, batch_size)
            found.append({"model": self.keras(arch), "profile": prof, "architecture": arch, "score": score})
        self.curr_candidates = found
        return found

    def keras(self, arch):
        """The candidate as the seed's users get it: a Keras model on (T, C) windows."""
        from tinyhil.models.whole_model import keras_model

        return keras_model(arch, batch_size=None, sequence_input=True)

    def loss(self):
        import tensorflow as tf

        if self.task == "regression":
            return tf.keras.losses.MeanSquaredError()
        return tf.keras.losses.SparseCategoricalCrossentropy()

    def zico(self, arch, batch_size: int = 32, batches: int = 4) -> float:
        """ZiCo of the candidate's initial weights, seeded by the search seed and
        the architecture, so the same search ranks the same way every time."""
        import tensorflow as tf

        tf.keras.utils.set_random_seed((self.seed * 1_000_003 + int(arch.id, 16)) % 2**31)
        return float(zico(self.keras(arch), self.x, self.y, self.loss(), batch_size, batches, self.seed))

    def _score(self, arch, proxy, batch_size=16, batches=4):
        if proxy == "flops":
            return float(2 * arch.runtime().macs)
        return self.zico(arch, batch_size, batches)


def _over(violation: str) -> float:
    value, limit = violation.split(" ", 1)[1].split(" > ")
    number = lambda text: float(text.replace(",", "").split()[0])  # noqa: E731
    return number(value) / number(limit) - 1 if number(limit) > 0 else float("inf")
