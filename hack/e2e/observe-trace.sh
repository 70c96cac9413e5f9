#!/usr/bin/env bash
# The e2e's trace checks (hack/e2e.sh runs this after the cases): validate's probe is gone by then, so
# this puts the same shape back (an echo pod on the first worker behind a NodePort Service) and traces
# a packet from the outside client (this host, on the kind network) to that NodePort on another node:
#   a) the trace names a backend and a backend node that the Service's EndpointSlices list, and the
#      NodePort frontend;
#   b) no conntrack entry of the traced client address and port exists afterwards on the traced node
#      (`kubedirect inspect conntrack`): the trace ran on copies of the maps.
# Usage: observe-trace.sh KUBEDIRECT_BINARY CLUSTER_NAME   (KUBECONFIG and the Docker env set by e2e.sh)
set -euo pipefail
BIN=$1
NAME=$2
NS=kd-e2e-trace
SPORT=40321 # the traced client port: no real flow of this host uses it

fail() { echo "FAIL: trace: $*"; exit 1; }
current_cluster=$NAME
# shellcheck source=hack/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

client=$(e2e_kind_gateway)
[ -n "$client" ] || fail "cannot find the kind network's IPv4 gateway (the outside client's address)"
image=$(e2e_agent_image)
workers=($(e2e_workers))
backend_node=${workers[0]}
traced=$(kc get nodes -o jsonpath='{.items[*].metadata.name}' | tr ' ' '\n' | grep -vxF "$backend_node" | head -1)
traced=${traced:-$backend_node}
traced_ip=$(e2e_node_ip "$traced")

kc create namespace $NS >/dev/null
trap 'kc delete namespace $NS --wait=false >/dev/null 2>&1 || true' EXIT
e2e_apply_echo $NS echo "$backend_node" "$image"
e2e_wait_echo $NS echo || fail "echo pod not ready"
np=$(e2e_node_port $NS echo http)
sleep 2 # the agents program the new endpoints

out=$("$BIN" trace --name "$NAME" --node "$traced" --from "$client:$SPORT" --to "$traced_ip:$np/tcp" -o json) ||
  fail "trace exited $?"
echo "trace: $out"
"$BIN" trace --name "$NAME" --node "$traced" --from "$client:$SPORT" --to "$traced_ip:$np/tcp" || true

# a) the frontend, and a backend and node the EndpointSlices list
[ "$(jq -r '.frontend.port' <<<"$out")" = "$np" ] || fail "frontend is not the NodePort $np"
[ "$(jq -r '.frontend.service' <<<"$out")" = "$NS/echo" ] || fail "frontend not named $NS/echo"
be=$(jq -r '.backend // ""' <<<"$out")
be_node=$(jq -r '.backendNode // ""' <<<"$out")
slices=$(kc -n $NS get endpointslices -l kubernetes.io/service-name=echo \
  -o jsonpath='{range .items[*].endpoints[*]}{.addresses[0]}:8080 {.nodeName}{"\n"}{end}')
grep -qxF "$be $be_node" <<<"$slices" || fail "backend '$be' on node '$be_node' is not in the EndpointSlices: $slices"
[ "$(jq -r '.verdict' <<<"$out")" != drop ] || fail "trace says drop"
echo "ok: trace of $client:$SPORT -> $traced_ip:$np on $traced names backend $be on $be_node (EndpointSlices agree)"

# b) nothing left behind in the traced node's conntrack
left=$("$BIN" inspect conntrack --name "$NAME" --node "$traced" -o json | jq --arg c "$client:$SPORT" '[.[] | select(.client == $c)] | length')
[ "$left" = 0 ] || fail "$left conntrack entries of $client:$SPORT on $traced after the trace"
echo "ok: no conntrack entry of $client:$SPORT on $traced after the trace"
