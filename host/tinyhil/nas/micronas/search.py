"""The MicroNAS search (paper, section 6 and Algorithm 1; the authors' code
for what the paper leaves open):

  for each batch: alpha <- alpha - eta1 grad_alpha L(alpha, w)   (validation split)
                  w     <- w - eta2 grad_w L_train(alpha, w)       (training split)
                  tau   <- tau * 0.995

L = cross-entropy + eta_lat log(Lat/Lat_t)[Lat >= Lat_t] + eta_mem log(Mem/Mem_t)[Mem >= Mem_t]
(Eq. 3, eta_lat = 2, eta_mem = 4), Lat and Mem through Eq. 2 on the argmax
network (straight-through: see priced_weights()), where the authors' code
prices the Gumbel sample. Below the target the authors' code keeps a small
slope (0.002) so the search still prefers cheaper networks a little.
Architecture weights: SGD, learning rate 0.36 cosine-decayed to 0.0008;
weights: Adam with gradient clipping at 5 (authors' code).

Before the first alpha update the weights are trained alone for
`warmup_epochs` on uniformly sampled paths (as DARTS-style searches do, e.g.
FBNet, ProxylessNAS): alphas moved by the gradients of untrained weights
settle on whatever the random start favours. The temperature and the alpha
learning rate are scheduled over the epochs after the warm-up.

The same loop runs the paper's baselines (section 8.1): DARTS-Gumbel
(`hardware=False`) and DARTS-Softmax (`gumbel=False, hardware=False`: the
continuous relaxation softmax(alpha), no sampling, no temperature).
"""
from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyhil.errors import TinyhilError
from tinyhil.estimate import appendix_a_peak, arena_estimate, lut_latency
from tinyhil.lut.table import Lut
from tinyhil.nas.data import Splits
from tinyhil.nas.micronas.hardware import HardwareModel
from tinyhil.spaces.arch import Architecture
from tinyhil.spaces.micronas import MicroNasSpace, SensorFusionCell, TimeReduceCell, build_architecture

BELOW_TARGET_SLOPE = 0.002


@dataclass(frozen=True)
class SearchConfig:
    lat_target_ms: float | None  # None: latency loss off
    mem_target_bytes: float | None  # None: memory loss off
    epochs: int = 30
    batch_size: int = 32
    eta_lat: float = 2.0
    eta_mem: float = 4.0
    tau_start: float = 1.0
    tau_decay: float = 0.995  # per step (authors' code) ...
    tau_end: float = 0.02  # ... or faster, so that short searches end near one-hot too
    tau_min: float = 1e-5
    alpha_lr: float = 0.36
    alpha_lr_end: float = 0.0008
    # 3e-3: on JapaneseVowels the super-network's training accuracy after a
    # 10-epoch warm-up was 0.76 against 0.57 at 1e-3 (scripts/micronas_defaults.py)
    weight_lr: float = 3e-3
    seed: int = 0
    warmup_epochs: int | None = None  # weights only, before the first alpha update; None: a third
    alpha_optimizer: str = "sgd"  # "sgd" (authors' code) or "adam" (DARTS)
    hardware_pricing: str = "argmax"  # or "sample" (authors' code): see priced_weights()
    gumbel: bool = True  # False: DARTS-Softmax (softmax(alpha), no sampling)
    hardware: bool = True  # False: no latency or memory loss (the DARTS baselines)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    train_accuracy: float
    val_accuracy: float
    latency_ms: float  # expected, from the architecture weights
    memory_bytes: float
    tau: float


@dataclass(frozen=True)
class SearchResult:
    architecture: Architecture
    history: list[EpochRecord]
    estimated_latency_ms: float
    estimated_arena_bytes: int
    appendix_a_bytes: int
    val_accuracy: float
    config: SearchConfig
    seconds: float
    note: str = ""  # how the final network was chosen, when not simply the last argmax
    chosen_epoch: int | None = None  # the epoch whose argmax network was taken (None: the smallest network)
    warmup_epochs: int = 0  # epochs of weights only, before the first alpha update


def violations(arch: Architecture, lut: Lut, config: SearchConfig) -> dict[str, float]:
    """Target -> estimate, for each target the network's full estimate breaks (the
    search's own memory term follows Appendix A, which residual branches exceed)."""
    return broken_targets(lut_latency(arch, lut) / lut.meta.clock_hz * 1e3, arena_estimate(arch, lut), config)


