#!/bin/sh
# In-VM, systemd profile (scripts/vm/run --systemd --qemu --edu 2; make
# vm-systemd-test): vtdbridged as systemd runs it, with the unit and the
# example config exactly as `make install` put them, every hardening option
# on, against real VFIO; the VMM, QEMU and the operator as the non-root
# users the root has for them (vmm and operator, both in group kvm).
#
# Each check prints "ok: …" or "FAIL: …"; the last line is
# "systemd: N passed, N failed", and the exit status is 1 if any failed.
# What a failure needs for its diagnosis (systemctl status, the journal,
# the tool's output) is printed with it.
set -u

passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }

as_vmm() { setpriv --reuid=vmm --regid=vmm --init-groups -- "$@"; }
as_operator() { setpriv --reuid=operator --regid=operator --init-groups -- "$@"; }
# nobody: not in kvm, no supplementary group at all.
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }

# mode_owner PATH: "660 root:kvm"
mode_owner() { stat -c '%a %U:%G' "$1" 2>/dev/null || echo "missing"; }

# diagnose UNIT: what a failed check about UNIT needs.
diagnose() {
    systemctl status --no-pager --full "$1" 2>&1 | head -n 30
    echo "-- journalctl -u $1 (last 40 lines)"
    journalctl -u "$1" -o cat --no-pager 2>&1 | tail -n 40
}

# write_config NAME DEVICE: /etc/vtd-bridge/NAME.json from the installed
# example: its own name, sockets and state directory, and DEVICE as the
# only device (the example's two PCI addresses do not exist here).
# control.group and access.gids stay as the example has them: kvm.
write_config() {
    sed -e "s|vm0|$1|g" \
        -e "/\"devices\": \[/,/\]/c\\  \"devices\": [\"$2\"]," \
        /etc/vtd-bridge/vtdbridged.json.example > "/etc/vtd-bridge/$1.json"
}

echo "== the systemd profile"
systemctl --version | head -n 1
systemd-analyze time 2>&1 | head -n 2
exec 3< /run/vmtest-edu
read -r addr0 group0 <&3 || { echo "systemd-service: no edu device"; echo "systemd: 0 passed, 1 failed"; exit 1; }
read -r addr1 group1 <&3 || { addr1=""; group1=""; }
exec 3<&-
echo "edu $addr0 (group $group0) for vm0; edu ${addr1:-none} (group ${group1:-none}) for vm1"
unit_file=/usr/local/lib/systemd/system/vtdbridged@.service

# --- 1. start vtdbridged@vm0 as installed ---------------------------------------
echo
echo "== systemctl start vtdbridged@vm0"
write_config vm0 "group:$group0=00:03.0"
echo "/etc/vtd-bridge/vm0.json:"; cat /etc/vtd-bridge/vm0.json
grep -q '"group": "kvm"' /etc/vtd-bridge/vm0.json && grep -q '"gids": \["kvm"\]' /etc/vtd-bridge/vm0.json \
    || bad "the example config no longer names group kvm for the sockets and for access"
t0=$(cut -d' ' -f1 /proc/uptime)
systemctl start vtdbridged@vm0
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
state=$(systemctl is-active vtdbridged@vm0)
fragment=$(systemctl show -P FragmentPath vtdbridged@vm0)
dropins=$(systemctl show -P DropInPaths vtdbridged@vm0)
type=$(systemctl show -P Type vtdbridged@vm0)
status_text=$(systemctl show -P StatusText vtdbridged@vm0)
echo "systemctl start: exit $rc after $(echo "$t0 $t1" | awk '{printf "%.2f", $2 - $1}') s; $state; Type=$type; unit $fragment; drop-ins: ${dropins:-none}; STATUS=$status_text"
if [ "$rc" -eq 0 ] && [ "$state" = active ] && [ "$type" = notify ] && [ "$fragment" = "$unit_file" ] && [ -z "$dropins" ]; then
    ok "systemctl start vtdbridged@vm0: active after READY=1 (Type=notify), the unit as installed ($fragment, no drop-in)"
else
    bad "systemctl start vtdbridged@vm0: exit $rc, $state, Type=$type, unit $fragment, drop-ins '${dropins}'"
    diagnose vtdbridged@vm0
fi

