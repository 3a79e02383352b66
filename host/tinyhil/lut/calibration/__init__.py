"""Calibration: an emulated board's LUT -> a physical board's LUT, from a few
ops measured on both.

Emulated boards count instructions, not cycles. Given reference rows (ops
measured on the physical board) and the same ops measured on the emulated
board, a small regression maps emulated counts and op features to board
cycles. Candidate models go from the simplest (one straight line) to a slope
per kernel path with size terms (least squares, or non-negative least
squares); cross-validation on the reference rows picks one and tells its
expected error. The calibrated LUT has
the emulated LUT's rows with predicted cycles, and metadata that says it is
calibrated, from what, and how well.

Fits minimise *relative* error (each row weighted by 1/cycles): small ops
matter as much as large ones to an estimator that adds them up.

One module per concern, in the order the data flows (import from the module:
the package itself re-exports nothing):
  features          an op's sizes and geometry; the frames a model fits and predicts
  models            the candidate models, simplest first
  cross_validation  random folds and leave-one-shape-out; the fit that picks a model
  bounds            how far above its prediction a new op may run
  arena             the board's arena: emulated bytes plus an offset per op type
  board_lut         the calibrated LUT: written, its bounds read back, priced at a bound
"""
