"""PlatformIO pre-script shared by every environment.

Adds to the build:
  * TensorFlow Lite Micro with CMSIS-NN kernels from an unmodified upstream
    tree (tflite-micro-arduino-examples) that lives outside this repository,
    as one static library: the host's, compiled once per core and machine
    ($TINYHIL_TFLM_LIBRARY), or compiled here where there is none;
  * the image sources the host rendered (models + op resolver), from the
    directory in $TINYHIL_IMAGE_DIR.

Where the TFLM tree comes from, first match wins:
  1. $TINYHIL_TFLM_DIR
  2. `custom_tflm_dir` of the environment (relative to the project)
  3. a clone of `custom_tflm_git` (URL#commit) into .pio/deps/ (needs a network)
"""
import json
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
with open(os.path.join(PROJECT_DIR, "firmware", "scripts", "tflm.json")) as f:
    TFLM = json.load(f)  # includes, defines, files left out: shared with the host
TFLM_INCLUDES = [os.path.join(src, path) if path else src for path in TFLM["includes"]]
TFLM_DEFINES = TFLM["defines"]
ARDUINO_FRAMEWORK = "arduino" in env.subst("$PIOFRAMEWORK")  # noqa: F821
env.Append(  # noqa: F821
    # the runner/BSP/image interfaces, for libraries too
    CPPPATH=["$PROJECT_INCLUDE_DIR"] + TFLM_INCLUDES,
    CPPDEFINES=[d for d in TFLM_DEFINES if not (ARDUINO_FRAMEWORK and d == "ARDUINO")]
    + [("TINYHIL_TFLM_VERSION", '\\"%s\\"' % option("custom_tflm_version", "unknown")),
       ("TINYHIL_BOARD", '\\"%s\\"' % env.subst("$PIOENV"))],  # noqa: F821
)

# TFLM itself: the library the host compiled once per core and machine
# (host/tinyhil/image/tflm_library.py: same flags, TFLM's own defines, no
# board's), named by $TINYHIL_TFLM_LIBRARY; a build without it (Arduino
# framework boards, whose flags are the framework's, or `pio run` by hand)
# compiles the tree here.
library = os.environ.get("TINYHIL_TFLM_LIBRARY", "")
if library and not ARDUINO_FRAMEWORK:
    if not os.path.isfile(library):
        fail("TINYHIL_TFLM_LIBRARY names %s, which is not a file" % library)
    env.Prepend(LIBS=[env.File(library)])  # noqa: F821
else:
    tflm_filter = ["+<*>"] + ["-<%s>" % path for path in TFLM["exclude"]]
    objects = None
    if not ARDUINO_FRAMEWORK:  # TFLM's own defines and includes only, as the host's library
        objects = [env.Object(node, CPPDEFINES=TFLM_DEFINES, CPPPATH=TFLM_INCLUDES)  # noqa: F821
                   for node in env.CollectBuildFiles("$BUILD_DIR/tflm", src, tflm_filter)]  # noqa: F821
    env.Prepend(LIBS=[env.BuildLibrary("$BUILD_DIR/tflm", src, tflm_filter, nodes=objects)])  # noqa: F821

image_dir = os.environ.get("TINYHIL_IMAGE_DIR", "")
if not image_dir or not os.path.isfile(os.path.join(image_dir, "image.cc")):
    fail("TINYHIL_IMAGE_DIR must name a directory with the rendered image.cc; "
         "firmware images are made by the host: `tinyhil run MODEL --board %s`"
         % env.subst("$PIOENV"))  # noqa: F821
env.Append(CPPPATH=[image_dir])  # noqa: F821
env.BuildSources("$BUILD_DIR/image", image_dir)  # noqa: F821
