"""TensorFlow's and absl's log lines kept off the console unless `--verbose`
(the CLI's callback calls `quiet`; a leaf, so that stages may keep their own
TensorFlow calls quiet by the same rule: `converter_output`).

TensorFlow writes C++ log lines to the process's stderr: while it is imported,
before absl's logging is initialized, whatever TF_CPP_MIN_LOG_LEVEL says
("WARNING: All log messages before absl::InitializeLog() ...", "Could not find
cuda drivers ..."), and afterwards at the levels it allows (`failed call to
cuInit: ... UNKNOWN ERROR (303)` is an ERROR: level 3 hides it). So, before any
command imports it: TF_CPP_MIN_LOG_LEVEL=3, Python's `absl` and `tensorflow`
loggers at ERROR, and TensorFlow's import run with file descriptor 2 caught,
its log-format lines dropped and anything else written on (a failing import
keeps its every line). While TensorFlow is so quiet the TFLite converter's
own printouts (a SavedModel's endpoints, "fully_quantize: 0, ...", a
UserWarning on input statistics) are dropped too.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import io
import logging
import os
import re
import sys
import tempfile
import warnings

NOISY_IMPORTS = ("tensorflow",)
ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3"}
LOGGERS = ("absl", "tensorflow")
# glog / absl lines (I0000 00:00:1796677027.332700    9510 port.cc:153] ...) and absl's pre-init notice
LOG_LINE = re.compile(rb"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+\] |WARNING: All log messages before absl::)")

_set_here: dict[str, str] = {}  # what quiet() put into os.environ, taken back by --verbose


@contextlib.contextmanager
def caught(fd: int, keep):
    """File descriptor `fd` caught while the block runs, and the lines `keep(line,
    failed)` takes written on after it (`failed`: the block raised)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(fd)
    failed = False
    with tempfile.TemporaryFile() as file:
        os.dup2(file.fileno(), fd)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            file.seek(0)
            kept = [line for line in file.read().splitlines(keepends=True) if keep(line, failed)]
            if kept:
                os.write(fd, b"".join(kept))


def stderr_filtered():
    """File descriptor 2 caught while the block runs; its log-format lines dropped
    and the rest written on after it (all of it if the block raises)."""
    return caught(2, lambda line, failed: failed or not LOG_LINE.match(line))


def tensorflow_quiet() -> bool:
    """TensorFlow's C++ logging at its quietest (the CLI's default, or the user's own setting)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3"


@contextlib.contextmanager
def converter_output():
    """The TFLite converter's printouts dropped while TensorFlow is quiet (written
    out all the same if it fails); as they are otherwise."""
    if not tensorflow_quiet():
        yield
        return
    python_out, python_err = io.StringIO(), io.StringIO()
    keep = lambda line, failed: failed  # noqa: E731
    try:
        with caught(1, keep), caught(2, keep), contextlib.redirect_stdout(python_out), \
                contextlib.redirect_stderr(python_err), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            yield
    except BaseException:
        sys.stdout.write(python_out.getvalue())
        sys.stderr.write(python_err.getvalue())
        raise


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
