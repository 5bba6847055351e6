#!/bin/sh
# In-VM (systemd profile), as root: acts on a unit for an unprivileged
# client (the simulating VMM, QEMU's test driver), which cannot run
# systemctl itself. Usage:
#
#   sh unit-helper.sh UNIT DIR &     then clients write to DIR/request
#
# DIR/request (mode 0620) and DIR/reply (0640) are FIFOs of group kvm. One
# request line, one reply line (SystemdUnitHandle.swift has the protocol):
#   kill | sigkill PID | restart | upgrade | exe | stop | quit
# The reply is "ok T …" with T the CLOCK_REALTIME in ns just after the kill
# was sent or the restart job queued, or "error TEXT".
set -u
unit=$1
ctl=$2
rm -rf "$ctl"
mkdir -p "$ctl"
mkfifo "$ctl/request" "$ctl/reply"
chgrp kvm "$ctl" "$ctl/request" "$ctl/reply"
chmod 0750 "$ctl"
chmod 0620 "$ctl/request"
chmod 0640 "$ctl/reply"
upgrades=0
while :; do
    read -r cmd arg < "$ctl/request" || continue
    # T: when the kill was sent or the restart job queued, so that
    # kill-to-READY counts the daemon and systemd, not the seconds a
    # systemctl takes to start under TCG.
    case "$cmd" in
        kill) systemctl kill -s KILL "$unit" && r="ok $(date +%s%N)" || r="error systemctl kill" ;;
        sigkill) kill -KILL "$arg" && r="ok $(date +%s%N)" || r="error kill -KILL $arg" ;;
        restart) systemctl restart --no-block "$unit" && r="ok $(date +%s%N)" || r="error systemctl restart" ;;
        upgrade)
            # A new binary: another file (a new inode) with different
            # contents, installed by rename as a package manager does.
            upgrades=$((upgrades + 1))
            cp /usr/local/bin/vtdbridged /usr/local/bin/.vtdbridged.new &&
                printf '\nvtd-bridge test upgrade %s\n' "$upgrades" >> /usr/local/bin/.vtdbridged.new &&
                mv -f /usr/local/bin/.vtdbridged.new /usr/local/bin/vtdbridged
            systemctl restart --no-block "$unit" && r="ok $(date +%s%N)" || r="error systemctl restart after the upgrade" ;;
        exe)
            t0=$(date +%s%N)
            pid=$(systemctl show -p MainPID --value "$unit")
            r="ok $t0 $(stat -L -c %i "/proc/$pid/exe") $(stat -c %i /usr/local/bin/vtdbridged)" ;;
        stop) t0=$(date +%s%N); systemctl stop "$unit" && r="ok $t0" || r="error systemctl stop" ;;
        quit) echo "ok 0" > "$ctl/reply"; break ;;
        *) r="error unknown request '$cmd'" ;;
    esac
    echo "$r" > "$ctl/reply"
done
