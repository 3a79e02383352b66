from platformio.public import PlatformBase


class TinyhilqemuPlatform(PlatformBase):
    """Bare-metal Cortex-M boards run by qemu-system-arm; toolchain from the system PATH."""
