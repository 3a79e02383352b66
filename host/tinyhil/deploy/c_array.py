"""A .tflite model as a C source and header (tinyhil's own generator, not
`xxd -i`): a 16-byte-aligned array, its length, and the input and output
quantization parameters. Templates in templates/ beside this file."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .. import __version__
from ..bench.tflite_model import TfliteModel
from ..build.image import c_string
from ..errors import TinyhilError

C_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_env.filters["c_string"] = c_string


@dataclass(frozen=True)
class CSources:
    source: Path
    header: Path


def write_c_array(model: TfliteModel, out_dir: Path, name: str = "g_model") -> CSources:
    if not C_NAME.match(name):
        raise TinyhilError(f"{name!r} is not a C identifier (letters, digits, _; not a digit first)")
    out_dir.mkdir(parents=True, exist_ok=True)
    header = out_dir / f"{name}.h"
    context = dict(version=__version__, source=model.name, name=name, macro=name.upper(),
                   guard=f"TINYHIL_{name.upper()}_H_", header=header.name,
                   model_bytes=len(model.flatbuffer), flatbuffer=model.flatbuffer, ops=model.ops,
                   input=model.inputs[0], output=model.outputs[0])
    header.write_text(_env.get_template("model_data.h.j2").render(**context))
    source = out_dir / f"{name}.cc"
    source.write_text(_env.get_template("model_data.cc.j2").render(**context))
    return CSources(source, header)
