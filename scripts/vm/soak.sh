#!/bin/sh
# In-VM: the kill-soak on its own (docs/RELIABILITY.md, "Crash and restart"):
# SIGKILL vtdbridged at random points under a map/unmap/remap stream, restart
# it, reconnect, check. `make vm-test` runs it with the other scenarios; this
# script is for repeating a seed or soaking longer:
#
#   scripts/vm/run --edu 3 --timeout 900 scripts/vm/soak.sh
#
# Settings come from /vmtest/soak.env when present (put it there with
# `--add FILE:/vmtest/soak.env`), e.g.
#
#   SOAK_SEED=1234        the seed a failed run printed (default: random)
#   SOAK_KILLS=100        SIGKILLs (default 20)
#   SOAK_SCENARIOS=       vm-test scenarios to run (default kill-soak; empty: all)
#   SOAK_ARGS=--leave-for-walk   more vm-test options
#
# Binaries under /soak/bin (vtdbridge-sim, vtdbridged), added with
# `--add PATH:/soak/bin/NAME`, take the place of the image's own.
set -e
SOAK_SCENARIOS=kill-soak
[ ! -f /vmtest/soak.env ] || . /vmtest/soak.env
sim=/bin/vtdbridge-sim
daemon=/bin/vtdbridged
[ ! -x /soak/bin/vtdbridge-sim ] || sim=/soak/bin/vtdbridge-sim
[ ! -x /soak/bin/vtdbridged ] || daemon=/soak/bin/vtdbridged
echo "soak.sh: $sim, daemon $daemon"
# shellcheck disable=SC2086 # SOAK_ARGS and SOAK_SCENARIOS are lists
exec "$sim" vm-test --daemon "$daemon" ${SOAK_SEED:+--soak-seed "$SOAK_SEED"} ${SOAK_KILLS:+--soak-kills "$SOAK_KILLS"} ${SOAK_ARGS:-} $SOAK_SCENARIOS
