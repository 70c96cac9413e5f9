#!/usr/bin/env bash
# Builds (or reuses) the Debian root filesystem of the kubedirect node image with debootstrap from the
# configured Debian mirror, cached as a tarball keyed by the suite and package list.
# Prints the tarball's path on its last line. Env: KUBEDIRECT_CACHE (default ~/.cache/kubedirect),
# DEBIAN_MIRROR (default: the first URI of /etc/apt/sources.list.d/debian.sources, else deb.debian.org).
set -euo pipefail
CACHE=${KUBEDIRECT_CACHE:-$HOME/.cache/kubedirect}
SUITE=bookworm
# systemd as PID 1, containerd + runc for the pods, and the tools kubelet, kubeadm and the dataplane's
# debugging expect on a node (bpftool dumps the agent's pinned maps in collected logs).
PACKAGES=systemd,systemd-sysv,dbus,libseccomp2,containerd,runc,iproute2,iptables,nftables,conntrack,ebtables,ethtool,socat,kmod,util-linux,mount,procps,ca-certificates,bpftool,jq,curl,iputils-ping,tcpdump,less

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
mirror=${mirror:-http://deb.debian.org/debian}

key=$(printf '%s %s' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-12)
out="$CACHE/nodeimage/base-$SUITE-$key.tar"
mkdir -p "$CACHE/nodeimage"
exec 9>"$CACHE/nodeimage/.base.lock"
flock 9
if [ ! -s "$out" ]; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  dir=$(mktemp -d "$CACHE/nodeimage/debootstrap.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
  echo "nodeimage: debootstrap $SUITE from $mirror into $dir" >&2
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$dir" "$mirror" >"$dir.log" 2>&1 || {
    tail -30 "$dir.log" >&2; exit 1; }
  rm -f "$dir.log"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar --numeric-owner --xattrs -C "$dir" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
fi
echo "$out"