def broken_targets(latency_ms: float, arena_bytes: float, config: SearchConfig) -> dict[str, float]:
    """Target -> figure, for each target a latency and arena (estimated or measured) break."""
    out = {}
    if config.lat_target_ms is not None and latency_ms > config.lat_target_ms:
        out["latency_ms"] = latency_ms
    if config.mem_target_bytes is not None and arena_bytes > config.mem_target_bytes:
        out["arena_bytes"] = arena_bytes
    return out


def hardware_loss(value, target, eta):
    import tensorflow as tf

    if target is None:
        return tf.constant(0.0)
    ratio = tf.math.log(value / target)
    return tf.where(value >= target, eta * ratio, BELOW_TARGET_SLOPE * ratio)


def straight_through(weights: dict) -> dict:
    import tensorflow as tf

    return {name: w + tf.stop_gradient(tf.one_hot(tf.argmax(w), w.shape[0]) - w)
            for name, w in weights.items()}


def priced_weights(net, sampled: dict, pricing: str) -> dict:
    """The decision weights the hardware loss prices, one-hot forward with a soft
    gradient (straight-through). "argmax": the network the search would end on,
    gradient through softmax(alpha). "sample": the Gumbel sample (the authors'
    code prices it soft). Priced on samples, the first alpha steps see random networks of an
    untrained distribution, most of them far over the target (on JapaneseVowels
    at 109 ms: 300-600 ms, the latency term 3 against a cross-entropy of 1), and
    push every group to its cheapest choice; one seed in five ended on a 13.6 ms
    network at 0.26 (README, "the collapse"). Priced on the argmax network, the
    loss bites when the network the search would return breaks a target."""
    import tensorflow as tf

    if pricing == "sample":
        return straight_through(sampled)
    return straight_through({name: tf.nn.softmax(alpha) for name, alpha in net.alphas.items()})


def extract(net, space: MicroNasSpace) -> Architecture:
    """argmax per decision group -> the discrete architecture."""
    return architecture_of(space, {name: int(np.argmax(v.numpy())) for name, v in net.alphas.items()})


def architecture_of(space: MicroNasSpace, choice: dict[str, int]) -> Architecture:
    """The architecture one option index per decision group describes."""
    tr = [{"kernel": space.tr_kernels[choice[f"tr{c.index}.kernel"]],
           "filters": space.tr_options[choice[f"tr{c.index}.filters"]]}
          for c in space.cells if isinstance(c, TimeReduceCell)]
    sf = []
    for c in (c for c in space.cells if isinstance(c, SensorFusionCell)):
        branches = [k for k in space.sf_kernels if choice[f"sf{c.index}.branch{k}"] == 1]
        sf.append({"bottleneck": space.sf_options[choice[f"sf{c.index}.bottleneck"]],
                   "filters": space.sf_options[choice[f"sf{c.index}.filters"]], "branches": branches,
                   "residual": choice[f"sf{c.index}.residual"] == 1 or not branches,
                   "skip": c.skippable and choice[f"sf{c.index}.skip"] == 1})
    return build_architecture(space, {"tr": tr, "sf": sf})


def smallest_choice(space: MicroNasSpace) -> dict[str, int]:
    """The smallest network's option per decision group: the first (smallest
    kernel and width, branch off) everywhere, and skip on where a cell can be skipped."""
    return {name: 1 if name.endswith(".skip") else 0 for name in space.decision_groups()}


def smallest_architecture(space: MicroNasSpace) -> Architecture:
    return architecture_of(space, smallest_choice(space))


def check_targets(space: MicroNasSpace, lut: Lut, config: SearchConfig) -> None:
    small = smallest_architecture(space)
    ms = lut_latency(small, lut) / lut.meta.clock_hz * 1e3
    arena = arena_estimate(small, lut)
    problems = []
    if config.lat_target_ms is not None and ms > config.lat_target_ms:
        problems.append(f"latency {config.lat_target_ms:g} ms (the smallest network takes {ms:.2f} ms)")
    if config.mem_target_bytes is not None and arena > config.mem_target_bytes:
        problems.append(f"memory {config.mem_target_bytes:.0f} B (the smallest network needs {arena} B)")
    if problems:
        raise TinyhilError(f"no architecture of this space can meet the target(s) on {lut.meta.board}: "
                           + "; ".join(problems))


