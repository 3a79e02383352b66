#!/usr/bin/env bash
# The README's two commands on a machine with no history: a clean Debian root
# (mmdebstrap, minbase) in a temporary directory, a clean clone of this
# repository's HEAD and a copy of ../shared in it, then `make demo` and
# `make test` inside it (chroot in a PID namespace with its own /proc; /sys, /dev
# and /dev/pts mounted: QEMU's serial pty needs them). Slow (set-up downloads everything), so not part
# of CI: run it before a release or after changing set-up.
#   usage: sudo scripts/fresh-check.sh [--keep] [--suite bookworm] [-- make targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=$(cd "$ROOT/.." && pwd)/shared
SUITE=bookworm
KEEP=0
TARGETS=(demo test)
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1 ;;
    --suite) SUITE=$2; shift ;;
    --) shift; TARGETS=("$@"); break ;;
    *) echo "usage: $0 [--keep] [--suite SUITE] [-- make targets...]" >&2; exit 2 ;;
  esac
  shift
done
say() { printf '\033[1m[fresh-check]\033[0m %s\n' "$*"; }

[ "$(id -u)" -eq 0 ] || { echo "fresh-check needs root (mmdebstrap, mount, chroot)" >&2; exit 2; }
[ -d "$SHARED" ] || { echo "no $SHARED beside the checkout" >&2; exit 2; }
if ! command -v mmdebstrap >/dev/null; then
  say "apt-get install mmdebstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap
fi

WORK=$(mktemp -d /var/tmp/tinyhil-fresh.XXXXXX)
CHROOT=$WORK/root
LOGS=$ROOT/out/fresh-check
rm -rf "$LOGS"; mkdir -p "$LOGS"
MOUNTS=()
cleanup() {
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  # QEMU or a build left running inside would keep the mounts busy
  pkill -KILL -f "$CHROOT" 2>/dev/null || true
  if [ "$KEEP" -eq 0 ]; then rm -rf --one-file-system "$WORK"; else say "kept $WORK"; fi
}
trap cleanup EXIT

say "mmdebstrap $SUITE (minbase) -> $CHROOT"
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,make,git \
  "$SUITE" "$CHROOT"
# A TLS-inspecting network presents its own certificate: pip inside needs the
# host's CA bundle and pip.conf (labs behind such a proxy need the same).
cp /etc/ssl/certs/ca-certificates.crt "$CHROOT/etc/ssl/certs/ca-certificates.crt"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$CHROOT/etc/pip.conf"
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf" 2>/dev/null || true

say "clean clone of $(git rev-parse --short HEAD) and a copy of shared/"
mkdir -p "$CHROOT/work"
git clone --quiet --no-local "$ROOT" "$CHROOT/work/main"
git -C "$CHROOT/work/main" checkout --quiet "$(git rev-parse HEAD)"
cp -r "$SHARED" "$CHROOT/work/shared"
chmod -R a-w "$CHROOT/work/shared"

for m in sys dev dev/pts; do
  mkdir -p "$CHROOT/$m"
  case $m in
    sys) mount -t sysfs sys "$CHROOT/sys" ;;
    *) mount --bind "/$m" "$CHROOT/$m" ;;
  esac
  MOUNTS+=("$CHROOT/$m")
done
mkdir -p "$CHROOT/proc"

status=0
for target in "${TARGETS[@]}"; do
  say "make $target (log: $LOGS/$target.log)"
  start=$(date +%s)
  # A PID namespace with its own /proc: the tests that look for leftover
  # processes (QEMU, workers) see the root's processes only, not the host's.
  if unshare --pid --fork --mount-proc="$CHROOT/proc" chroot "$CHROOT" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
       PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
       bash -c "cd /work/main && make $target" >"$LOGS/$target.log" 2>&1 </dev/null; then
    result=passed
  else
    result=FAILED; status=1
  fi
  seconds=$(( $(date +%s) - start ))
  say "make $target: $result in $((seconds / 60)) min $((seconds % 60)) s; its last lines:"
  tail -n 12 "$LOGS/$target.log" | sed 's/^/    /'
  [ "$result" = passed ] || { KEEP=1; break; }
done
exit $status