# --- 2. the sockets -------------------------------------------------------------
echo
echo "== the sockets"
ls -l /run/vtd-bridge/vm0/ 2>&1
ev=$(mode_owner /run/vtd-bridge/vm0/event.sock)
ctl=$(mode_owner /run/vtd-bridge/vm0/control.sock)
if [ "$ev" = "660 root:kvm" ] && [ "$ctl" = "660 root:kvm" ]; then
    ok "event.sock and control.sock are 0660 root:kvm"
else
    bad "event.sock is '$ev', control.sock is '$ctl'; expected '660 root:kvm'"
fi

# --- 3. the VMM as user vmm ------------------------------------------------------
echo
echo "== the simulating VMM as vmm ($(id vmm))"
# The scripted scenarios over the event channel, then edu-dma: the device fd
# from the control socket and real edu DMA through the guest's mappings.
as_vmm vtdbridge-sim scenario --name vm0 --device 00:03.0 --ram 64M map unmap remap replay reconnect edu-dma > /tmp/vmm.out 2>&1
rc=$?
cat /tmp/vmm.out
if [ "$rc" -eq 0 ] && grep -q "edu DMA RAM → device → RAM moved exactly" /tmp/vmm.out \
    && grep -q "did not reach guest memory" /tmp/vmm.out; then
    ok "vtdbridge-sim as vmm (not root, group kvm): 6 scenarios, edu DMA through the guest's mapping moved the expected bytes, and none after the unmap"
else
    bad "vtdbridge-sim as vmm exited $rc"
    diagnose vtdbridged@vm0
fi

# --- 4. the operator --------------------------------------------------------------
echo
echo "== vtdbridgectl as operator ($(id operator)), and as nobody ($(id nobody))"
as_operator vtdbridgectl status --name vm0 > /tmp/operator.out 2>&1
rc=$?
cat /tmp/operator.out
if [ "$rc" -eq 0 ] && grep -q "00:03.0" /tmp/operator.out; then
    ok "vtdbridgectl status --name vm0 as operator"
else
    bad "vtdbridgectl status --name vm0 as operator exited $rc"
fi
as_nobody vtdbridgectl status --name vm0 > /tmp/nobody.out 2>&1
rc=$?
cat /tmp/nobody.out
if [ "$rc" -eq 2 ] && grep -q "Permission denied" /tmp/nobody.out && grep -q "join its group" /tmp/nobody.out; then
    ok "vtdbridgectl as nobody (not in kvm) is refused: exit 2, 'Permission denied' and what to do"
else
    bad "vtdbridgectl as nobody: exit $rc (expected 2, with 'Permission denied' and a hint)"
fi

