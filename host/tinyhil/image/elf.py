"""Flash and RAM use of a firmware image, read from its ELF sections."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile


@dataclass(frozen=True)
class ImageSize:
    text: int  # code and constants (the model arrays live here)
    data: int  # initialised RAM, stored in flash too
    bss: int  # zeroed RAM (tensor arena, stacks)

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss


def image_size(elf_path: Path) -> ImageSize:
    """Berkeley-style totals over allocated sections, as `size` prints them."""
    text = data = bss = 0
    with open(elf_path, "rb") as f:
        for section in ELFFile(f).iter_sections():
            flags = section["sh_flags"]
            if not flags & SH_FLAGS.SHF_ALLOC or section["sh_size"] == 0:
                continue
            size = section["sh_size"]
            if section["sh_type"] == "SHT_NOBITS":
                bss += size
            elif flags & SH_FLAGS.SHF_WRITE:
                data += size
            else:
                text += size
    return ImageSize(text, data, bss)


def compiler_of(elf_path: Path) -> str:
    """The compiler named in the ELF's .comment section (e.g. "GCC: ... 12.2.1")."""
    with open(elf_path, "rb") as f:
        section = ELFFile(f).get_section_by_name(".comment")
        if section is None:
            return "unknown"
        names = [s for s in section.data().decode(errors="replace").split("\0") if s]
        return names[0] if names else "unknown"
