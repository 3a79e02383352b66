"""SCons builder of the offline dev-platform (QEMU boards and bare-metal Nucleos).

Uses the system arm-none-eabi toolchain (Debian gcc-arm-none-eabi) and, for
`pio run -t upload`, the system openocd (Debian `openocd`), so no PlatformIO
registry package is needed. Core flags and the openocd board script come from
the board JSON.
"""
import os
import shutil
import sys

from SCons.Script import AlwaysBuild, Default, DefaultEnvironment

env = DefaultEnvironment()
board = env.BoardConfig()
sys.path.insert(0, os.path.join(env.PioPlatform().get_dir(), "builder"))
import tinyhil_toolchain as toolchain  # noqa: E402  (beside this script: the flags the host's TFLM library shares)

core_flags = toolchain.core_flags(board.get("build.cpu"), board.get("build.float_abi", "soft"),
                                  board.get("build.fpu", ""))

env.Replace(
    AR="arm-none-eabi-gcc-ar",
    AS=toolchain.C_COMPILER,
    CC=toolchain.C_COMPILER,
    CXX=toolchain.CXX_COMPILER,
    LINK=toolchain.CXX_COMPILER,
    RANLIB="arm-none-eabi-gcc-ranlib",
    OBJCOPY="arm-none-eabi-objcopy",
    SIZETOOL="arm-none-eabi-size",
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
)
env.Append(
    ASFLAGS=core_flags + ["-x", "assembler-with-cpp"],
    CCFLAGS=core_flags + toolchain.COMMON,
    CFLAGS=toolchain.C_ONLY,
    CXXFLAGS=toolchain.CXX_ONLY,
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
program = env.BuildProgram()
Default(program)


def stlink_serial(port):
    """USB serial number of the ST-LINK whose virtual COM port is `port`: it
    tells openocd which probe to use when several boards are plugged in."""
    if not port:
        return ""
    try:
        from serial.tools import list_ports
    except ImportError:
        return ""
    for info in list_ports.comports():
        if info.device == port and info.vid == 0x0483 and info.serial_number:
            return info.serial_number
    return ""


protocol = env.subst("$UPLOAD_PROTOCOL") or board.get("upload.protocol", "")
if protocol == "openocd":
    # program = write + verify; then reset into the new image and exit.
    serial_number = stlink_serial(env.subst("$UPLOAD_PORT"))
    env.Replace(
        UPLOADER="openocd",
        UPLOADERFLAGS=["-f", board.get("upload.openocd_board")]
        + (["-c", "adapter serial %s" % serial_number] if serial_number else []),
        UPLOADCMD='$UPLOADER $UPLOADERFLAGS $UPLOAD_FLAGS -c "program {$SOURCE} verify reset exit"',
    )
    if not shutil.which("openocd"):
        env.Replace(UPLOADCMD="echo 'tinyhil: openocd not found: sudo apt-get install openocd "
                              "(make setup installs it)' && false")
if protocol in ("openocd", "custom"):
    # custom: platformio.ini's upload_command, with $SOURCE and $UPLOAD_PORT.
    command = "$UPLOADCMD" if protocol == "openocd" else env.GetProjectOption("upload_command", "")
    AlwaysBuild(env.Alias("upload", program, env.VerboseAction(command, "Uploading $SOURCE")))
