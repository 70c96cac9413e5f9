#!/usr/bin/env bash
# Collects everything needed to debug a kind cluster made by kubedirect into a folder.
#
#   hack/collect-logs.sh CLUSTER DIR [KUBECONFIG]
#
# Per node (DIR/nodes/NAME/): docker inspect and logs, the journal (all, kubelet, containerd),
# kubeadm's config, pod logs (/var/log/pods), containerd's containers/tasks/images, addresses, routes,
# iptables rules, and the BPF state: programs, attachments (tcx/tc/xdp), every map pinned under
# /sys/fs/bpf dumped with bpftool. Cluster-wide (DIR/cluster/): nodes, pods, events, DaemonSets, the
# logs of every pod (the kubedirect agents among them). Also kind's own log export when the kind
# command can be built. Best effort: a failing step is noted and the rest goes on.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 CLUSTER DIR [KUBECONFIG]" >&2; exit 2; }
CLUSTER=$1 DIR=$2 KCFG=${3:-${KUBECONFIG:-}}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$DIR/nodes" "$DIR/cluster"

run() { # run OUTFILE CMD...: CMD's output (and errors) into OUTFILE, never fails
  local out=$1; shift
  timeout 60 "$@" >"$out" 2>&1 || echo "[exit $?] $*" >>"$out"
}

kubectl_bin=$(ls "${KUBEDIRECT_CACHE:-$HOME/.cache/kubedirect}"/k8s/v1.*/bin/kubectl 2>/dev/null | tail -1)
kubectl_bin=${kubectl_bin:-kubectl}

nodes=$(docker ps -a --filter "label=io.x-k8s.kind.cluster=$CLUSTER" --format '{{.Names}}')
echo "$nodes" >"$DIR/nodes.txt"
docker ps -a >"$DIR/docker-ps.txt" 2>&1
docker network ls >"$DIR/docker-networks.txt" 2>&1
docker volume ls >"$DIR/docker-volumes.txt" 2>&1

for n in $nodes; do
  d=$DIR/nodes/$n
  mkdir -p "$d"
  run "$d/inspect.json" docker inspect "$n"
  run "$d/docker-logs.txt" docker logs "$n"
  [ "$(docker inspect -f '{{.State.Running}}' "$n" 2>/dev/null)" = true ] || continue
  x() { local out=$1; shift; run "$d/$out" docker exec "$n" "$@"; }
  x journal.txt journalctl --no-pager -b
  x kubelet.txt journalctl --no-pager -b -u kubelet
  x containerd.txt journalctl --no-pager -b -u containerd
  x systemctl.txt systemctl list-units --all --no-pager
  x kubeadm.conf cat /kind/kubeadm.conf
  x containers.txt ctr -n k8s.io containers list
  x tasks.txt ctr -n k8s.io tasks list
  x images.txt ctr -n k8s.io images list
  x ip-addr.txt ip -d addr
  x ip-route.txt sh -c 'ip route; ip rule; ip neigh'
  x iptables.txt sh -c 'iptables-save; nft list ruleset'
  x cni.txt sh -c 'ls -l /opt/cni/bin /etc/cni/net.d; cat /etc/cni/net.d/* 2>/dev/null'
  x bpf-progs.txt bpftool prog show
  x bpf-maps.txt bpftool map show
  x bpf-net.txt bpftool net show
  x bpf-pinned.txt sh -c 'for f in $(find /sys/fs/bpf -type f 2>/dev/null); do echo "=== $f"
      if out=$(bpftool map dump pinned "$f" 2>/dev/null); then echo "$out" | head -2000
      else bpftool link show pinned "$f" 2>/dev/null || bpftool prog show pinned "$f" 2>&1; fi; done'
  docker cp "$n:/var/log/pods" "$d/pods" >/dev/null 2>&1 || true
done

if [ -n "$KCFG" ] && [ -f "$KCFG" ]; then
  k() { local out=$1; shift; run "$DIR/cluster/$out" "$kubectl_bin" --kubeconfig "$KCFG" "$@"; }
  k nodes.txt get nodes -o wide
  k nodes-describe.txt describe nodes
  k pods.txt get pods -A -o wide
  k pods-describe.txt describe pods -A
  k daemonsets.txt get daemonsets -A -o wide
  k services.txt get services,endpointslices -A -o wide
  k events.txt get events -A --sort-by=.lastTimestamp
  mkdir -p "$DIR/cluster/logs"
  "$kubectl_bin" --kubeconfig "$KCFG" get pods -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null |
    while read -r ns pod; do
      run "$DIR/cluster/logs/$ns.$pod.txt" "$kubectl_bin" --kubeconfig "$KCFG" -n "$ns" logs "$pod" --all-containers --prefix
      run "$DIR/cluster/logs/$ns.$pod.previous.txt" "$kubectl_bin" --kubeconfig "$KCFG" -n "$ns" logs "$pod" --all-containers --prefix --previous
    done
fi

# kind's own export (what `kind export logs` gathers), when the kind command builds from the module cache
if [ -n "$nodes" ] && command -v go >/dev/null; then
  kind_version=$(cd "$HERE/.." && go list -m -f '{{.Version}}' sigs.k8s.io/kind 2>/dev/null)
  [ -z "$kind_version" ] || run "$DIR/kind-export.txt" timeout 300 go run "sigs.k8s.io/kind@$kind_version" export logs "$DIR/kind" --name "$CLUSTER"
fi
echo "collect-logs: wrote $DIR" >&2
