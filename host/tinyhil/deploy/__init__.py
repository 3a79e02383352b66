"""Deployment: a found architecture retrained quantization-aware, converted to
int8, built into firmware from its C array and re-measured on the board."""
