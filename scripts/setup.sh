#!/usr/bin/env bash
# Installs everything tinyhil needs on a fresh Debian machine, offline-friendly.
# Idempotent: every step checks first, so a second run takes seconds.
#   - Debian packages: QEMU (emulated boards), the Arm GCC toolchain, newlib and
#     the Arm C++ headers, openocd (physical boards), ser2net (remote boards)
#   - a virtualenv (.venv) with tinyhil and its Python dependencies
#   - PlatformIO's tool-scons package built from PyPI's scons, because the
#     PlatformIO registry may be unreachable (see docs in README "Offline builds")
#   - last, `tinyhil doctor`: proves the toolchain builds and boots firmware, and
#     compiles TFLM once per emulated core into ~/.cache/tinyhil (minutes, once per machine)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${TINYHIL_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages -------------------------------------------------------
# libstdc++-arm-none-eabi-newlib: the Arm C++ headers (<cstdio>, <cmath>); TFLM is
#   C++ and no C package pulls them in
# openocd: flashes and resets the Nucleo boards (board/st_nucleo_f4.cfg, st_nucleo_l5.cfg)
# ser2net: labgrid-exporter serves a board's serial port with it (tinyhil regress, remote boards)
# gcc, g++: the tests compile the firmware's C framing and C arrays for the host
# chromium, chromium-driver: the report tests open the HTML reports in headless Chromium (selenium)
# openssh-server: labgrid runs openocd on an exporter host over SSH; tests start their own sshd on 127.0.0.1
APT_PACKAGES=(qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi
              libstdc++-arm-none-eabi-newlib openocd ser2net gcc g++ chromium chromium-driver openssh-server)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi

# 2. Python virtualenv -----------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.tinyhil-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "pip install -e .[dev]"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e ".[dev]"
  touch "$stamp"
else
  say "Python packages up to date"
fi

# 3. PlatformIO offline: tool-scons from PyPI's scons ------------------------
# PlatformIO insists on the package platformio/tool-scons; without its
# registry we package the SCons already installed in the venv and register it
# under the platformio owner so PlatformIO accepts it.
# core_dir of platformio.ini (.pio/core): packages live with the checkout
PIO_CORE=${PLATFORMIO_CORE_DIR:-$ROOT/.pio/core}
if [ ! -f "$PIO_CORE/packages/tool-scons/.piopm" ] || ! grep -q '"owner": "platformio"' "$PIO_CORE/packages/tool-scons/.piopm"; then
  say "packaging tool-scons for PlatformIO"
  work=$(mktemp -d)
  scons_pkg=$("$VENV/bin/python" -c 'import SCons, os; print(os.path.dirname(SCons.__file__))')
  cp -r "$scons_pkg" "$work/SCons"
  cat > "$work/scons.py" <<'PY'
import sys
from SCons.Script.Main import main
if __name__ == "__main__":
    sys.exit(main())
PY
  cat > "$work/package.json" <<'JSON'
{"name": "tool-scons", "version": "4.41101.0", "description": "SCons from PyPI, packaged for offline PlatformIO", "system": "*"}
JSON
  (cd "$ROOT" && PLATFORMIO_CORE_DIR="$PIO_CORE" "$VENV/bin/pio" pkg install -g -t "file://$work" >/dev/null)
  "$VENV/bin/python" - "$PIO_CORE/packages/tool-scons/.piopm" <<'PY'
import json, sys
path = sys.argv[1]
meta = json.load(open(path))
meta.setdefault("spec", {})["owner"] = "platformio"
meta["spec"]["name"] = "tool-scons"
json.dump(meta, open(path, "w"))
PY
  rm -rf "$work"
else
  say "PlatformIO tool-scons present"
fi
# 4. Proof: every tool's version, the C++ headers per core, and the toolchain
# probe built with each emulated board's firmware flags and booted in QEMU.
say "checking the toolchain (tinyhil doctor)"
if ! "$VENV/bin/tinyhil" doctor; then
  say "set-up is incomplete: the failed checks above name what is missing; fix it and run 'make setup' again"
  exit 1
fi
say "done. Activate with: source $VENV/bin/activate"
