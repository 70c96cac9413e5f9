#!/bin/sh
# ExecStartPre of kubelet: make sure the cgroups kubelet's cgroupRoot (/kubelet, /kubelet.slice)
# needs exist.
set -eu
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  # cgroup v2: delegate every available controller down to /kubelet and /kubelet.slice
  delegate() { sed -e 's/^/+/' -e 's/ / +/g' "/sys/fs/cgroup$1/cgroup.controllers" >"/sys/fs/cgroup$1/cgroup.subtree_control"; }
  delegate ""
  for g in /kubelet /kubelet.slice; do
    mkdir -p "/sys/fs/cgroup$g"
    delegate "$g"
  done
else
  # cgroup v1: the entrypoint made them in each controller; systemd's own hierarchy may come later
  [ -d /sys/fs/cgroup/systemd/kubelet ] || mkdir -p /sys/fs/cgroup/systemd/kubelet
fi
