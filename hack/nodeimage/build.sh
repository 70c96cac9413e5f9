#!/usr/bin/env bash
# Builds, offline, a kind-compatible node image for Kubernetes $KUBE_VERSION into the Docker daemon at
# $DOCKER_HOST, or reuses it: the tag carries a hash of every input, so a second run takes seconds.
# Prints the image tag on its last line.
#
#   hack/nodeimage/build.sh            build or reuse kubedirect/node:<version>-<inputs hash>
#   hack/nodeimage/build.sh --tag      print the tag only (no build)
#
# What goes in (kind's node image contract, learnt from kind's pkg/build/nodeimage and images/base):
#   - a Debian bookworm root filesystem from debootstrap (hack/nodeimage/base.sh): systemd, Debian's
#     containerd 1.6 and runc, iptables/nftables, conntrack, bpftool and the usual tools
#   - kubelet, kubeadm, kubectl in /usr/bin, built from source by hack/build-k8s.sh
#   - in containerd's k8s.io namespace, pinned: registry.k8s.io/kube-apiserver, kube-controller-manager,
#     kube-scheduler (:$KUBE_VERSION), etcd:3.6.5-0, coredns/coredns:v1.12.1, pause:3.10.1, each built
#     from source (mkimages writes them as one docker archive)
#   - /opt/cni/bin/loopback (containernetworking/plugins); the kubedirect agent installs its own CNI
#   - /kind/version, /kind/manifests/default-storage.yaml; no default CNI manifest (kubedirect always
#     disables kind's default CNI)
#   - systemd units for containerd and kubelet (+ kubeadm's drop-in), crictl.yaml, sysctls, and
#     /usr/local/bin/entrypoint, which readies the container for systemd and kubelet
# Env: KUBE_VERSION (v1.34.4), KUBEDIRECT_CACHE (~/.cache/kubedirect), NODE_IMAGE_REPO (kubedirect/node).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
ETCD_IMAGE_TAG=3.6.5-0
COREDNS_VERSION=v1.12.1
PAUSE_TAG=3.10.1
CNI_PLUGINS_VERSION=v1.9.1
CACHE=${KUBEDIRECT_CACHE:-$HOME/.cache/kubedirect}
REPO=${NODE_IMAGE_REPO:-kubedirect/node}

log() { echo "nodeimage: $*" >&2; }
t0=$SECONDS
stage() { log "$1 ($((SECONDS - t0))s)"; }

# The tag: versions + every file of this builder + the Kubernetes build script + go.sum (mkimages).
inputs_hash() {
  {
    echo "$KUBE_VERSION $ETCD_IMAGE_TAG $COREDNS_VERSION $PAUSE_TAG $CNI_PLUGINS_VERSION $(go env GOVERSION)"
    # relative paths: the same tree gives the same tag wherever it is checked out
    (cd "$ROOT" && find hack/nodeimage -type f | LC_ALL=C sort | xargs sha256sum && sha256sum hack/build-k8s.sh)
  } | sha256sum | cut -c1-12
}
TAG="$REPO:$KUBE_VERSION-$(inputs_hash)"
if [ "${1:-}" = --tag ]; then echo "$TAG"; exit 0; fi

command -v docker >/dev/null || { log "docker CLI missing: run hack/docker.sh up first"; exit 1; }
if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "reusing $TAG"
  echo "$TAG"
  exit 0
fi
mkdir -p "$CACHE/nodeimage"
exec 9>"$CACHE/nodeimage/.build.lock"
flock 9
if docker image inspect "$TAG" >/dev/null 2>&1; then # built meanwhile by a parallel run
  echo "$TAG"
  exit 0
fi
for c in containerd ctr jq; do
  command -v $c >/dev/null || { log "$c missing (apt-get install containerd jq)"; exit 1; }
done

