"""Two firmware images, function by function: which functions run the same
instructions and which do not. Branch and call targets are compared as an
offset inside the function or the callee's name, literal-pool words and
comments are masked, so code that only moved (another function grew before
it) counts as the same; a changed instruction, operand or callee does not.

    python scripts/same_code.py BEFORE.elf AFTER.elf [NAME ...]

Without NAMEs every function is compared; with them, those whose (demangled)
name contains one of them. Prints `same`/`CHANGED` per function and the
functions only one image has; exits 1 if any compared function changed.
Needs arm-none-eabi-objdump and -readelf (the firmware toolchain).
"""
from __future__ import annotations

import re
import subprocess
import sys

SYMBOL = re.compile(r"^\s*\d+: ([0-9a-f]+)\s+(\d+) FUNC\s+\w+\s+\w+\s+\d+ (.*)$")
INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\s+(.*)$")
TARGET = re.compile(r"\b([0-9a-f]+) <[^>]*>")


def functions(elf: str) -> dict[str, list[str]]:
    """Demangled name -> its instructions, normalised."""
    table = subprocess.run(["arm-none-eabi-readelf", "-sW", "-C", elf],
                           capture_output=True, text=True, check=True).stdout
    symbols = {}
    for line in table.splitlines():  # functions only: rodata shares .text with them
        match = SYMBOL.match(line)
        if match and int(match.group(2)):
            symbols[int(match.group(1), 16) & ~1] = (int(match.group(2)), match.group(3))
    dump = subprocess.run(["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", elf],
                          capture_output=True, text=True, check=True).stdout
    code = [(int(m.group(1), 16), m.group(2)) for m in map(INSTRUCTION.match, dump.splitlines()) if m]
    starts = sorted(symbols)
    result: dict[str, list[str]] = {}
    for start in starts:
        size, name = symbols[start]

        def target(match, start=start, size=size) -> str:
            address = int(match.group(1), 16)
            if start <= address < start + size:
                return f"+{address - start:#x}"
            return symbols.get(address & ~1, (0, "elsewhere"))[1]

        body = []
        for address, text in code:
            if start <= address < start + size:
                text = TARGET.sub(target, re.sub(r"\s*[;@].*$", "", text))
                body.append(".word" if text.startswith(".word") else text)
        if not body:
            raise SystemExit(f"{elf}: no instructions found for {name}: objdump's output not understood")
        result[name] = body
    return result


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip())
        return 2
    before, after = functions(argv[0]), functions(argv[1])
    names = argv[2:]
    changed = False
    for name in sorted(set(before) | set(after)):
        if names and not any(n in name for n in names):
            continue
        if name not in before or name not in after:
            print(f"only in {'before' if name in before else 'after'}: {name}")
        elif before[name] == after[name]:
            print(f"same     {len(before[name]):5d}  {name}")
        else:
            changed = True
            print(f"CHANGED  {len(before[name]):5d} -> {len(after[name])}  {name}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
