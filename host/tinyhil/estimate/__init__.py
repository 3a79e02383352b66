"""Estimators: latency (LUT, MACs proxy), peak memory, flash of architectures."""
from tinyhil.estimate.latency import MacsProxy, MissingOps, lut_latency
from tinyhil.estimate.memory import appendix_a_peak, arena_estimate, cmsis_scratch_bytes, greedy_plan

__all__ = ["MacsProxy", "MissingOps", "appendix_a_peak", "arena_estimate", "cmsis_scratch_bytes",
           "greedy_plan", "lut_latency"]
