"""Image specs and their rendering into C++ sources (templates/ beside this file).

An image is a set of benchmarks (int8 .tflite models) built into one
firmware for one board. Its id hashes everything that goes into the ELF, so
that built images can be cached and checked against what a device reports.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2

from tinyhil import __version__
from tinyhil.errors import TinyhilError, UnsupportedOp
from tinyhil.image.c_array import check_c_name, write_c_array
from tinyhil.protocol import BATCH_HEADER, LAYERS_HEADER, MAX_BATCH, MAX_PAYLOAD, RUN_HEADER, SEED

TEMPLATES = Path(__file__).with_name("templates")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:+-]{1,63}$")
UNQUOTED_PATH = re.compile(r'^[^"\\\x00-\x1f]+$')
RUN_HEADER_BYTES = RUN_HEADER.size  # a RUN request is this header + the input
REQUEST_HEADER_BYTES = max(RUN_HEADER.size, LAYERS_HEADER.size)  # RUN's or LAYERS' (the larger), + the input


def benchmark_name(text: str) -> str:
    """A name of NAME_PATTERN's alphabet for any model file name: kept if it already is
    one, else transliterated (ü -> u), other characters made '_', and a hash of the
    original appended, so that "a b" and "a_b" stay two names (and the same on every run)."""
    import unicodedata
    import zlib

    if NAME_PATTERN.match(text):
        return text
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", ascii_text).strip("_") or "model"
    return f"{safe[:54]}-{zlib.crc32(text.encode('utf-8', 'surrogateescape')):08x}"


@dataclass(frozen=True)
class Benchmark:
    name: str
    flatbuffer: bytes
    ops: tuple[str, ...]
    input_bytes: int
    # A deployment's model comes from its own C source (image/c_array.py),
    # named by this C symbol; benchmarks embed their model in image.cc.
    array: str = ""

    def __post_init__(self):
        if self.array:
            check_c_name(self.array)
        # Names end up in C string literals: allow only a safe alphabet.
        if not NAME_PATTERN.match(self.name):
            raise TinyhilError(
                f"benchmark name {self.name!r} must match {NAME_PATTERN.pattern} "
                "(letters, digits, _ . : + -)"
            )

    @property
    def model_bytes(self) -> int:
        return len(self.flatbuffer)


@dataclass(frozen=True)
class ResolverOp:
    name: str  # builtin op name, e.g. CONV_2D
    method: str  # MicroMutableOpResolver method, e.g. AddConv2D


@dataclass(frozen=True)
class ImageSpec:
    board: str
    benchmarks: tuple[Benchmark, ...]
    seeded_inputs: bool = False  # the host only sends seeds: a small request buffer will do

    def __post_init__(self):
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise TinyhilError(f"image for {self.board}: benchmark name(s) {', '.join(twice)} "
                               "appear more than once")
        if self.seeded_inputs:
            return  # inputs are generated on the device: no upload limit applies
        for bench in self.benchmarks:
            if RUN_HEADER_BYTES + bench.input_bytes > MAX_PAYLOAD:
                raise TinyhilError(
                    f"benchmark {bench.name}: input of {bench.input_bytes} bytes exceeds the "
                    f"{MAX_PAYLOAD - RUN_HEADER_BYTES} bytes one RUN request carries"
                )

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(sorted({op for b in self.benchmarks for op in b.ops}))

    @property
    def max_request_bytes(self) -> int:
        """Uploaded inputs: the largest RUN or LAYERS request. Seeded ones: a BATCH
        of all the image's benchmarks (one seed each), so one request runs them all."""
        if self.seeded_inputs:
            batch = BATCH_HEADER.size + SEED.size * min(len(self.benchmarks), MAX_BATCH)
            return max(64, REQUEST_HEADER_BYTES + SEED.size, batch)
        largest = max((b.input_bytes for b in self.benchmarks), default=0)
        return max(64, REQUEST_HEADER_BYTES + largest)

    def image_id(self, firmware_hash: str) -> str:
        digest = hashlib.sha256()
        for part in (__version__, self.board, firmware_hash, str(self.seeded_inputs), templates_hash()):
            digest.update(part.encode() + b"\0")
        for bench in self.benchmarks:
            digest.update(bench.name.encode() + b"\0" + bench.array.encode() + b"\0")
            digest.update(hashlib.sha256(bench.flatbuffer).digest())
        return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def templates_hash() -> str:
    """The templates are part of what an image is made of."""
    digest = hashlib.sha256()
    for path in sorted(TEMPLATES.glob("*.j2")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=8)
