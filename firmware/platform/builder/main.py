"""SCons builder of the offline QEMU dev-platform.

Uses the system arm-none-eabi toolchain (Debian gcc-arm-none-eabi), so no
PlatformIO registry package is needed. Core flags come from the board JSON.
"""
from SCons.Script import Default, DefaultEnvironment

env = DefaultEnvironment()
board = env.BoardConfig()

core_flags = [
    "-mcpu=%s" % board.get("build.cpu"),
    "-mthumb",
    "-mfloat-abi=%s" % board.get("build.float_abi", "soft"),
]
if board.get("build.fpu", ""):
    core_flags.append("-mfpu=%s" % board.get("build.fpu"))

env.Replace(
    AR="arm-none-eabi-gcc-ar",
    AS="arm-none-eabi-gcc",
    CC="arm-none-eabi-gcc",
    CXX="arm-none-eabi-g++",
    LINK="arm-none-eabi-g++",
    RANLIB="arm-none-eabi-gcc-ranlib",
    OBJCOPY="arm-none-eabi-objcopy",
    SIZETOOL="arm-none-eabi-size",
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
)
env.Append(
    ASFLAGS=core_flags + ["-x", "assembler-with-cpp"],
    CCFLAGS=core_flags + ["-ffunction-sections", "-fdata-sections", "-Wall"],
    CFLAGS=["-std=gnu11"],
    CXXFLAGS=["-std=gnu++17", "-fno-rtti", "-fno-exceptions",
              "-fno-threadsafe-statics", "-fno-use-cxa-atexit"],
    CPPDEFINES=[("F_CPU", "$BOARD_F_CPU")],
    LINKFLAGS=core_flags + [
        "-Wl,--gc-sections",
        "--specs=nano.specs",
        "--specs=nosys.specs",
        "-Wl,-Map,${BUILD_DIR}/firmware.map",
    ],
    LIBS=["m"],
)
# The linker script is found on the BSP library's path (see platformio.ini).
Default(env.BuildProgram())
