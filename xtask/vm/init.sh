#!/bin/sh
# The guest's /init (busybox ash), written by `cargo xtask vm-test`: mounts
# what the probe and the lab need, loads the modules in the order the host
# computed, runs /run.sh under the host's bash and powers off. The markers
# (VMTEST-*) are what the host reads from the serial console.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mkdir -p /run/netns
echo "VMTEST-INIT uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"
# For request_module (sock_diag families, nft expressions) as well.
echo /sbin/modprobe > /proc/sys/kernel/modprobe
while read -r m; do
  insmod "/lib/modules/$(uname -r)/$m" 2>/tmp/insmod.err || {
    grep -q 'File exists' /tmp/insmod.err || echo "VMTEST-MODFAIL $m $(cat /tmp/insmod.err)"
  }
done < /lib/modules/load.list
ip link set lo up
echo "VMTEST-READY uptime=$(cut -d' ' -f1 /proc/uptime) btf=$([ -e /sys/kernel/btf/vmlinux ] && echo yes || echo no)"
cd /opt
/usr/sbin/bash /run.sh
rc=$?
echo "VMTEST-EXIT rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