# --- 4b. systemctl reload ---------------------------------------------------------
# The unit's ExecReload sends SIGHUP; the daemon reads vm0.json again. On
# systemd 252 `systemctl reload` can return before the daemon's READY=1, so
# each check waits for the daemon's own report in the journal.
echo
echo "== systemctl reload vtdbridged@vm0"
# wait_journal UNIT TEXT N: until the unit's journal has TEXT at least N times (10 s at most).
wait_journal() {
    i=0
    while [ "$i" -lt 50 ]; do
        [ "$(journalctl -u "$1" -o cat --no-pager 2>/dev/null | grep -c "$2")" -ge "$3" ] && return 0
        sleep 0.2; i=$((i + 1))
    done
    return 1
}
# wait_active UNIT: until it is active again, not reloading (5 s at most).
wait_active() {
    i=0
    while [ "$i" -lt 25 ] && [ "$(systemctl is-active "$1")" != active ]; do sleep 0.2; i=$((i + 1)); done
    systemctl is-active "$1"
}
pid_before=$(systemctl show -P MainPID vtdbridged@vm0)
cp /etc/vtd-bridge/vm0.json /tmp/vm0.start.json
devices="group:$group0=00:03.0"
[ -z "$addr1" ] || devices="$devices\", \"group:$group1=00:04.0"
write_config vm0 "$devices"
sed -i -e 's/"level": "info"/"level": "debug"/' -e 's/"mapping-quota": 262144/"mapping-quota": 131072/' /etc/vtd-bridge/vm0.json
vtdbridged --config /etc/vtd-bridge/vm0.json --name vm0 --check-config > /tmp/check.out 2>&1
crc=$?
cat /tmp/check.out
systemctl reload vtdbridged@vm0
rc=$?
wait_journal vtdbridged@vm0 "configuration reloaded" 1
state=$(wait_active vtdbridged@vm0)
pid_after=$(systemctl show -P MainPID vtdbridged@vm0)
vtdbridgectl status --name vm0 --json > /tmp/reload.json 2>&1
level=$(vtdbridgectl log-level --name vm0 2>&1)
journalctl -u vtdbridged@vm0 -o cat --no-pager | grep "configuration reloaded" | tail -n 1
echo "check-config exit $crc; systemctl reload: exit $rc, $state, MainPID $pid_before → $pid_after; $level; STATUS=$(systemctl show -P StatusText vtdbridged@vm0)"
if [ "$crc" -eq 0 ] && grep -q "configuration OK: name vm0, backend vfio" /tmp/check.out \
    && [ "$rc" -eq 0 ] && [ "$state" = active ] && [ "$pid_before" = "$pid_after" ] \
    && grep -q '"outcome":"applied"' /tmp/reload.json && grep -q 'log.level: info → debug' /tmp/reload.json \
    && grep -q 'mapping-quota: 262144 → 131072' /tmp/reload.json && [ "$level" = "log level: debug" ] \
    && { [ -z "$addr1" ] || grep -q "\"guest\":\"00:04.0\",\"host\":\"group:$group1\"" /tmp/reload.json; } \
    && journalctl -u vtdbridged@vm0 -o cat --no-pager | grep -q "configuration reloaded: log.level: info → debug; mapping-quota: 262144 → 131072"; then
    ok "systemctl reload vtdbridged@vm0: the same process, active, applied log.level and mapping-quota${addr1:+ and attached edu $addr1 as 00:04.0}; the journal has the report"
else
    bad "systemctl reload vtdbridged@vm0: check-config exit $crc, reload exit $rc, $state, MainPID $pid_before → $pid_after, '$level'"
    cat /tmp/reload.json
    diagnose vtdbridged@vm0
fi

# A file that no longer validates: refused, the running configuration kept.
cp /etc/vtd-bridge/vm0.json /tmp/vm0.good.json
echo '{ "log": { "level": "loud" } }' > /etc/vtd-bridge/vm0.json
vtdbridged --config /etc/vtd-bridge/vm0.json --name vm0 --check-config > /tmp/check-bad.out 2>&1
crc=$?
systemctl reload vtdbridged@vm0
rc=$?
wait_journal vtdbridged@vm0 "configuration reload refused" 1
state=$(wait_active vtdbridged@vm0)
vtdbridgectl status --name vm0 --json > /tmp/refused.json 2>&1
echo "check-config exit $crc ($(cat /tmp/check-bad.out)); systemctl reload: exit $rc, $state; STATUS=$(systemctl show -P StatusText vtdbridged@vm0)"
if [ "$crc" -eq 78 ] && grep -q '"loud" is not a log level' /tmp/check-bad.out && [ "$state" = active ] \
    && grep -q '"outcome":"refused"' /tmp/refused.json && grep -q '"guest":"00:03.0"' /tmp/refused.json \
    && [ "$(vtdbridgectl log-level --name vm0 2>&1)" = "log level: debug" ]; then
    ok "an invalid vm0.json: --check-config exits 78, the reload is refused, the unit stays active with its devices and log level"
else
    bad "an invalid vm0.json: check-config exit $crc, reload exit $rc, $state"
    cat /tmp/refused.json
    diagnose vtdbridged@vm0
fi

# Back to the start's configuration: the second device is detached (vm1 needs it below).
cp /tmp/vm0.start.json /etc/vtd-bridge/vm0.json
systemctl reload vtdbridged@vm0
wait_journal vtdbridged@vm0 "configuration reloaded" 2
state=$(wait_active vtdbridged@vm0)
vtdbridgectl status --name vm0 --json > /tmp/back.json 2>&1
if [ "$state" = active ] && grep -q '"guest":"00:03.0"' /tmp/back.json && ! grep -q '"guest":"00:04.0"' /tmp/back.json \
    && [ "$(vtdbridgectl log-level --name vm0 2>&1)" = "log level: info" ] \
    && { [ -z "$addr1" ] || journalctl -u vtdbridged@vm0 -o cat --no-pager | grep -q "devices: detached 00:04.0"; }; then
    ok "reloading the start's vm0.json again: ${addr1:+00:04.0 detached, }log level info, 00:03.0 kept"
