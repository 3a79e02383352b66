"""Latency lookup tables: measured op rows with their metadata, and Eq. 2."""
