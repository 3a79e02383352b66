"""The C source + header generator: compiles, keeps every byte, aligns."""
import shutil
import subprocess

import pytest

from conftest import gcc, make_int8_model
from tinyhil.errors import TinyhilError
from tinyhil.image.c_array import write_c_array
from tinyhil.models.tflite_model import TfliteModel

DUMP = r"""
#include <stdio.h>
#include "{name}.h"
int main(void) {{
  fwrite({name}, 1, {name}_len, stdout);
  fprintf(stderr, "%lu %d %d %d %d", (unsigned long)((uintptr_t){name} % 16),
          {macro}_INPUT_ZERO_POINT, {macro}_OUTPUT_ZERO_POINT, {macro}_INPUT_BYTES, {macro}_OUTPUT_BYTES);
  return 0;
}}
"""


@pytest.fixture(scope="module")
def model(models_dir):
    import tensorflow as tf

    path = make_int8_model(models_dir / "c_array_conv.tflite",
                           [tf.keras.layers.Conv1D(4, 3), tf.keras.layers.Flatten(),
                            tf.keras.layers.Dense(3)], (16, 2))
    return TfliteModel.load(path)


def test_round_trips_byte_for_byte_and_is_aligned(model, tmp_path):
    files = write_c_array(model, tmp_path, "har_model")
    main = tmp_path / "dump.cc"
    main.write_text(DUMP.format(name="har_model", macro="HAR_MODEL"))
    exe = tmp_path / "dump"
    compiler = shutil.which("g++") or gcc()
    subprocess.run([compiler, "-std=c++17", "-Wall", "-Werror", f"-I{tmp_path}", str(files.source),
                    str(main), "-o", str(exe)], check=True)
    run = subprocess.run([str(exe)], capture_output=True, check=True)
    assert run.stdout == model.flatbuffer
    alignment, in_zp, out_zp, in_bytes, out_bytes = map(int, run.stderr.split())
    assert alignment == 0
    assert (in_zp, out_zp) == (model.inputs[0].zero_point, model.outputs[0].zero_point)
    assert (in_bytes, out_bytes) == (model.inputs[0].nbytes, model.outputs[0].nbytes)
    header = files.header.read_text()
    assert f"HAR_MODEL_INPUT_SCALE {model.inputs[0].scale:.9g}f" in header


def test_compiles_for_the_cortex_m(model, tmp_path):
    if not shutil.which("arm-none-eabi-g++"):
        pytest.skip("no Arm toolchain")
    files = write_c_array(model, tmp_path)
    subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-std=c++17", "-Wall",
                    "-Werror", "-c", str(files.source), "-o", str(tmp_path / "m.o")], check=True)


@pytest.mark.parametrize("name", ["1model", "my-model", "x y", 'a";'])
def test_names_must_be_c_identifiers(model, tmp_path, name):
    with pytest.raises(TinyhilError, match="not a C identifier"):
        write_c_array(model, tmp_path, name)


def test_a_deployment_image_compiles_the_array_from_its_own_source(model, tmp_path):
    from tinyhil.image.firmware import tflm_dir
    from tinyhil.image.sources import Benchmark, ImageSpec, render_image

    bench = Benchmark("deployed", model.flatbuffer, model.ops, model.input_bytes, array="g_model")
    files = render_image(ImageSpec("qemu-m4", (bench,)), "0123456789abcdef", tflm_dir(), tmp_path / "img")
    image = (tmp_path / "img" / "image.cc").read_text()
    assert '#include "g_model.h"' in image and "kModel0" not in image
    assert f'{{"deployed", g_model, {len(model.flatbuffer)}u}}' in image
    exported = write_c_array(model, tmp_path / "export")
    assert (tmp_path / "img" / "g_model.cc").read_text().replace("deployed", model.name) == \
        exported.source.read_text()
    assert [f.name for f in files] == ["image.cc", "op_resolver.cc", "g_model.cc", "g_model.h"]
