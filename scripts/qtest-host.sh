#!/usr/bin/env bash
# The qtest guest (vtdbridge-sim qemu-test) against this host's QEMU, with
# QEMU's own emulated edu behind QEMU's emulated VT-d: no daemon, no VM. It
# proves the guest side of issue 11's QEMU test (PCI enumeration, DMAR
# registers, queued invalidation, 3-level tables, edu DMA checked in guest
# RAM) on Debian bookworm's QEMU 7.2. Exits with vtdbridge-sim's status.
#
#   scripts/qtest-host.sh [qemu-test arguments, e.g. scenario names]
#
#   QEMU=PATH      the QEMU binary (default: qemu-system-x86_64 in PATH)
#   ACCEL=qtest|tcg  default: qtest if this QEMU has the qtest accelerator,
#                  else tcg (Debian's 7.2 packages ship no accel-qtest module)
set -euo pipefail
cd "$(dirname "$0")/.."

QEMU=${QEMU:-qemu-system-x86_64}
if ! command -v "$QEMU" >/dev/null; then
    echo "qtest-host: installing qemu-system-x86"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
fi

if [ -z "${ACCEL:-}" ]; then
    # -accel help does not list module accelerators, so ask QEMU to start one.
    if echo quit | timeout 20 "$QEMU" -accel qtest -machine none -nodefaults -display none -S -monitor stdio >/dev/null 2>&1; then
        ACCEL=qtest
    else
        ACCEL=tcg
    fi
fi

swift build --product vtdbridge-sim 2>&1 | tail -n 1
exec "$(swift build --show-bin-path)/vtdbridge-sim" qemu-test --qemu "$QEMU" --device edu --accel "$ACCEL" \
    --directory "${TMPDIR:-/tmp}/vtdbridge-qtest-host" "$@"
