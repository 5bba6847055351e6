#!/bin/sh
# In-VM (scripts/vm/run --qemu): an unmodified QEMU 11.1 drives the real edu
# device through vtdbridged's vfio-user server. vtdbridged owns the edu's
# VFIO group (vfio backend); QEMU runs q35 with a caching-mode intel-iommu
# and -device vfio-user-pci under -accel qtest; vtdbridge-sim qemu-test
# plays the guest over qtest (VT-d tables, invalidations, edu DMA checked
# in QEMU's guest RAM) and checks the daemon's mappings after each step.
# The last line is "qemu-test: N passed, N failed". (make vm-test, make
# demo-qemu with QEMU_TEST_ARGS naming scenarios.)
set -u
read -r addr group < /run/vmtest-edu || { echo "qemu-vfio-user: no edu device"; exit 1; }
dir=/run/vu
mkdir -p "$dir"
echo "== vtdbridged serving edu $addr (group $group) as 00:03.0 at $dir/edu0.sock"
set -- --backend vfio --event-socket "$dir/event.sock" --control-socket "$dir/control.sock" \
    --state-directory "$dir/state" --device "group:$group=00:03.0,vfio-user=$dir/edu0.sock"
echo "vtdbridged $*"
/bin/vtdbridged "$@" > "$dir/daemon.log" 2>&1 &
dpid=$!
up=""
for _ in $(seq 100); do
    if /bin/vtdbridgectl status --socket "$dir/control.sock" > /dev/null 2>&1; then up=1; break; fi
    sleep 0.1
done
if [ -z "$up" ]; then
    echo "qemu-vfio-user: vtdbridged did not come up"; cat "$dir/daemon.log"
    echo "qemu-test: 0 passed, 1 failed"
    exit 1
fi
# shellcheck disable=SC2086
/bin/vtdbridge-sim qemu-test --device "vfio-user:$dir/edu0.sock" --control-socket "$dir/control.sock" \
    --directory "$dir/qtest" ${QEMU_TEST_ARGS:-}
status=$?
echo "== vtdbridgectl status"
/bin/vtdbridgectl status --socket "$dir/control.sock"
kill "$dpid"; wait "$dpid"
if [ "$status" -ne 0 ]; then
    echo "== vtdbridged log (last 80 lines)"; tail -n 80 "$dir/daemon.log"
    for f in "$dir"/qtest/qemu-*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }; done
fi
exit "$status"
