#!/usr/bin/env bash
# The e2e's least-privilege check, run by hack/e2e.sh after the cases on cluster NAME with the binary BIN
# (KUBECONFIG and DOCKER_HOST from the caller); standalone: hack/e2e/observe-priv.sh BIN NAME
# It asserts, on every node, that
#   - the agent's container is not privileged, drops ALL capabilities and adds exactly BPF, NET_ADMIN and
#     PERFMON, and the running agent process holds exactly those (CapEff, CapBnd);
#   - the agent set the node's sysctls through the chart's /proc/sys/net mount (no "set sysctl" or
#     "reserve the NodePort range" warning in its log; rp_filter 0 on kd-vxlan, the NodePort range reserved);
#   - the pin directory is 0700 with its maps 0600, and the CNI state directory 0700 with node.json 0600.
set -euo pipefail

BIN=${1:?usage: observe-priv.sh BIN NAME}
name=${2:?usage: observe-priv.sh BIN NAME}
kc() { kubectl --kubeconfig "$KUBECONFIG" --context "kind-$name" "$@"; }
fail() { echo "FAIL: observe-priv: $*"; exit 1; }
# CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39)
want_caps=000000c000001000

sc=$(kc -n kube-system get ds kubedirect -o jsonpath='{.spec.template.spec.containers[?(@.name=="agent")].securityContext}')
echo "agent securityContext: $sc"
echo "$sc" | grep -q '"privileged":false' || fail "agent container is privileged: $sc"
echo "$sc" | grep -q '"add":\["BPF","NET_ADMIN","PERFMON"\]' || fail "agent capabilities: $sc"
echo "$sc" | grep -q '"drop":\["ALL"\]' || fail "agent does not drop ALL: $sc"

for node in $(kc get nodes -o jsonpath='{.items[*].metadata.name}'); do
  pod=$(kc -n kube-system get pods -l app.kubernetes.io/name=kubedirect --field-selector spec.nodeName="$node" -o jsonpath='{.items[0].metadata.name}')
  logs=$(kc -n kube-system logs "$pod" -c agent)
  if grep -E 'msg="set sysctl"|msg="reserve the NodePort range' <<<"$logs"; then
    fail "$node: the agent could not set the node's sysctls"
  fi
  # shellcheck disable=SC2016 # expanded in the node
  got=$(docker exec "$node" sh -c '
    pid=$(pgrep -o -f "kubedirect agent --config") || { echo "no agent process"; exit 0; }
    awk "/^Cap(Eff|Bnd):/ {printf \"%s%s \", \$1, \$2}" /proc/$pid/status
    stat -c "%n=%a" /sys/fs/bpf/kubedirect /sys/fs/bpf/kubedirect/kd_services /run/kubedirect /run/kubedirect/node.json | tr "\n" " "
    echo "rp_filter=$(cat /proc/sys/net/ipv4/conf/kd-vxlan/rp_filter) reserved=$(cat /proc/sys/net/ipv4/ip_local_reserved_ports)"')
  echo "$node: $got"
  for want in "CapEff:$want_caps" "CapBnd:$want_caps" /sys/fs/bpf/kubedirect=700 /sys/fs/bpf/kubedirect/kd_services=600 \
    /run/kubedirect=700 /run/kubedirect/node.json=600 rp_filter=0; do
    grep -q -- "$want" <<<"$got" || fail "$node: want $want"
  done
  grep -q 'reserved=.*30000-32767' <<<"$got" || fail "$node: the NodePort range is not reserved"
done
echo "observe-priv: agents run unprivileged with exactly BPF, NET_ADMIN, PERFMON; node state private to root"