def search(data: Splits, space: MicroNasSpace, lut: Lut, config: SearchConfig,
           on_epoch=None) -> SearchResult:
    import tensorflow as tf

    from tinyhil.nas.micronas.supernet import Supernet

    if config.hardware:
        check_targets(space, lut, config)
    warmup = config.epochs // 3 if config.warmup_epochs is None else config.warmup_epochs
    if not 0 <= warmup < config.epochs:
        raise TinyhilError(f"warm-up of {warmup} epochs leaves none of {config.epochs} for the architecture")
    started = time.monotonic()
    tf.keras.utils.set_random_seed(config.seed)
    net = Supernet(space, HardwareModel(space, lut))
    x_train, x_val = data.x_train[..., None].astype(np.float32), data.x_val[..., None].astype(np.float32)
    y_train, y_val = data.y_train.astype(np.int64), data.y_val.astype(np.int64)
    steps_per_epoch = max(1, int(np.ceil(len(x_train) / config.batch_size)))
    total = steps_per_epoch * (config.epochs - warmup)  # steps that update alpha
    alpha_schedule = tf.keras.optimizers.schedules.CosineDecay(config.alpha_lr, total,
                                                               alpha=config.alpha_lr_end / config.alpha_lr)
    if config.alpha_optimizer not in ("sgd", "adam"):
        raise TinyhilError(f"alpha optimizer must be sgd or adam, not {config.alpha_optimizer!r}")
    if config.hardware_pricing not in ("argmax", "sample"):
        raise TinyhilError(f"hardware pricing must be argmax or sample, not {config.hardware_pricing!r}")
    alpha_opt = (tf.keras.optimizers.SGD(alpha_schedule) if config.alpha_optimizer == "sgd"
                 else tf.keras.optimizers.Adam(alpha_schedule))
    weight_opt = tf.keras.optimizers.Adam(config.weight_lr, clipnorm=5.0)
    ce = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    net(x_train[:1], net.sample(1.0))  # builds the layers
    tau = tf.Variable(config.tau_start, trainable=False)
    # The differentiable memory term follows Appendix A (+ TFLM's fixed part
    # and op state); networks with residual branches keep more tensors alive
    # than it counts. After each epoch the argmax network's full arena
    # estimate rescales the term, so the target bounds the real arena.
    mem_scale = tf.Variable(1.0, trainable=False)
    # With 0.995 per step, a small data set (BasicMotions: 3 steps an epoch)
    # would end with tau near 0.6: soft samples whose expected cost says
    # little about the argmax network. Decay at least fast enough to reach
    # tau_end at the last step.
    decay = min(config.tau_decay, (config.tau_end / config.tau_start) ** (1 / total))
    lat_target = config.lat_target_ms if config.hardware else None
    mem_target = config.mem_target_bytes if config.hardware else None

    def weights_step(xt, yt):
        w = net.sample(tau, gumbel=config.gumbel)
        with tf.GradientTape() as tape:
            logits = net(xt, w, training=True)
            loss_w = ce(yt, logits)
        weight_opt.apply_gradients(zip(tape.gradient(loss_w, net.weight_variables), net.weight_variables))
        return tf.reduce_mean(tf.cast(tf.argmax(logits, 1) == tf.cast(yt, tf.int64), tf.float32))

    # One trace each whatever the batch size (the last batch is smaller):
    # tracing the super-network and Eq. 2 costs far more than an epoch.
    windows = tf.TensorSpec((None, *x_train.shape[1:]), tf.float32)
    labels = tf.TensorSpec((None,), tf.int64)

    @tf.function(input_signature=[windows, labels])
    def warmup_step(xt, yt):
        return weights_step(xt, yt)

    @tf.function(input_signature=[windows, labels, windows, labels])
    def step(xt, yt, xv, yv):
        with tf.GradientTape() as tape:
            w = net.sample(tau, gumbel=config.gumbel)  # inside the tape: the alphas' gradients flow through it
            # BatchNorm on the batch's statistics, as the authors' network.train():
            # on the moving ones (trained on soft mixtures of paths) every
            # convolution a choice adds looked like noise, so the alphas
            # turned branches off and skipped cells
            logits = net(xv, w, training=True)
            lat, mem = net.expected_hardware(priced_weights(net, w, config.hardware_pricing))
            loss_a = (ce(yv, logits) + hardware_loss(lat, lat_target, config.eta_lat)
                      + hardware_loss(mem * mem_scale, mem_target, config.eta_mem))
        alpha_opt.apply_gradients(zip(tape.gradient(loss_a, net.alpha_variables), net.alpha_variables))
        accuracy = weights_step(xt, yt)
        if config.gumbel:
            tau.assign(tf.maximum(tau * decay, config.tau_min))
        return loss_a, accuracy, lat, mem

    rng = np.random.default_rng(config.seed)
    history = []
    feasible: list[tuple[float, int, Architecture]] = []  # (validation accuracy, epoch, argmax network)
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(x_train))
        losses, accs, lat, mem = [], [], 0.0, 0.0
        warming = epoch <= warmup
        for s in range(steps_per_epoch):
            batch = order[s * config.batch_size:(s + 1) * config.batch_size]
            if warming:
                accs.append(float(warmup_step(x_train[batch], y_train[batch])))
                continue
            vb = rng.integers(0, len(x_val), len(batch))
            loss, acc, lat, mem = step(x_train[batch], y_train[batch], x_val[vb], y_val[vb])
            losses.append(float(loss)), accs.append(float(acc))
        hard = net.sample(1.0, hard=True)
        val_acc = float(np.mean(np.argmax(net(x_val, hard).numpy(), 1) == data.y_val))
        lat_h, mem_h = net.expected_hardware(hard)
        record = EpochRecord(epoch, float(np.mean(losses)) if losses else float("nan"), float(np.mean(accs)), val_acc,
                             float(lat_h), float(mem_h), float(tau.numpy()))
        history.append(record)
        candidate = extract(net, space)
        if mem_target is not None:
            mem_scale.assign(max(1.0, arena_estimate(candidate, lut) / max(float(mem_h), 1.0)))
        if epoch > config.epochs // 2 and not violations(candidate, lut, config):
            feasible.append((val_acc, epoch, candidate))
        if on_epoch:
            on_epoch(record)
    arch, val_accuracy, note, chosen = extract(net, space), history[-1].val_accuracy, "", config.epochs
    broken = violations(arch, lut, config) if config.hardware else {}  # baselines: as found
    if broken and feasible:
        # The last argmax network breaks a target: take the most accurate
        # argmax network of the second half that met them all.
        val_accuracy, epoch, arch = max(feasible, key=lambda f: (f[0], f[1]))
        chosen = epoch
        note = (f"the final argmax network broke {broken}; took epoch {epoch}'s, "
                "the most accurate of the second half within the targets")
    elif broken:
        # No argmax network of the second half met the targets: the smallest
        # network does (check_targets), scored on the super-network's weights.
        arch, chosen = smallest_architecture(space), None
        smallest = {name: tf.one_hot(option, net.alphas[name].shape[0])
                    for name, option in smallest_choice(space).items()}
        val_accuracy = float(np.mean(np.argmax(net(x_val, smallest).numpy(), 1) == data.y_val))
        note = f"the final argmax network broke {broken} and none of the second half met the targets: took the smallest"
    return SearchResult(arch, history, lut_latency(arch, lut) / lut.meta.clock_hz * 1e3,
                        arena_estimate(arch, lut), appendix_a_peak(arch), val_accuracy,
                        config, time.monotonic() - started, note, chosen, warmup)


def write_curves(result: SearchResult, out: Path) -> None:
    """The search's history: curves.csv and curves.png (loss, accuracy, hardware
    terms, the targets, the warm-up and the epoch whose network was taken)."""
    from tinyhil.report.curves import save_curves

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(asdict(result.history[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in result.history)
    save_curves([asdict(r) for r in result.history], curve_marks(result), out / "curves.png")


def curve_marks(result: SearchResult):
    from tinyhil.report.curves import CurveMarks

    return CurveMarks(result.warmup_epochs, result.chosen_epoch, result.config.lat_target_ms,
                      result.config.mem_target_bytes, result.note)