def resolver_methods(tflm_dir: Path) -> dict[str, str]:
    """Builtin op name -> MicroMutableOpResolver method, read from the TFLM tree
    actually built, so the list always matches the firmware's TFLM version."""
    header = tflm_dir / "src/tensorflow/lite/micro/micro_mutable_op_resolver.h"
    text = header.read_text()
    pattern = re.compile(
        r"TfLiteStatus (Add\w+)\((?:[^{};]*?)\)\s*\{\s*return AddBuiltin\(\s*BuiltinOperator_(\w+)",
        re.S,
    )
    return {op: method for method, op in pattern.findall(text)}


def resolver_ops(ops: tuple[str, ...], tflm_dir: Path) -> list[ResolverOp]:
    methods = resolver_methods(tflm_dir)
    missing = [op for op in ops if op not in methods]
    if missing:
        raise UnsupportedOp(
            f"op(s) {', '.join(missing)} not supported by the firmware's TFLM "
            f"({tflm_dir.name}: no MicroMutableOpResolver method registers them)"
        )
    return [ResolverOp(op, methods[op]) for op in ops]


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class EmbeddedModel:
    """A benchmark's model as a file beside image.cc, which .incbin's it."""

    name: str
    symbol: str
    path: str
    size: int
    sha256: str
    ops: tuple[str, ...]


def write_model_files(spec: ImageSpec, out_dir: Path) -> list[EmbeddedModel]:
    """Each benchmark's model (not a deployment's C array) as model_N.tflite."""
    directory = out_dir.resolve()
    # the path goes into an assembler string: only characters that need no escaping there
    if not UNQUOTED_PATH.match(str(directory)):
        raise TinyhilError(f"image directory {directory} holds characters the assembler's .incbin "
                           "cannot take (quotes, backslashes, control characters): set "
                           "TINYHIL_CACHE_DIR to a plainer path")
    models = []
    for index, bench in enumerate(spec.benchmarks):
        if bench.array:
            continue
        path = directory / f"model_{index}.tflite"
        path.write_bytes(bench.flatbuffer)
        models.append(EmbeddedModel(bench.name, f"tinyhil_model_{index}", str(path), len(bench.flatbuffer),
                                    hashlib.sha256(bench.flatbuffer).hexdigest(), bench.ops))
    return models


def render_image(spec: ImageSpec, image_id: str, tflm_dir: Path, out_dir: Path) -> list[Path]:
    """Writes image.cc and op_resolver.cc for `spec` into `out_dir`, each
    benchmark's model beside them (model_N.tflite, which image.cc includes
    with .incbin), and the C array of each benchmark that has one."""
    if not spec.benchmarks:
        raise TinyhilError("an image needs at least one benchmark")
    out_dir.mkdir(parents=True, exist_ok=True)
    models = write_model_files(spec, out_dir)
    context = dict(
        models=models,
        version=__version__,
        board=spec.board,
        image_id=image_id,
        benchmarks=spec.benchmarks,
        ops=resolver_ops(spec.ops, tflm_dir),
        max_request_bytes=spec.max_request_bytes,
    )
    written = []
    for template in ("image.cc.j2", "op_resolver.cc.j2"):
        path = out_dir / template.removesuffix(".j2")
        path.write_text(_env.get_template(template).render(**context))
        written.append(path)
    for bench in spec.benchmarks:
        if bench.array:
            from tinyhil.models.tflite_model import TfliteModel

            files = write_c_array(TfliteModel.from_bytes(bench.flatbuffer, bench.name), out_dir, bench.array)
            written += [files.source, files.header]
    return written + [Path(m.path) for m in models]