else
    bad "reloading the start's vm0.json again: $state"
    cat /tmp/back.json
    diagnose vtdbridged@vm0
fi

# --- 5. QEMU as vmm, against vtdbridged@vm1 over vfio-user -------------------
echo
echo "== vtdbridged@vm1 serving edu ${addr1:-none} over vfio-user; QEMU 11.1 as vmm"
if [ -z "$addr1" ] || ! command -v qemu-system-x86_64 > /dev/null; then
    bad "the QEMU check needs a second edu and QEMU 11.1 (scripts/vm/run --systemd --qemu --edu 2)"
else
    write_config vm1 "group:$group1=00:03.0,vfio-user=/run/vtd-bridge/vm1/edu0.sock"
    systemctl start vtdbridged@vm1
    rc=$?
    vu=$(mode_owner /run/vtd-bridge/vm1/edu0.sock)
    echo "systemctl start vtdbridged@vm1: exit $rc, $(systemctl is-active vtdbridged@vm1); edu0.sock: $vu"
    # The qemu-test fault witness reads the VM kernel's DMAR fault lines
    # from /dev/kmsg, which Debian's kernel keeps for CAP_SYSLOG
    # (dmesg_restrict=1): open it to the unprivileged test, not to QEMU's
    # or the daemon's benefit.
    sysctl -q -w kernel.dmesg_restrict=0
    # daemon-restart restarts vtdbridged@vm1 under the running QEMU: the
    # unprivileged test asks this root helper to (unit-helper.sh).
    sh /vmtest/unit-helper.sh vtdbridged@vm1 /run/vtdtest-vm1 &
    helper=$!
    while [ ! -p /run/vtdtest-vm1/reply ]; do sleep 0.1; done
    as_vmm vtdbridge-sim qemu-test --device vfio-user:/run/vtd-bridge/vm1/edu0.sock \
        --control-socket /run/vtd-bridge/vm1/control.sock --directory /tmp/vmm-qtest \
        --unit vm1 --unit-control /run/vtdtest-vm1 map-dma unmap daemon-restart > /tmp/qemu.out 2>&1
    qrc=$?
    echo quit > /run/vtdtest-vm1/request
    read -r _ < /run/vtdtest-vm1/reply
    wait "$helper"
    sysctl -q -w kernel.dmesg_restrict=1
    cat /tmp/qemu.out
    if [ "$rc" -eq 0 ] && [ "$vu" = "660 root:kvm" ] && [ "$qrc" -eq 0 ] && grep -qE "^qemu-test: [1-9][0-9]* passed, 0 failed" /tmp/qemu.out; then
        ok "QEMU 11.1 as vmm drove vtdbridged@vm1's edu over vfio-user (socket 0660 root:kvm): $(grep -E '^qemu-test: ' /tmp/qemu.out | tail -n 1)"
    else
        bad "QEMU as vmm against vtdbridged@vm1: start exit $rc, socket '$vu', qemu-test exit $qrc"
        diagnose vtdbridged@vm1
        for f in /tmp/vmm-qtest/qemu-*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }; done
    fi
    systemctl stop vtdbridged@vm1
fi

