#!/bin/sh
# QEMU 11.1 inside the test VM, run there by
#   scripts/vm/run --qemu scripts/vm/qemu-smoke.sh     (make vm-qemu-smoke)
# Checks that qemu-system-x86_64 on PATH is 11.1, has the vfio-user client,
# and runs a q35 machine with intel-iommu under -accel qtest: a short qtest
# exchange reads the VT-d VER and CAP registers and the host bridge's PCI ID.
#
# qtest runs over a pipe chardev (-qtest pipe:P: QEMU reads P.in and writes
# P.out), since busybox nc has no Unix sockets. The same protocol runs over
# -qtest unix:PATH, where QEMU connects to a test that listens on PATH (add
# ,server=on,wait=off to make QEMU listen instead).
set -u

qpid=""
fail() {
    echo "qemu-smoke: FAILED: $*"
    [ -z "$qpid" ] || kill "$qpid" 2>/dev/null
    exit 1
}
uptime_s() { read -r up _ < /proc/uptime && echo "$up"; }

echo "== command -v qemu-system-x86_64"
command -v qemu-system-x86_64 || fail "no qemu-system-x86_64 on PATH ($PATH): was the VM started with --qemu?"

echo "== qemu-system-x86_64 --version"
t0=$(uptime_s)
version=$(qemu-system-x86_64 --version) || fail "qemu-system-x86_64 --version exited $?"
echo "$version"
echo "(took $(echo "$t0 $(uptime_s)" | awk '{printf "%.2f", $2 - $1}') s under TCG)"
case "$version" in
    "QEMU emulator version 11.1."*) ;;
    *) fail "expected QEMU 11.1" ;;
esac

echo "== qemu-system-x86_64 -device vfio-user-pci,help"
help=$(qemu-system-x86_64 -device vfio-user-pci,help 2>&1) || fail "-device vfio-user-pci,help exited $?: $help"
echo "$help" | grep -E '^vfio-user-pci options:|socket=|x-msg-timeout='
echo "$help" | grep -q '^vfio-user-pci options:' || fail "no vfio-user-pci device"
echo "$help" | grep -q 'socket=<SocketAddress>' || fail "vfio-user-pci has no socket property"

echo "== qtest: q35 + intel-iommu, memfd guest RAM"
rm -f /tmp/qt.in /tmp/qt.out
mkfifo /tmp/qt.in /tmp/qt.out || fail "mkfifo"
set -- -machine q35 -accel qtest -nodefaults -display none -m 64M \
    -object memory-backend-memfd,id=m0,size=64M,share=on -machine memory-backend=m0 \
    -device intel-iommu,caching-mode=on,intremap=off,aw-bits=39 \
    -qtest pipe:/tmp/qt -qtest-log none
echo "qemu-system-x86_64 $*"
t0=$(uptime_s)
qemu-system-x86_64 "$@" &
qpid=$!
# Both ends read-write: opening never blocks, and a QEMU that dies makes
# the read below time out instead of hanging.
exec 3<>/tmp/qt.in 4<>/tmp/qt.out

# ask CMD EXPECTED: sends one qtest line, checks the reply.
ask() {
    echo "$1" >&3
    read -t 60 -r reply <&4 || fail "no qtest reply to '$1' within 60 s (QEMU exited?)"
    echo "> $1"
    echo "< $reply"
    [ "$reply" = "$2" ] || fail "expected '$2'"
}
# VT-d VER (spec 10.4.1) at the DMAR unit's base: QEMU models version 1.0.
ask "readl 0xfed90000" "OK 0x0000000000000010"
echo "(QEMU start to first reply: $(echo "$t0 $(uptime_s)" | awk '{printf "%.2f", $2 - $1}') s under TCG)"
# CAP (10.4.2): SAGAW, bits 12:8, lists the table depths the unit walks;
echo "readq 0xfed90008" >&3
read -t 60 -r cap <&4 || fail "no reply to readq CAP"
echo "> readq 0xfed90008"
echo "< $cap"
case "$cap" in "OK 0x"*) ;; *) fail "CAP read failed" ;; esac
# aw-bits=39 leaves bit 1 alone: 3-level tables, 39-bit addresses.
sagaw=$(( (${cap#OK } >> 8) & 0x1f ))
[ "$sagaw" -eq 2 ] || fail "CAP.SAGAW is $sagaw, expected 2 (3-level, aw-bits=39)"
echo "CAP.SAGAW = $sagaw (3-level tables only, as aw-bits=39 asks)"
# PCI config cycle to 00:00.0 (the q35 host bridge, 8086:29c0).
ask "outl 0xcf8 0x80000000" "OK"
ask "inl 0xcfc" "OK 0x29c08086"

kill "$qpid" 2>/dev/null
wait "$qpid"
qpid=""
exec 3>&- 4>&-
echo "qemu-smoke: OK"
