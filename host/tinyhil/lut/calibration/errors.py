"""The error calibration raises."""
from __future__ import annotations

from tinyhil.errors import TinyhilError


class CalibrationError(TinyhilError):
    """Calibration cannot be made from what was given."""
