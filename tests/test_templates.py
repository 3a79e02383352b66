"""Rendering of image sources from the Jinja templates."""
import re
from pathlib import Path

import pytest

from tinyhil.errors import TinyhilError, UnsupportedOp
from tinyhil.image.firmware import tflm_dir
from tinyhil.image.sources import Benchmark, ImageSpec, render_image, resolver_methods, resolver_ops


def bench(name="m", data=b"\x1c\x00\x00\x00TFL3" + bytes(range(40)), ops=("CONV_2D", "SOFTMAX"),
          input_bytes=100):
    return Benchmark(name, data, ops, input_bytes)


def test_resolver_methods_come_from_the_tflm_header():
    methods = resolver_methods(tflm_dir())
    assert methods["CONV_2D"] == "AddConv2D"
    assert methods["DEPTHWISE_CONV_2D"] == "AddDepthwiseConv2D"
    assert methods["FULLY_CONNECTED"] == "AddFullyConnected"
    assert methods["AVERAGE_POOL_2D"] == "AddAveragePool2D"
    assert len(methods) > 60


def test_render_models_and_resolver(tmp_path: Path):
    spec = ImageSpec("qemu-m4", (bench("a"), bench("b", ops=("CONV_2D", "ADD"), input_bytes=300)))
    files = render_image(spec, "0123456789abcdef", tflm_dir(), tmp_path)
    image = (tmp_path / "image.cc").read_text()
    resolver = (tmp_path / "op_resolver.cc").read_text()
    assert [f.name for f in files] == ["image.cc", "op_resolver.cc", "model_0.tflite", "model_1.tflite"]
    # every byte of each model, in order, 16-byte aligned: the files image.cc .incbin's
    symbols = re.findall(r'^    "(tinyhil_model_\d+):\\n"$', image, re.M)
    paths = re.findall(r'\.incbin \\"([^"\\]+)\\"', image)
    assert symbols == ["tinyhil_model_0", "tinyhil_model_1"] and image.count(".balign 16") == 2
    assert [Path(p).name for p in paths] == ["model_0.tflite", "model_1.tflite"]
    for path in paths:
        assert Path(path).is_absolute() and Path(path).read_bytes() == bench().flatbuffer
    assert '{"a", tinyhil_model_0, 48u}' in image and '{"b", tinyhil_model_1, 48u}' in image
    assert "kTinyhilBenchmarkCount = 2;" in image
    assert 'kTinyhilImageId[] = "0123456789abcdef"' in image
    assert "kTinyhilMaxRequestBytes = 308u" in image  # LAYERS header (RUN's is 7 B) + largest input
    # exactly the union of ops, each once
    assert "MicroMutableOpResolver<3>" in resolver
    assert re.findall(r"resolver\.(\w+)\(\);", resolver) == ["AddAdd", "AddConv2D", "AddSoftmax"]


def test_unknown_op_is_named():
    with pytest.raises(UnsupportedOp, match="NOT_AN_OP"):
        resolver_ops(("CONV_2D", "NOT_AN_OP"), tflm_dir())


@pytest.mark.parametrize("name", ['x"; evil();//', "a b", "", "x" * 64, "a\\n"])
def test_benchmark_names_are_validated_before_reaching_c(name):
    with pytest.raises(TinyhilError, match="must match"):
        bench(name)


def test_image_id_depends_on_content_board_and_firmware():
    a = ImageSpec("qemu-m4", (bench(),))
    assert a.image_id("f1") == ImageSpec("qemu-m4", (bench(),)).image_id("f1")
    assert a.image_id("f1") != a.image_id("f2")
    assert a.image_id("f1") != ImageSpec("qemu-m33", (bench(),)).image_id("f1")
    other = bench(data=bench().flatbuffer + b"\x00")
    assert a.image_id("f1") != ImageSpec("qemu-m4", (other,)).image_id("f1")
