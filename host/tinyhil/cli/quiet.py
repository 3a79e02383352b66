"""TensorFlow's and absl's log lines kept off the console unless `--verbose`.

TensorFlow writes C++ log lines to the process's stderr: while it is imported,
before absl's logging is initialized, whatever TF_CPP_MIN_LOG_LEVEL says
("WARNING: All log messages before absl::InitializeLog() ...", "Could not find
cuda drivers ..."), and afterwards at the levels it allows (`failed call to
cuInit: ... UNKNOWN ERROR (303)` is an ERROR: level 3 hides it). So, before any
command imports it: TF_CPP_MIN_LOG_LEVEL=3, Python's `absl` and `tensorflow`
loggers at ERROR, and TensorFlow's import run with file descriptor 2 caught,
its log-format lines dropped and anything else written on (a failing import
keeps its every line).
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

NOISY_IMPORTS = ("tensorflow",)
ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3"}
LOGGERS = ("absl", "tensorflow")
# glog / absl lines (I0000 00:00:1796677027.332700    9510 port.cc:153] ...) and absl's pre-init notice
LOG_LINE = re.compile(rb"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+\] |WARNING: All log messages before absl::)")

_set_here: dict[str, str] = {}  # what quiet() put into os.environ, taken back by --verbose


@contextlib.contextmanager
def stderr_filtered():
    """File descriptor 2 caught while the block runs; its log-format lines dropped
    and the rest written on after it (all of it if the block raises)."""
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True)
                    if failed or not LOG_LINE.match(line)]
            if kept:
                os.write(2, b"".join(kept))


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            with stderr_filtered():
                self.loader.exec_module(module)
        finally:  # the module as if imported the usual way
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in NOISY_IMPORTS:
            return None
        _remove_finder()  # its own imports, and later ones, the usual way
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]


def quiet(on: bool = True) -> None:
    """Hide TensorFlow's and absl's log lines (on), or show them all (`--verbose`).
    A variable the user set stays as set; TensorFlow reads them once, as it is imported."""
    _remove_finder()
    if on:
        for name, value in ENVIRONMENT.items():
            if name not in os.environ:
                os.environ[name] = _set_here[name] = value
        if not any(module in sys.modules for module in NOISY_IMPORTS):
            sys.meta_path.insert(0, _QuietFinder())
    else:
        for name, value in list(_set_here.items()):
            if os.environ.get(name) == value:
                del os.environ[name]
            del _set_here[name]
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR if on else logging.NOTSET)
