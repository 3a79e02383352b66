"""tinyhil: hardware-in-the-loop benchmarking for TinyML time-series NAS.

One package per stage of the data path, each importing only the stages before
it (the import-linter contract in pyproject.toml):

    spaces -> models -> image -> device -> measure -> lut -> estimate -> nas -> deploy -> report

`regress/` (suites on a farm), `benchmarks/` (`tinyhil bench`) and `cli/` sit on
top. Three modules stay single files at the top because each drives several
stages and owns none: pipeline.py (characterize -> search -> deploy), validate.py
(estimates against measurements), doctor.py (the toolchain, end to end). The
leaves any stage may import: protocol, verdict, board_catalog, units, files,
children, project, errors.
"""

import os

# TensorFlow reads this once, when first imported, and every stage imports it
# lazily after this: with oneDNN's kernels, training some networks (e.g. a 1x1
# convolution of stride (1, 2) on 15x12x4, JapaneseVowels' smallest) segfaults.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"
