"""Micro-benchmarks: int8 TFLite models (conversion, inspection, host reference)."""
