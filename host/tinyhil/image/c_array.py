"""A .tflite model as a C source and header (tinyhil's own generator, not
`xxd -i`): a 16-byte-aligned array, its length, and the input and output
quantization parameters. A deployment's firmware is built from these very
files; `tinyhil export-c` writes them for a user's own firmware."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from tinyhil import __version__
from tinyhil.errors import TinyhilError
from tinyhil.files import atomic_write

C_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_OCTAL = [f"\\{b:03o}" for b in range(256)]


def c_string(data: bytes, per_line: int = 64) -> str:
    """The bytes as adjacent string literals of octal escapes: one token per
    line for the compiler, which parses a 500 KB model many times faster
    than half a million comma-separated integers."""
    return "\n".join('    "' + "".join(_OCTAL[b] for b in data[i : i + per_line]) + '"'
                     for i in range(0, len(data), per_line))


_env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_env.filters["c_string"] = c_string


@dataclass(frozen=True)
class CSources:
    source: Path
    header: Path


def check_c_name(name: str) -> str:
    if not C_NAME.match(name):
        raise TinyhilError(f"{name!r} is not a C identifier (letters, digits, _; not a digit first)")
    return name


def write_c_array(model, out_dir: Path, name: str = "g_model") -> CSources:
    """`model` is a TfliteModel; writes NAME.cc and NAME.h into `out_dir`."""
    check_c_name(name)
    header = out_dir / f"{name}.h"
    context = dict(version=__version__, source=model.name, name=name, macro=name.upper(),
                   guard=f"TINYHIL_{name.upper()}_H_", header=header.name,
                   model_bytes=len(model.flatbuffer), flatbuffer=model.flatbuffer, ops=model.ops,
                   input=model.inputs[0], output=model.outputs[0])
    atomic_write(header, _env.get_template("model_data.h.j2").render(**context))
    source = atomic_write(out_dir / f"{name}.cc", _env.get_template("model_data.cc.j2").render(**context))
    return CSources(source, header)
