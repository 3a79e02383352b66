"""tinyhil: hardware-in-the-loop benchmarking for TinyML time-series NAS."""

__version__ = "0.1.0"