# --- 6. stop ------------------------------------------------------------------------
echo
echo "== systemctl stop vtdbridged@vm0"
systemctl stop vtdbridged@vm0
rc=$?
state=$(systemctl is-active vtdbridged@vm0)
result=$(systemctl show -P Result vtdbridged@vm0)
main_status=$(systemctl show -P ExecMainStatus vtdbridged@vm0)
left=$(ls /run/vtd-bridge/vm0/*.sock 2>/dev/null)
echo "systemctl stop: exit $rc; $state; Result=$result; the daemon's exit status $main_status; sockets left: ${left:-none}"
if [ "$rc" -eq 0 ] && [ "$state" = inactive ] && [ "$result" = success ] && [ "$main_status" = 0 ] && [ -z "$left" ]; then
    ok "systemctl stop vtdbridged@vm0: exit 0, inactive, the daemon exited 0, no socket left"
else
    bad "systemctl stop vtdbridged@vm0: exit $rc, $state, Result=$result, status $main_status, sockets left: $left"
    diagnose vtdbridged@vm0
fi

# --- 7. the journal -----------------------------------------------------------------
echo
units="vtdbridged@vm0"
[ -z "$addr1" ] || units="$units vtdbridged@vm1"
echo "== the journal of $units"
journalctl -u vtdbridged@vm0 -o cat --no-pager > /tmp/journal.out 2>&1
: > /tmp/journals.out
for u in $units; do journalctl -u "$u" -o cat --no-pager >> /tmp/journals.out 2>&1; done
# Error level: systemd's own lines about the units and the daemon's, which
# reach the journal natively at their priority (JournalLogging), or as
# swift-log's stream lines ("<time> <level> <label>: …") if the daemon ever
# fell back to plain stderr. The refusal provoked in 4b is expected.
errors=$( (for u in $units; do journalctl -u "$u" -p err -o cat --no-pager; done; grep -E '^[^ ]+ (error|critical) ' /tmp/journals.out) 2>&1 \
    | grep -v "configuration reload refused")
if [ -z "$errors" ]; then
    ok "the journal of $units has no error-level line"
else
    bad "the journal of $units has error-level lines:"
    echo "$errors"
fi
if grep -q "Failed to set thread priority" /tmp/journals.out; then
    bad "the journal of $units has 'Failed to set thread priority' lines ($(grep -c "Failed to set thread priority" /tmp/journals.out))"
else
    ok "the journal of $units has no 'Failed to set thread priority' line"
fi

# The daemon's entries are native: each at its priority, with its metadata
# as fields (journalctl -o json prints one entry per line).
journalctl -u vtdbridged@vm0 -o json --no-pager > /tmp/journal.json 2>&1
attached=$(grep -E '"MESSAGE" ?: ?"attached ' /tmp/journal.json | head -n 1)
refused=$(grep -E '"MESSAGE" ?: ?"configuration reload refused' /tmp/journal.json | head -n 1)
echo "the 'attached' entry: $attached"
if echo "$attached" | grep -qE '"PRIORITY" ?: ?"6"' && echo "$attached" | grep -qE '"DEVICE" ?: ?"00:03.0"' \
    && echo "$attached" | grep -qE '"SYSLOG_IDENTIFIER" ?: ?"vtdbridged"' && echo "$attached" | grep -qE '"CODE_FUNC" ?: ?"' \
    && echo "$refused" | grep -qE '"PRIORITY" ?: ?"3"' \
    && [ -n "$(journalctl -u vtdbridged@vm0 -p err -o cat --no-pager | grep "configuration reload refused")" ] \
    && [ -n "$(journalctl -u vtdbridged@vm0 DEVICE=00:03.0 -o cat --no-pager)" ]; then
    ok "journal entries are native: 'attached' at PRIORITY=6 with DEVICE=00:03.0, SYSLOG_IDENTIFIER and CODE_FUNC; the refused reload at PRIORITY=3 (journalctl -p err)"
else
    bad "journal entries lack their priority or fields: attached '$attached', refused '$refused'"
    tail -n 5 /tmp/journal.json
fi

# --- 8. systemd-analyze security --------------------------------------------------
echo
echo "== systemd-analyze security vtdbridged@vm0.service"
systemd-analyze security --no-pager vtdbridged@vm0.service > /tmp/security.out 2>&1
rc=$?
cat /tmp/security.out
exposure=$(sed -n 's/.*Overall exposure level for vtdbridged@vm0.service: \([0-9.]*\).*/\1/p' /tmp/security.out)
if [ -n "$exposure" ] && echo "$exposure" | awk '{ exit !($1 <= 2.0) }'; then
    ok "systemd-analyze security: overall exposure $exposure (at most 2.0)"
else
    bad "systemd-analyze security exited $rc with exposure '${exposure:-none}' (at most 2.0 expected)"
fi

echo
echo "== journalctl -u vtdbridged@vm0 -o cat"
cat /tmp/journal.out
if [ -n "$addr1" ]; then
    echo "== journalctl -u vtdbridged@vm1 -o cat"
    journalctl -u vtdbridged@vm1 -o cat --no-pager 2>&1
fi

echo
echo "systemd: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
