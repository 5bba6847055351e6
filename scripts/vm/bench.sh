#!/bin/sh
# In-VM: the real-VFIO figures of make bench (BENCH-ROW lines).
exec /bin/vtdbridge-sim vm-bench
