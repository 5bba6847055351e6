#!/bin/sh
# In-VM: the demo. vtdbridged bridges a simulated guest's DMA to real edu
# devices: what the guest mapped, what the daemon did in the kernel, and the
# DMA bytes verified. (make demo)
exec /bin/vtdbridge-sim vm-test two-devices-two-domains unmap isolation large-pages replay
