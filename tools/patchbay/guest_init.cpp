#include "guest_init.hpp"

namespace patchbay::cli {

// Everything is mounted here, before switch_root, because busybox is already paged in: the
// first exec of every new binary costs 0.1-1 s under TCG. Messages go to the serial console,
// which the runner shows when the guest ends without an exit code.
std::string_view guest_init_script() {
  return R"INIT(#!/bin/sh
export PATH=/bin
fail() { echo "patchbay-vm-init: $*"; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod "/mod/$m" || echo "patchbay-vm-init: insmod $m failed"; done < /mod/order
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower \
  || fail "mounting the host root (9p tag hostroot) failed"
mount -t tmpfs -o size=50% tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
  || fail "the overlay on the host root failed"
R=/newroot
mount --move /proc $R/proc
mount --move /sys $R/sys
mount --move /dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
# /tmp stays the host's (through the overlay, writes stay in the guest); /run is the guest's own.
mount -t tmpfs tmpfs $R/run
mkdir -p $R/run/patchbay
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 pbrun $R/run/patchbay \
  || fail "mounting the run directory (9p tag pbrun) failed"
. $R/run/patchbay/mounts.sh
# Ports appear once the host side has announced them; udev would name them, we do it here.
mkdir -p $R/dev/virtio-ports
n=0
while :; do
  for p in $R/sys/class/virtio-ports/*; do
    [ -e "$p/name" ] && ln -sf "../${p##*/}" "$R/dev/virtio-ports/$(cat "$p/name")"
  done
  [ -e $R/dev/virtio-ports/org.patchbay.stdout ] && [ -e $R/dev/virtio-ports/org.patchbay.stderr ] && break
  n=$((n + 1))
  [ $n -gt 500 ] && fail "the output ports never appeared"
  sleep 0.01
done
ip link set lo up
hostname patchbay-vm
echo "patchbay-vm-init: starting /run/patchbay/cmd.sh"
exec switch_root $R /bin/sh /run/patchbay/cmd.sh
)INIT";
}

}  // namespace patchbay::cli
