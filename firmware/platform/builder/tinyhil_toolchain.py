"""The compiler flags of the offline dev-platform, in one place.

Read by the SCons builder (main.py, for the runner, the board support and the
image) and by the host, which compiles TFLM once per core into a library that
every board of that core links (host/tinyhil/image/tflm_library.py): the two
must compile with the same flags, so neither keeps a copy.
"""

C_COMPILER = "arm-none-eabi-gcc"
CXX_COMPILER = "arm-none-eabi-g++"
# every C and C++ file; the board's build_flags (-O2 ...) come on top
COMMON = ["-ffunction-sections", "-fdata-sections", "-Wall"]
C_ONLY = ["-std=gnu11"]
CXX_ONLY = ["-std=gnu++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics",
            "-fno-use-cxa-atexit"]


def core_flags(cpu, float_abi="soft", fpu=""):
    """-mcpu/-mfpu/-mfloat-abi from the board JSON's build.cpu, build.float_abi, build.fpu."""
    flags = ["-mcpu=%s" % cpu, "-mthumb", "-mfloat-abi=%s" % (float_abi or "soft")]
    if fpu:
        flags.append("-mfpu=%s" % fpu)
    return flags
