#!/usr/bin/env bash
# The e2e's monitor checks (hack/e2e.sh runs this after the cases): `kubedirect monitor` shows the flows
# of validate's probe, the outside client (this host, on the kind network) calling every node's NodePorts:
#   a) a forward flow whose source is the client's own address, whose frontend is a node address and
#      NodePort, and whose backend is a pod address;
#   b) with --verdict drop, the probe's externalTrafficPolicy Local NodePort hit on a node without a local
#      backend, as a drop with reason no_local_backend;
#   c) nothing else in the --verdict drop output, and every line is one JSON flow.
# Usage: observe-flows.sh KUBEDIRECT_BINARY CLUSTER_NAME   (KUBECONFIG and the Docker env set by e2e.sh)
set -euo pipefail
BIN=$1
NAME=$2
# the probe ran during validate, before the cases: far enough back to include it, within the agents'
# bounded history
SINCE=${OBSERVE_SINCE:-30m}

fail() { echo "FAIL: monitor: $*"; exit 1; }
current_cluster=$NAME
# shellcheck source=hack/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

client=$(e2e_kind_gateway)
[ -n "$client" ] || fail "cannot find the kind network's IPv4 gateway (the outside client's address)"
nodes=$(docker ps --filter "label=io.x-k8s.kind.cluster=$NAME" -q | xargs docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' | tr ' ' '\n' | grep -F . | sort -u)

out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$BIN" monitor --name "$NAME" --since "$SINCE" -o json >"$out" 2>"$out.err" || { cat "$out.err"; fail "monitor --since $SINCE exited $?"; }
cat "$out.err"; rm -f "$out.err"
jq -e . "$out" >/dev/null || fail "-o json printed something that is not JSON lines"
echo "monitor --since $SINCE: $(wc -l <"$out") flows"

# a) the probe's forward flows: client address, node frontend, pod backend
probe=$(jq -c --arg c "$client" 'select(.verdict == "forward" and (.source | startswith($c + ":")))' "$out")
[ -n "$probe" ] || { head -20 "$out"; fail "no forward flow from the outside client $client"; }
n=0
while read -r fe be; do
  grep -qxF "${fe%:*}" <<<"$nodes" || fail "probe flow frontend $fe is not a node address ($(echo $nodes))"
  [[ $be == 10.244.* ]] || fail "probe flow from $client to $fe has backend '$be', want a pod address"
  n=$((n + 1))
done < <(jq -r '"\(.frontend) \(.backend // "")"' <<<"$probe")
echo "ok: monitor shows $n flows of the probe, the first: ${probe%%$'\n'*}"

# b) + c) the eTP=Local drop
drops=$(mktemp)
"$BIN" monitor --name "$NAME" --since "$SINCE" --verdict drop -o json >"$drops"
jq -e . "$drops" >/dev/null || fail "--verdict drop -o json printed something that is not JSON lines"
[ "$(jq -r .verdict "$drops" | sort -u)" = "$(if [ -s "$drops" ]; then echo drop; fi)" ] || fail "--verdict drop printed other verdicts"
local_drop=$(jq -c -n --arg c "$client" 'first(inputs | select(.reason == "no_local_backend" and (.source | startswith($c + ":"))))' "$drops")
rm -f "$drops"
[ -n "$local_drop" ] || fail "--verdict drop shows no no_local_backend drop of the client $client (the eTP=Local NodePort on a node without a local backend)"
echo "ok: monitor --verdict drop shows the eTP=Local drop: $local_drop"

# the table a user reads, for the log (no head in a pipe: under pipefail its SIGPIPE fails the run)
echo "monitor (table), the probe's flows:"
"$BIN" monitor --name "$NAME" --since "$SINCE" >"$out"
grep -F " $client:" "$out" | sed -n '1,8s/^/  /p'
