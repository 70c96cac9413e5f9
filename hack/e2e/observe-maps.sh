#!/usr/bin/env bash
# The e2e's look inside the dataplane (status, inspect, verify), run by hack/e2e.sh after the cases on
# the cluster $current_cluster with kc (kubectl for it) and the binary $BIN; standalone:
#   BIN=_output/kubedirect CLUSTER=demo KUBECONFIG=... hack/e2e/observe-maps.sh
# It runs an echo pod on a worker behind a NodePort Service, calls the NodePort of the other worker from
# this machine (so the flow is tunnelled), then asserts that
#   - status exits 0 and lists every node, with its NIC in xdp mode when spec.dataplane.xdp is native,
#   - inspect services names the Service port, its ClusterIP and NodePort frontends and the backend with
#     its node; inspect tunnels names peer nodes; inspect conntrack shows this machine's address as the
#     client, the NodePort frontend and the backend pod,
#   - verify reports 0 differences,
#   - after `agent debug delete-frontend` removes the Service's ClusterIP frontend on one node, verify
#     names that frontend and exits 2.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
current_cluster=${current_cluster:-${CLUSTER:?set CLUSTER or current_cluster}}
NS=kd-observe
fail() { echo "FAIL: observe-maps: $*"; exit 1; }
kd() { "$BIN" "$@" --name "$current_cluster"; }

# shellcheck source=hack/e2e/lib.sh
source "$ROOT/hack/e2e/lib.sh"

self_image=$(e2e_agent_image)
workers=($(e2e_workers))
w1=${workers[0]:-} w2=${workers[1]:-}
[ -n "$w2" ] || fail "needs two workers"
kc create namespace $NS >/dev/null
trap 'kc delete namespace $NS --wait=false >/dev/null 2>&1 || true' EXIT
e2e_apply_echo $NS web "$w1" "$self_image" 80 # a Service port unlike the pod's
e2e_wait_echo $NS web
pod_ip=$(e2e_echo_pod_ip $NS web)
cluster_ip=$(e2e_cluster_ip $NS web)
node_port=$(e2e_node_port $NS web http)
w2_ip=$(e2e_node_ip "$w2")
client_ip=$(ip -4 route get "$w2_ip" | awk '{for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1)}')
for i in $(seq 1 30); do
  reply=$(curl -s -m 2 "http://$w2_ip:$node_port/") && break
  sleep 1
done
echo "$reply" | grep -q "$client_ip" || fail "NodePort $w2_ip:$node_port: reply $reply does not carry the client $client_ip"
# the connection's conntrack entries live for 10 s after it closed: read them now
conntrack=$(kd inspect conntrack --ip "$client_ip")
echo "$conntrack"
echo "$conntrack" | grep "$client_ip:" | grep "$w2_ip:$node_port" | grep -q "$pod_ip:8080" ||
  fail "inspect conntrack: no flow from $client_ip to $w2_ip:$node_port with backend $pod_ip:8080"
echo "ok: inspect conntrack shows client $client_ip, frontend $w2_ip:$node_port, backend $pod_ip:8080"

status=$(kd status) || { echo "$status"; fail "status exited non-zero"; }
echo "$status"
for n in $(kc get nodes -o jsonpath='{.items[*].metadata.name}'); do
  echo "$status" | grep -q "^$n .* true " || fail "status: node $n not listed as ready"
done
echo "ok: status lists every node ready"
# the NIC's mode follows spec.dataplane.xdp: a kind node's eth0 is a veth, which has native XDP
xdp=$(kc -n kube-system get configmap kubedirect-config -o jsonpath='{.data.config\.yaml}' | awk '$1 == "xdp:" {gsub(/"/, "", $2); print $2}')
for n in $(kc get nodes -o jsonpath='{.items[*].metadata.name}'); do
  shown=false
  echo "$status" | grep "^$n " | grep -q "netdev eth0 xdp" && shown=true
  [ "$shown" = "$([ "$xdp" = native ] && echo true || echo false)" ] ||
    fail "status: node $n shows netdev eth0 xdp: $shown, with xdp: ${xdp:-unset}"
done
echo "ok: status shows netdev eth0 xdp on every node exactly when xdp is native (xdp: ${xdp:-unset})"

services=$(kd inspect services --service $NS/web)
echo "$services"
echo "$services" | grep "$NS/web:80/TCP" | grep "ClusterIP" | grep "$cluster_ip:80/TCP" | grep -q "$pod_ip:8080 (node $w1)" ||
  fail "inspect services: no ClusterIP $cluster_ip:80 -> $pod_ip:8080 (node $w1)"
echo "$services" | grep "^$w2 " | grep "NodePort" | grep "\*:$node_port/TCP" | grep -q "$pod_ip:8080 (node $w1)" ||
  fail "inspect services: no NodePort *:$node_port on $w2 -> $pod_ip:8080 (node $w1)"
echo "ok: inspect services names $NS/web, its frontends and the backend's node"

tunnels=$(kd inspect tunnels --node "$w2")
echo "$tunnels"
echo "$tunnels" | grep -q " $w1\$" || fail "inspect tunnels: $w2 has no tunnel to $w1"
echo "ok: inspect tunnels names the peer node"

verify=$(kd verify) || { echo "$verify"; fail "verify exited non-zero on a converged cluster"; }
echo "$verify" | grep -q ", 0 differences$" || fail "verify: $verify"
echo "ok: verify: $verify"

agent_pod=$(kc -n kube-system get pods -l app.kubernetes.io/name=kubedirect,app.kubernetes.io/component=agent \
  --field-selector spec.nodeName="$w2" -o jsonpath='{.items[0].metadata.name}')
kc -n kube-system exec "$agent_pod" -c agent -- /usr/local/bin/kubedirect agent debug delete-frontend "$cluster_ip:80/TCP"
rc=0
verify=$(kd verify --node "$w2" --settle 4s) || rc=$?
echo "$verify"
[ $rc = 2 ] || fail "verify after a deleted frontend exited $rc, want 2"
echo "$verify" | grep -q "^$w2: missing frontend $NS/web:80/TCP ClusterIP $cluster_ip:80" ||
  fail "verify does not name the deleted frontend"
echo "ok: verify names the frontend deleted behind the agent's back and exits 2"