# --- 1. binaries (the Debian base is made meanwhile: download-bound while the builds are CPU-bound) ---
base_log=$(mktemp "$CACHE/nodeimage/base.XXXXXX.log")
"$HERE/base.sh" >"$base_log" 2>&1 &
base_pid=$!
stage "building kubelet, kubeadm, kubectl and the control plane $KUBE_VERSION (hack/build-k8s.sh)"
kbin=$(KUBE_VERSION=$KUBE_VERSION "$ROOT/hack/build-k8s.sh" kubelet kubeadm kubectl kube-apiserver \
  kube-controller-manager kube-scheduler etcd | tail -1)

tools=$CACHE/nodeimage/tools
mkdir -p "$tools"
go_install() { # go_install NAME PKG@VERSION: a static build from the module proxy, cached by version
  local out="$tools/$1-${2##*@}"
  if [ ! -x "$out" ]; then
    stage "building $2"
    local gobin
    gobin=$(mktemp -d "$tools/gobin.XXXXXX")
    GOBIN=$gobin CGO_ENABLED=0 GOFLAGS= go install -trimpath -ldflags "-s -w" "$2" >&2
    mv "$gobin"/* "$out"
    rm -rf "$gobin"
  fi
  echo "$out"
}
loopback=$(go_install loopback "github.com/containernetworking/plugins/plugins/main/loopback@$CNI_PLUGINS_VERSION")
coredns=$(go_install coredns "github.com/coredns/coredns@$COREDNS_VERSION")

work=$(mktemp -d "$CACHE/nodeimage/build.XXXXXX")
cpid=""
cleanup() {
  [ -z "$cpid" ] || kill "$cpid" 2>/dev/null || true
  [ -z "$cpid" ] || wait "$cpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause" ./hack/nodeimage/pause \
  && go build -o "$work/mkimages" ./hack/nodeimage/mkimages)

# --- 2. component images ----------------------------------------------------------------------------
stage "writing the control-plane, etcd, CoreDNS and pause images"
jq -n --arg v "$KUBE_VERSION" --arg kbin "$kbin" --arg etcd "$ETCD_IMAGE_TAG" --arg coredns "$coredns" \
  --arg cdv "$COREDNS_VERSION" --arg pause "$work/pause" --arg pv "$PAUSE_TAG" '[
  ({c: "kube-apiserver"}, {c: "kube-controller-manager"}, {c: "kube-scheduler"}) |
    {ref: "registry.k8s.io/\(.c):\($v)", files: {"/usr/local/bin/\(.c)": "\($kbin)/\(.c)"},
     entrypoint: ["/usr/local/bin/\(.c)"]},
  {ref: "registry.k8s.io/etcd:\($etcd)", files: {"/usr/local/bin/etcd": "\($kbin)/etcd"},
   entrypoint: ["/usr/local/bin/etcd"]},
  {ref: "registry.k8s.io/coredns/coredns:\($cdv)", files: {"/coredns": $coredns}, entrypoint: ["/coredns"]},
  {ref: "registry.k8s.io/pause:\($pv)", files: {"/pause": $pause}, entrypoint: ["/pause"], user: "65535:65535"}
]' | "$work/mkimages" -o "$work/images.tar"

# --- 3. root filesystem -----------------------------------------------------------------------------
if ! wait "$base_pid"; then cat "$base_log" >&2; rm -f "$base_log"; exit 1; fi
base=$(tail -1 "$base_log")
rm -f "$base_log"
stage "unpacking $(basename "$base")"
rootfs=$work/rootfs
mkdir -p "$rootfs"
tar --numeric-owner --xattrs -C "$rootfs" -xf "$base"

stage "installing binaries, units and configuration"
cp -a "$HERE/files/." "$rootfs/"
chown -R 0:0 "$rootfs/kind" "$rootfs/usr/local/bin" "$rootfs/etc/containerd" "$rootfs/etc/systemd/system" \
  "$rootfs/etc/sysctl.d" "$rootfs/etc/default" "$rootfs/etc/crictl.yaml"
install -m 0755 "$kbin/kubelet" "$kbin/kubeadm" "$kbin/kubectl" "$rootfs/usr/bin/"
install -D -m 0755 "$loopback" "$rootfs/opt/cni/bin/loopback"
mkdir -p "$rootfs/etc/kubernetes/manifests" "$rootfs/etc/cni/net.d" "$rootfs/var/lib/kubelet"
printf '%s' "$KUBE_VERSION" >"$rootfs/kind/version"

# systemd in a container: no units that need real hardware or a real boot; containerd, kubelet and our
# setup unit are the only services enabled.
rm -f "$rootfs"/lib/systemd/system/multi-user.target.wants/* "$rootfs"/etc/systemd/system/*.wants/* \
  "$rootfs"/lib/systemd/system/local-fs.target.wants/* "$rootfs"/lib/systemd/system/sockets.target.wants/*udev* \
  "$rootfs"/lib/systemd/system/sockets.target.wants/*initctl* "$rootfs"/lib/systemd/system/basic.target.wants/* \
  "$rootfs"/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service
mkdir -p "$rootfs/etc/systemd/system/multi-user.target.wants"
for u in containerd.service kubelet.service kubedirect-node-setup.service; do
  ln -sf "/etc/systemd/system/$u" "$rootfs/etc/systemd/system/multi-user.target.wants/$u"
done
for u in systemd-binfmt.service getty@tty1.service console-getty.service systemd-networkd.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$u"
done
grep -q '^ReadKMsg=no' "$rootfs/etc/systemd/journald.conf" || echo 'ReadKMsg=no' >>"$rootfs/etc/systemd/journald.conf"
[ -e "$rootfs/sbin/init" ] || ln -s /lib/systemd/systemd "$rootfs/sbin/init"
rm -f "$rootfs/etc/machine-id" && : >"$rootfs/etc/machine-id" # the entrypoint makes one per node

# --- 4. images into the node's containerd -----------------------------------------------------------
# The host runs the node's own containerd release (both are Debian bookworm's) on the rootfs'
# /var/lib/containerd; the images are imported unpacked-later (CRI unpacks on first use), then pinned
# so kubelet's image GC never removes them.
stage "importing the images into the node's containerd (k8s.io namespace)"
mkdir -p "$work/cstate"
cat >"$work/containerd.toml" <<EOF
version = 2
root = "$rootfs/var/lib/containerd"
state = "$work/cstate"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/cstate/containerd.sock"
EOF
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
cpid=$!
for _ in $(seq 60); do [ -S "$work/cstate/containerd.sock" ] && break; sleep 0.5; done
ctr_() { ctr --address "$work/cstate/containerd.sock" --namespace k8s.io "$@"; }
ctr_ images import --no-unpack "$work/images.tar" >&2
for ref in $(ctr_ images list -q); do
  ctr_ images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
done
log "images in the node: $(ctr_ images list -q | tr '\n' ' ')"
kill "$cpid"; wait "$cpid" 2>/dev/null || true; cpid=""
rm -rf "$rootfs/var/lib/containerd/tmpmounts"

# --- 5. the image -----------------------------------------------------------------------------------
stage "importing the root filesystem as $TAG"
tmp_tag="$TAG-import"
tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'ENV container=docker' \
  - "$tmp_tag" >/dev/null
# docker import cannot set the stop signal (systemd exits cleanly on SIGRTMIN+3; SIGTERM re-executes
# it); a Dockerfile on top of the local image can, with no context and no pull.
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\nLABEL io.kubedirect.kubernetes-version=%s\n' "$tmp_tag" "$KUBE_VERSION" |
  DOCKER_BUILDKIT=0 docker build -q -t "$TAG" - >/dev/null 2>"$work/docker-build.log" || { cat "$work/docker-build.log" >&2; exit 1; }
docker image rm "$tmp_tag" >/dev/null
# keep one node image per Kubernetes version: drop the builds of older inputs
docker image ls --format '{{.Repository}}:{{.Tag}}' "$REPO" | grep -F ":$KUBE_VERSION-" | grep -vxF "$TAG" \
  | xargs -r docker image rm >/dev/null 2>&1 || true
stage "built $TAG"
echo "$TAG"
