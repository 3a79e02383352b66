"""Nightly regression over a farm of boards: an inventory of boards (YAML),
a suite of benchmarks with baselines, one worker per board, results and an
append-only history as they arrive, JUnit XML and a trend page at the end."""
