#!/bin/sh
# In-VM (scripts/vm/run --qemu --add .cache/vm/kernel/vmlinux:/l2/vmlinux):
# the whole real stack. vtdbridged serves the VM's real edu over vfio-user
# to QEMU 11.1, which boots a second Linux (L2, nested TCG) with a
# caching-mode intel-iommu. In L2, the edu (vfio-user-pci) is bound to
# vfio-pci and `vtdbridge-sim edu-dma` maps two buffers through L2's own
# intel-iommu driver and DMAs RAM → edu → RAM: L2's driver invalidates,
# QEMU sends DMA_MAP, the daemon maps in the VM's VFIO container, and the
# real edu's DMA lands in L2's buffer. Prints how long L2 took to boot.
set -u
up() { read -r s _ < /proc/uptime; echo "$s"; }
read -r addr group < /run/vmtest-edu || { echo "l2: no edu device"; exit 1; }
[ -f /l2/vmlinux ] || { echo "l2: no /l2/vmlinux (run with --add .cache/vm/kernel/vmlinux:/l2/vmlinux)"; exit 1; }
dir=/run/vu
mkdir -p "$dir"
/bin/vtdbridged --backend vfio --event-socket "$dir/event.sock" --control-socket "$dir/control.sock" \
    --state-directory "$dir/state" --device "group:$group=00:03.0,vfio-user=$dir/edu0.sock" > "$dir/daemon.log" 2>&1 &
dpid=$!
for _ in $(seq 100); do /bin/vtdbridgectl status --socket "$dir/control.sock" > /dev/null 2>&1 && break; sleep 0.1; done

# L2's initramfs, from this VM's own files: busybox, the VFIO modules,
# vtdbridge-sim and its libraries.
root=/tmp/l2root
mkdir -p $root/bin $root/lib/modules $root/lib/x86_64-linux-gnu $root/lib64 $root/proc $root/sys $root/dev $root/tmp
cp /bin/busybox /bin/vtdbridge-sim $root/bin/
cp /lib/modules/*.ko /lib/modules/modules.load $root/lib/modules/
for l in /lib/x86_64-linux-gnu/*.so* /lib64/ld-linux-x86-64.so.2; do [ -e "$l" ] && cp "$l" "$root$l"; done
cat > $root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
read -r s _ < /proc/uptime; echo "L2-INIT uptime $s"
# L2's VT-d has no interrupt remapping (intremap=off: QEMU's needs a split
# irqchip), and type1 refuses such a host with EPERM unless told that
# unisolated MSIs are acceptable: a test guest, so they are.
while read -r ko; do
    case "$ko" in
        vfio_iommu_type1.ko) insmod "/lib/modules/$ko" allow_unsafe_interrupts=1 ;;
        *) insmod "/lib/modules/$ko" ;;
    esac
done < /lib/modules/modules.load
for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor)" = 0x1234 ] && [ "$(cat $d/device)" = 0x11e8 ] || continue
    a=${d##*/}
    echo vfio-pci > $d/driver_override; echo $a > /sys/bus/pci/drivers_probe
    g=$(readlink $d/iommu_group); g=${g##*/}
    i=0; while [ ! -c /dev/vfio/$g ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    ulimit -l unlimited
    /bin/vtdbridge-sim edu-dma --pci $a --rounds 2 && echo "L2-RESULT pass" || echo "L2-RESULT fail"
done
poweroff -f
INIT
chmod +x $root/init
(cd $root && find . | cpio -o -H newc > /tmp/l2.cpio 2>/dev/null)
echo "l2: initramfs $(wc -c < /tmp/l2.cpio) bytes"

t0=$(up)
set -- -machine q35,memory-backend=m0 -accel tcg -smp 1 -m 512M -nodefaults -display none -no-reboot \
    -object memory-backend-memfd,id=m0,size=512M,share=on \
    -device intel-iommu,caching-mode=on,intremap=off,aw-bits=39 \
    -device "{\"driver\":\"vfio-user-pci\",\"addr\":\"03.0\",\"x-msg-timeout\":120000,\"socket\":{\"type\":\"unix\",\"path\":\"$dir/edu0.sock\"}}" \
    -kernel /l2/vmlinux -initrd /tmp/l2.cpio -serial stdio \
    -append "console=ttyS0 intel_iommu=on quiet panic=-1 cryptomgr.notests"
echo "qemu-system-x86_64 $*"
# L2's console: from its init on, every line (its kernel is quiet before).
timeout 1500 qemu-system-x86_64 "$@" < /dev/null 2>&1 | while IFS= read -r line; do
    echo "[L1 +$(echo "$t0 $(up)" | awk '{printf "%.1f", $2 - $1}') s] $line"
done
t1=$(up)
echo "l2: QEMU start to L2 power-off: $(echo "$t0 $t1" | awk '{printf "%.1f", $2 - $1}') s"
/bin/vtdbridgectl status --socket "$dir/control.sock"
kill "$dpid"; wait "$dpid"
