"""Search spaces as data: each enumerates the op configurations it can use."""
from __future__ import annotations

from tinyhil.spaces import micronas, timenas, tinytnas
from tinyhil.spaces.arch import Architecture
from tinyhil.spaces.micronas import MicroNasSpace, SpaceError
from tinyhil.spaces.ops import OpConfig
from tinyhil.spaces.timenas import TimeNasSpace
from tinyhil.spaces.tinytnas import TinyTnasSpace

SPACES = {"micronas": MicroNasSpace, "tinytnas": TinyTnasSpace, "timenas": TimeNasSpace}


def make_space(name: str, window: int, channels: int, classes: int):
    if name not in SPACES:
        raise SpaceError(f"unknown search space {name!r}; known: {', '.join(SPACES)}")
    return SPACES[name](window, channels, classes)


def sample_architecture(space, rng) -> Architecture:
    """A random architecture of any space (its own sampler)."""
    module = {MicroNasSpace: micronas, TinyTnasSpace: tinytnas, TimeNasSpace: timenas}[type(space)]
    return module.sample_architecture(space, rng)


def parse_input(text: str) -> tuple[int, int]:
    """"128x9" -> (window, channels)."""
    parts = text.lower().split("x")
    try:
        window, channels = (int(p) for p in parts)
    except ValueError:
        raise SpaceError(f"input {text!r} must be WINDOWxCHANNELS, e.g. 128x9") from None
    if window < 1 or channels < 1:
        raise SpaceError(f"input {text!r}: window and channels must be positive")
    return window, channels


__all__ = ["SPACES", "Architecture", "OpConfig", "SpaceError", "make_space", "parse_input",
           "sample_architecture"]
