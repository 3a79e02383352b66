"""PlatformIO pre-script shared by every environment.

Adds to the build:
  * TensorFlow Lite Micro with CMSIS-NN kernels, compiled from an unmodified
    upstream tree (tflite-micro-arduino-examples) that lives outside this
    repository, as one static library;
  * the image sources the host rendered (models + op resolver), from the
    directory in $TINYHIL_IMAGE_DIR.

Where the TFLM tree comes from, first match wins:
  1. $TINYHIL_TFLM_DIR
  2. `custom_tflm_dir` of the environment (relative to the project)
  3. a clone of `custom_tflm_git` (URL#commit) into .pio/deps/ (needs a network)
"""
import os
import subprocess
import sys

Import("env")  # noqa: F821  (SCons injects it)

PROJECT_DIR = env.subst("$PROJECT_DIR")  # noqa: F821


def option(name, default=""):
    return env.GetProjectOption(name, default)  # noqa: F821


def fail(message):
    sys.stderr.write("tinyhil: %s\n" % message)
    env.Exit(1)  # noqa: F821


def tflm_tree():
    candidates = [os.environ.get("TINYHIL_TFLM_DIR", "")]
    if option("custom_tflm_dir"):
        candidates.append(os.path.join(PROJECT_DIR, option("custom_tflm_dir")))
    for path in candidates:
        if path and os.path.isdir(os.path.join(path, "src", "tensorflow", "lite", "micro")):
            return os.path.abspath(path)
    url = option("custom_tflm_git")
    if not url:
        fail("no TFLM tree: set TINYHIL_TFLM_DIR or custom_tflm_dir/custom_tflm_git")
    repo, _, commit = url.partition("#")
    clone = os.path.join(PROJECT_DIR, ".pio", "deps", "tflite-micro-arduino")
    if not os.path.isdir(os.path.join(clone, "src")):
        print("tinyhil: fetching TFLM from %s at %s" % (repo, commit or "HEAD"))
        try:
            subprocess.check_call(["git", "clone", "--quiet", repo, clone])
            if commit:
                subprocess.check_call(["git", "-C", clone, "checkout", "--quiet", commit])
        except (OSError, subprocess.CalledProcessError) as error:
            fail("could not fetch TFLM (%s); without a network set TINYHIL_TFLM_DIR to a local "
                 "copy of tflite-micro-arduino-examples" % error)
    return clone


if os.environ.get("TINYHIL_TOOLCHAIN_PROBE"):
    # `tinyhil doctor`: src_dir is firmware/probe (a one-file program); the
    # board's flags and BSP, no TFLM and no image, so it builds in seconds.
    env.Append(CPPPATH=["$PROJECT_INCLUDE_DIR"],  # noqa: F821
               CPPDEFINES=[("TINYHIL_BOARD", '\\"%s\\"' % env.subst("$PIOENV"))])  # noqa: F821
    Return()  # noqa: F821

tflm = tflm_tree()
src = os.path.join(tflm, "src")
TFLM_INCLUDES = [
    src,
    os.path.join(src, "third_party", "flatbuffers", "include"),
    os.path.join(src, "third_party", "gemmlowp"),
    os.path.join(src, "third_party", "ruy"),
    os.path.join(src, "third_party", "cmsis"),
    os.path.join(src, "third_party", "cmsis", "CMSIS", "Core", "Include"),
    os.path.join(src, "third_party", "cmsis_nn"),
    os.path.join(src, "third_party", "cmsis_nn", "Include"),
]
ARDUINO_FRAMEWORK = "arduino" in env.subst("$PIOFRAMEWORK")  # noqa: F821
# -DARDUINO selects the CMSIS-NN kernel registrations in this tree; Arduino
# framework builds define it already.
TFLM_DEFINES = ["TF_LITE_STATIC_MEMORY", "CMSIS_NN", "ARDUINO"]
env.Append(  # noqa: F821
    # the runner/BSP/image interfaces, for libraries too
    CPPPATH=["$PROJECT_INCLUDE_DIR"] + TFLM_INCLUDES,
    CPPDEFINES=[d for d in TFLM_DEFINES if not (ARDUINO_FRAMEWORK and d == "ARDUINO")]
    + [("TINYHIL_TFLM_VERSION", '\\"%s\\"' % option("custom_tflm_version", "unknown")),
       ("TINYHIL_BOARD", '\\"%s\\"' % env.subst("$PIOENV"))],  # noqa: F821
)

# Left out: Arduino glue and peripherals (we bring our own board layer,
# DebugLog and timer), test helpers, and kernels for other accelerators.
TFLM_FILTER = [
    "+<*>",
    "-<peripherals/>",
    "-<test_over_serial/>",
    "-<TensorFlowLite.h>",
    "-<third_party/kissfft/>",
    "-<tensorflow/lite/micro/arduino/>",
    "-<tensorflow/lite/micro/system_setup.cpp>",
    "-<tensorflow/lite/micro/debug_log.cpp>",
    "-<tensorflow/lite/micro/micro_time.cpp>",
    "-<tensorflow/lite/micro/all_ops_resolver.cpp>",
    "-<tensorflow/lite/micro/test_helpers.cpp>",
    "-<tensorflow/lite/micro/test_helper_custom_ops.cpp>",
    "-<tensorflow/lite/micro/mock_micro_graph.cpp>",
    "-<tensorflow/lite/micro/fake_micro_context.cpp>",
    "-<tensorflow/lite/micro/kernels/kernel_runner.cpp>",
    "-<tensorflow/lite/micro/kernels/ethosu.cpp>",
]
# On bare metal TFLM is compiled with its own defines and include paths only,
# not the board's (F_CPU, TINYHIL_*, BSP headers), into one directory per
# core: boards of one core (qemu-m4, qemu-stm32f4, nucleo_f446re) then run
# the same compile commands on the same object paths, which SCons's cache
# (build_cache_dir) keys on, so TFLM compiles once per core, not per board.
# Arduino framework builds keep the framework's flags.
tflm_objects = None
if not ARDUINO_FRAMEWORK:
    board = env.BoardConfig()  # noqa: F821
    core = "-".join(filter(None, (board.get("build.cpu", ""), board.get("build.fpu", ""),
                                  board.get("build.float_abi", ""))))
    tflm_objects = [
        env.Object(node, CPPDEFINES=TFLM_DEFINES, CPPPATH=TFLM_INCLUDES)  # noqa: F821
        for node in env.CollectBuildFiles("$PROJECT_BUILD_DIR/tflm-" + core, src, TFLM_FILTER)  # noqa: F821
    ]
env.Prepend(LIBS=[env.BuildLibrary("$BUILD_DIR/tflm", src, TFLM_FILTER, nodes=tflm_objects)])  # noqa: F821

image_dir = os.environ.get("TINYHIL_IMAGE_DIR", "")
if not image_dir or not os.path.isfile(os.path.join(image_dir, "image.cc")):
    fail("TINYHIL_IMAGE_DIR must name a directory with the rendered image.cc; "
         "firmware images are made by the host: `tinyhil run MODEL --board %s`"
         % env.subst("$PIOENV"))  # noqa: F821
env.Append(CPPPATH=[image_dir])  # noqa: F821
env.BuildSources("$BUILD_DIR/image", image_dir)  # noqa: F821
