#!/bin/sh
# Smoke test of the VM harness, run inside the VM:
#   make vm-run CMD=scripts/vm/smoke.sh
# Checks that VFIO is real (nodes, edu devices on vfio-pci in distinct
# groups, DMAR active), pinning is allowed, and the static Swift binaries run.
set -e

fail() { echo "smoke: FAILED: $*"; exit 1; }

echo "== uname"; uname -a
echo "== ls -l /dev/vfio"; ls -l /dev/vfio
echo "== edu devices"
[ -s /run/vmtest-edu ] || fail "no edu devices in /run/vmtest-edu"
groups=""
while read -r addr group; do
    drv=$(readlink "/sys/bus/pci/devices/$addr/driver")
    echo "$addr $(cat /sys/bus/pci/devices/$addr/vendor):$(cat /sys/bus/pci/devices/$addr/device) driver ${drv##*/} group $group /dev/vfio/$group"
    [ "${drv##*/}" = vfio-pci ] || fail "$addr is not bound to vfio-pci"
    [ -c "/dev/vfio/$group" ] || fail "no /dev/vfio/$group"
    case " $groups " in *" $group "*) fail "group $group is shared" ;; esac
    groups="$groups $group"
done < /run/vmtest-edu
echo "distinct groups:$groups"
echo "== ulimit -l: $(ulimit -l)"
[ "$(ulimit -l)" = unlimited ] || fail "RLIMIT_MEMLOCK is not unlimited"
echo "== lsmod"; lsmod
echo "== /bin/vtdbridged --help"; /bin/vtdbridged --help | head -n 8
echo "== /bin/vtdbridge-sim --help"; /bin/vtdbridge-sim --help | head -n 8
echo "== /bin/vtdbridgectl --help"; /bin/vtdbridgectl --help | head -n 4
echo "== dmesg | grep -i dmar | head"
dmesg | grep -i dmar | head
dmesg | grep -q 'DMAR: Intel(R) Virtualization Technology for Directed I/O' || fail "DMAR is not active"
echo "smoke: OK"
