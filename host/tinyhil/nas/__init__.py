"""Search engines: MicroNAS (differentiable), and the data they learn from."""
