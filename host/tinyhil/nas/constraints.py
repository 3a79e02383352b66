"""The hardware a candidate would use, estimated before any training, and the
limits it must meet: RAM, flash, MACs (the seeds' constraints) and the
device's measured latency (tinyhil's addition)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tinyhil.estimate import arena_estimate, lut_latency
from tinyhil.estimate.latency import check_covered
from tinyhil.estimate.memory import greedy_plan, lifetimes
from tinyhil.lut.table import Lut
from tinyhil.spaces.arch import Architecture
from tinyhil.spaces.ops import CONV, DENSE, DEPTHWISE

# int8 flatbuffer beyond the weights: header, tensor and op records, and per
# output channel of a convolution a float32 scale and an int64 zero point for
# its filter and its bias (24 B). Least squares over the 300 converted models
# of `tinyhil validate` (100 per space): 856 B + 341 B/op + 23.0 B/channel,
# 1.3 % mean error (the former 1 KB + 0.2 KB/op: 17.5 %).
FLATBUFFER_BASE, FLATBUFFER_PER_OP, FLATBUFFER_PER_CHANNEL = 856, 341, 24


@dataclass(frozen=True)
class Profile:
    ram: int  # bytes: the TFLM arena estimate
    flash: int  # bytes: the int8 model (weights + structure)
    macs: int
    latency_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Limits:
    ram: float | None = None
    flash: float | None = None
    macs: float | None = None
    latency_ms: float | None = None

    def violations(self, p: Profile) -> list[str]:
        out = []
        for name, value, limit in (("ram", p.ram, self.ram), ("flash", p.flash, self.flash),
                                   ("macs", p.macs, self.macs), ("latency_ms", p.latency_ms, self.latency_ms)):
            if limit is not None and value > limit:
                out.append(f"{name} {value:,.1f} > {limit:,.1f}")
        return out


def profile(arch: Architecture, lut: Lut) -> Profile:
    """Raises MissingOps (naming the ops and the command) if the LUT lacks any."""
    check_covered(arch, lut)
    runtime = arch.runtime()
    channels = sum(op.out_channels for op in runtime.ops if op.op in (CONV, DEPTHWISE))
    flash = (arch.weights_bytes + FLATBUFFER_BASE + FLATBUFFER_PER_OP * len(runtime.ops)
             + FLATBUFFER_PER_CHANNEL * channels)
    return Profile(ram=arena_estimate(arch, lut), flash=flash, macs=runtime.macs,
                   latency_ms=lut_latency(arch, lut) / lut.meta.clock_hz * 1e3)


def parameters(arch: Architecture) -> int:
    """Weights and biases (Keras' count_params of the model)."""
    total = 0
    for op in arch.ops:
        kh, kw = op.kernel
        if op.op == CONV:
            total += (kh * kw * op.in_channels + 1) * op.out_channels
        elif op.op == DEPTHWISE:
            total += (kh * kw + 1) * op.out_channels
        elif op.op == DENSE:
            total += (op.input_shape[-1] + 1) * op.output_shape[-1]
    return total


@dataclass(frozen=True)
class Float32Profile:
    """What the Tiny-TimeNAS seed priced: the float32 .tflite (4 bytes per weight
    and per activation), which its profiler (Silicon Labs MLTK) measured; here
    estimated: the flatbuffer's weights plus its structure (no quantization
    parameters), and TFLM's plan of the float32 activations."""

    model_bytes: int
    runtime_bytes: int


def float32_profile(arch: Architecture) -> Float32Profile:
    runtime = arch.runtime()
    model = 4 * parameters(runtime) + FLATBUFFER_BASE + FLATBUFFER_PER_OP * len(runtime.ops)
    buffers = [(4 * size, first, last) for size, first, last in lifetimes(runtime)[:len(runtime.nodes) + 1]]
    return Float32Profile(model, greedy_plan(buffers))
