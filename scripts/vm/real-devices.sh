#!/bin/sh
# In-VM: the real-device scenarios (README "Real devices"): vtdbridged on
# the vfio backend, edu devices behind vfio-pci, vtdbridge-sim as the VMM
# and its guest. The last lines are WALK-* (for the host's check of the VM
# kernel's own page tables) and "vmtest: N passed, N failed".
exec /bin/vtdbridge-sim vm-test --leave-for-walk
