"""The hardware a candidate would use, estimated before any training, and the
limits it must meet: RAM, flash, MACs (the seeds' constraints) and the
device's measured latency (tinyhil's addition)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..estimate import arena_estimate, lut_latency
from ..estimate.latency import check_covered
from ..lut.table import Lut
from ..spaces.arch import Architecture

# int8 flatbuffer beyond the weights: header, tensors, op records (measured
# on this project's converted models: ~1 KB plus ~0.2 KB per op)
FLATBUFFER_BASE, FLATBUFFER_PER_OP = 1024, 200


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
    flash = arch.weights_bytes + FLATBUFFER_BASE + FLATBUFFER_PER_OP * len(runtime.ops)
    return Profile(ram=arena_estimate(arch, lut), flash=flash, macs=runtime.macs,
                   latency_ms=lut_latency(arch, lut) / lut.meta.clock_hz * 1e3)
