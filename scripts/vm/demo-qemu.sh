#!/bin/sh
# In-VM: make demo-qemu. A few of the QEMU scenarios as a readable
# transcript: the daemon's and QEMU's command lines, what the guest mapped,
# what the daemon holds in the kernel after each step, and each DMA checked.
QEMU_TEST_ARGS="map-dma unmap large-page qemu-restart" exec sh /vmtest/qemu-vfio-user.sh
