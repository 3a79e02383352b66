"""Images built from the recorded compile and link commands (image/relink.py)
equal PlatformIO's builds, and anything changed sends the build back to
PlatformIO."""
import json

import pytest
from elftools.elf.elffile import ELFFile

from tinyhil.board_catalog import get_board
from tinyhil.image import firmware, relink
from tinyhil.image.sources import Benchmark, ImageSpec
from tinyhil.models.single_op import write_op
from tinyhil.models.tflite_model import TfliteModel
from tinyhil.spaces import ops

RELINKED = "relinked from the recorded PlatformIO commands"


def verbose_log(build: str, source_dir, objects) -> str:
    image = f"{source_dir}/image.cc"
    return "\n".join([
        "Building in release mode",
        f"arm-none-eabi-g++ -o {build}/image/image.o -c -O2 -DNAME=\\\"x\\\" -I{source_dir} {image}",
        f"arm-none-eabi-g++ -o {build}/firmware.elf -Tlink.ld {build}/image/image.o "
        f"{build}/image/op_resolver.o {' '.join(map(str, objects))} -lm",
    ])


def test_record_keeps_templates_and_relink_refuses_anything_changed(tmp_path, monkeypatch):
    board = get_board("qemu-m4")
    monkeypatch.setattr(relink, "recipe_path", lambda _board: tmp_path / "recipe.json")
    library = tmp_path / "libtflm.a"
    library.write_bytes(b"!<arch>\n")
    source_dir = tmp_path / "src"
    build = f".pio/build/{board.name}"
    log = verbose_log(build, source_dir, [library])
    assert relink.record(board, log, source_dir, "fw1")
    recipe = json.loads((tmp_path / "recipe.json").read_text())
    assert recipe["compile"] == ["arm-none-eabi-g++", "-o", relink.OBJECT, "-c", "-O2", '-DNAME="x"',
                                 f"-I{relink.SOURCE_DIR}", relink.SOURCE]
    assert recipe["link"][2:6] == [relink.ELF, "-Tlink.ld", relink.IMAGE_O, relink.RESOLVER_O]
    assert list(recipe["inputs"]) == [str(library)]
    out = tmp_path / "out"
    # another firmware, or a library rebuilt since: PlatformIO builds it
    assert relink.relink(board, source_dir, out, "fw2", tmp_path / "log") is None
    library.write_bytes(b"!<arch>\nchanged")
    assert relink.relink(board, source_dir, out, "fw1", tmp_path / "log") is None
    assert not (tmp_path / "log").exists()  # refused before running anything
    # no compile in the log (image.o taken from a cache): nothing recorded
    assert not relink.record(board, log.splitlines()[2], source_dir, "fw1")
    # a deployment's image (its model array is an object of its own): never a recipe, or
    # that model would be linked into every later image
    deployment = log.replace(f"{build}/image/op_resolver.o", f"{build}/image/op_resolver.o {build}/image/g_model.o")
    (tmp_path / "recipe.json").unlink()
    assert not relink.record(board, deployment, source_dir, "fw1")
    assert not (tmp_path / "recipe.json").exists()


def loadable(elf_path) -> list[tuple[int, bytes]]:
    with open(elf_path, "rb") as f:
        return [(s["p_paddr"], s.data()) for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD"]


def benchmark(name: str, op) -> Benchmark:
    model = TfliteModel.from_bytes(write_op(op), name)
    return Benchmark(name, model.flatbuffer, model.ops, model.input_bytes)


@pytest.mark.device
def test_relinked_image_equals_the_platformio_build(tmp_path, monkeypatch):
    board = get_board("qemu-m4")
    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path / "first"))
    relink.recipe_path(board).unlink(missing_ok=True)  # the first build goes through PlatformIO
    firmware.build_image(ImageSpec(board.name, (benchmark("a", ops.softmax(5)),), True), board)
    assert relink.recipe_path(board).is_file()
    spec = ImageSpec(board.name, (benchmark("b", ops.conv((16, 3, 4), 8, (3, 1))),
                                  benchmark("c", ops.dense(12, 6))), True)
    relinked = firmware.build_image(spec, board)
    assert RELINKED in (relinked.elf.parent / "build.log").read_text()
    monkeypatch.setattr(firmware, "RELINK", False)
    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path / "second"))
    by_platformio = firmware.build_image(spec, board)
    assert RELINKED not in (by_platformio.elf.parent / "build.log").read_text()
    assert loadable(relinked.elf) == loadable(by_platformio.elf)
    assert relinked.size == by_platformio.size


@pytest.mark.device
def test_builds_of_one_run_tell_the_firmware_once(tmp_path, monkeypatch):
    """Inside one_firmware() (a measuring run) the firmware's fingerprint and
    TFLM library are told once, not per image; outside, every build tells them."""
    board = get_board("qemu-m4")
    monkeypatch.setenv("TINYHIL_CACHE_DIR", str(tmp_path))
    told = {"firmware": 0, "library": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            told[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(firmware, "firmware_fingerprint", counted("firmware", firmware.firmware_fingerprint))
    monkeypatch.setattr(firmware, "library_path", counted("library", firmware.library_path))
    specs = [ImageSpec(board.name, (benchmark(f"s{n}", ops.softmax(n)),), True) for n in (3, 4, 5, 6)]
    with firmware.one_firmware():
        inside = [firmware.build_image(spec, board) for spec in specs[:3]]
    assert told == {"firmware": 1, "library": 1}
    assert len({image.firmware for image in inside}) == 1 and not any(image.cached for image in inside)
    firmware.build_image(specs[3], board)
    assert told == {"firmware": 2, "library": 2}
