#!/bin/sh
# In-VM, systemd profile (scripts/vm/run --systemd): restarts the VM never
# notices. vtdbridged@soak runs under systemd with the unit as installed;
# the simulating VMM runs as the non-root user vmm (group kvm) and drives
# `vtdbridge-sim vm-test --unit soak`: a live map/unmap/remap stream and
# edu DMA, through 20 SIGKILLs (systemctl kill -s KILL), 20 systemctl
# restarts and one upgrade to a new binary, which this script (root)
# performs when the VMM asks through two FIFOs (unit-helper.sh). Then `systemctl stop` must
# unmap everything and empty the fd store.
#
# Counted checks print "ok:"/"FAIL:"; the last line is
# "systemd-restarts: N passed, N failed". SOAK_SEED, SOAK_KILLS,
# UNIT_RESTARTS and INFLIGHT_KILLS override the defaults.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
unit=vtdbridged@soak
ctl=/run/vtdtest-unit
passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
finish() {
    echo "== journal of $unit: starts, adoptions, resyncs, hand-overs, stops (last 40)"
    journalctl -u "$unit" -o short-monotonic --no-pager \
        | grep -E "restarted with|resynced|settled|not trusted|handed over|going away|Started|Stopped|Main process|Scheduled|descriptors from|ready|error|critical" \
        | tail -n 60
    echo "systemd-restarts: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

[ "$(wc -l < /run/vmtest-edu)" -ge 2 ] || { bad "need two edu devices, /run/vmtest-edu lists $(wc -l < /run/vmtest-edu)"; finish; }

mkdir -p /etc/vtd-bridge
cat > /etc/vtd-bridge/soak.json <<'EOF'
{
  "name": "soak",
  "event-socket": "/run/vtd-bridge/soak/event.sock",
  "control": { "socket": "/run/vtd-bridge/soak/control.sock", "group": "kvm" },
  "access": { "uids": [0], "gids": ["kvm"] },
  "state-directory": "/var/lib/vtd-bridge/soak",
  "log": { "level": "info" },
  "backend": "vfio",
  "devices": []
}
EOF
if systemctl start "$unit"; then ok "systemctl start $unit"; else bad "systemctl start $unit"; systemctl status "$unit" --no-pager; finish; fi

# The root helper (unit-helper.sh): the VMM asks it for each action.
sh /vmtest/unit-helper.sh "$unit" "$ctl" &
helper=$!
while [ ! -p "$ctl/reply" ]; do sleep 0.1; done

stored=$(systemctl show -p NFileDescriptorStore --value "$unit")
echo "== fd store of $unit before the devices: $stored descriptor(s)"
[ "$stored" = 2 ] && ok "the two listening sockets are in the fd store" || bad "the fd store holds $stored descriptors before any device, not 2 (the listeners)"

echo "== vtdbridge-sim vm-test --unit soak, as user vmm ($(id vmm))"
# shellcheck disable=SC2086
setpriv --reuid=vmm --regid=vmm --init-groups \
    vtdbridge-sim vm-test --unit soak --unit-control "$ctl" \
    --soak-kills "${SOAK_KILLS:-20}" --unit-restarts "${UNIT_RESTARTS:-20}" --in-flight-kills "${INFLIGHT_KILLS:-5}" ${SOAK_SEED:+--soak-seed "$SOAK_SEED"}
status=$?
[ "$status" -eq 0 ] && ok "the VMM's scenarios under $unit" || bad "the VMM's scenarios under $unit (exit $status)"

stored=$(systemctl show -p NFileDescriptorStore --value "$unit")
restarts=$(systemctl show -p NRestarts --value "$unit")
echo "== $unit: $stored stored descriptor(s), $restarts automatic restart(s)"
[ "$stored" = 10 ] && ok "two listeners and two devices (container, group, device, journal) are in the fd store" \
    || bad "the fd store holds $stored descriptors, not 10"

echo quit > "$ctl/request"
read -r _ < "$ctl/reply"
wait "$helper"

# Stop: the VM is going away.
since=$(date '+%Y-%m-%d %H:%M:%S')
if systemctl stop "$unit"; then ok "systemctl stop $unit"; else bad "systemctl stop $unit"; fi
result=$(systemctl show -p Result --value "$unit")
[ "$result" = success ] && ok "stopped with result success" || bad "stopped with result $result"
stored=$(systemctl show -p NFileDescriptorStore --value "$unit")
[ "$stored" = 0 ] && ok "the fd store is empty after the stop" || bad "the fd store holds $stored descriptors after the stop"
if journalctl -u "$unit" -o cat --since "$since" --no-pager | grep -q "stopped: the VM is going away; every mapping was unmapped and the fd store released"; then
    ok "the daemon said it unmapped everything and released the store"
else
    bad "no 'the VM is going away' line in the journal"
fi
[ ! -e /run/vtd-bridge/soak ] && ok "the runtime directory is gone" || bad "/run/vtd-bridge/soak is still there after the stop"

# systemd 252 after stop: a start begins from nothing (the store was
# dropped); the recorded attachments are attached anew, not adopted.
if systemctl start "$unit"; then
    stored=$(systemctl show -p NFileDescriptorStore --value "$unit")
    adopted=$(vtdbridgectl status --socket /run/vtd-bridge/soak/control.sock --json | grep -o '"restart": *{[^}]*}' | grep -o '"devices": *[0-9]*' | grep -o '[0-9]*$')
    echo "== after stop and start: $stored stored descriptor(s), $adopted device(s) adopted"
    [ "$stored" = 10 ] && [ "$adopted" = 0 ] && ok "stop then start: nothing adopted, the recorded devices attached anew and stored" \
        || bad "stop then start: $stored stored descriptors (10 expected: listeners, devices attached anew), $adopted adopted (0 expected)"
    systemctl stop "$unit"
else
    bad "systemctl start $unit after the stop"
fi
finish
