#!/bin/sh
# In-VM (scripts/vm/run --qemu --edu 2): the real-VFIO figures of make bench,
# as BENCH-ROW lines. vm-bench: the event channel (INVALIDATE, and NOTIFY in
# notifier mode) against raw ioctls and against the same-run floor (a
# Unix-socket round trip to an echo process plus one raw MAP_DMA, sampled
# after every timed request), the daemon's wake-ups and memory;
# vfio-user-bench: the vfio-user server's DMA_MAP latency against the same
# kind of floor, and a QEMU 11.1 guest's invalidation through the daemon
# against a stub server. Both run even if the first fails; the status is
# the worse one.
status=0
/bin/vtdbridge-sim vm-bench || status=1
/bin/vtdbridge-sim vfio-user-bench || status=1
if [ "$status" -ne 0 ]; then
    for f in /run/vtdbench/daemon.log /run/vtdbench-floor/*.log /run/vtdbench-vu/*.log /run/vtdbench-vu/daemon/daemon.log; do
        [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }
    done
fi
exit "$status"
