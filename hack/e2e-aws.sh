#!/usr/bin/env bash
# The AWS rehearsal (`make e2e-aws`): the real `kubedirect create cluster` of an AWS spec against moto,
# with node containers of the offline node image playing the EC2 instances, then get, validate,
# export and delete through the state store, and a census of moto that must find nothing left.
#
#   1. Docker (hack/docker.sh up), the node image (hack/nodeimage/build.sh), kubedirect and
#      hack/rehearsal built
#   2. a Docker network for the nodes; moto and the IMDS stand-in listen on its gateway address (the
#      host's side of the bridge: the only address the nodes reach us at)
#   3. the state-store bucket (the operator's one-time setup), then `hack/rehearsal nodes`: for every
#      instance moto's auto scaling groups launch, a node container that runs the instance's user-data
#      (without its package installation: the node image has containerd, kubelet and kubeadm), i.e.
#      the real `kubedirect node bootstrap`: kubeadm init with the state store's CA, join with its token
#   4. kubedirect create cluster -f SPEC --wait: infrastructure, kubeconfig, dataplane through the state
#      store, chart, wait, validate (the source-IP matrix)
#   5. kubedirect get clusters / validate cluster / export kubeconfig / delete cluster --name, through
#      the state store; `hack/rehearsal census` lists the live cluster's resources of every kind
#      before the delete (so that its empty answer after it means something) and none after it
#
# Every kubedirect command runs in a private mount namespace whose /etc/hosts maps the load balancers'
# DNS names moto invents to the control plane's container, and whose /etc/resolv.conf has no server:
# no name resolves to anything outside this machine (see hack/README.md). Moto does not enforce IAM
# here (the moto suite of provision/aws does, with the published operator policy).
#
# Env: ARTIFACTS (default _output/e2e-aws/<time>), E2E_KEEP=1 (keep the nodes, moto and the daemon),
# VALIDATE_WAIT (10m). Run under `flock /tmp/kd-kind.lock` on shared machines.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ARTIFACTS=${ARTIFACTS:-$ROOT/_output/e2e-aws/$(date -u +%Y%m%dT%H%M%SZ)}
VALIDATE_WAIT=${VALIDATE_WAIT:-10m}
CLUSTER=rehearsal
BUCKET=kubedirect-rehearsal
REGION=eu-west-1
NETWORK=kubedirect-rehearsal
mkdir -p "$ARTIFACTS"
ARTIFACTS=$(cd "$ARTIFACTS" && pwd)

timings=()
t_start=$SECONDS
stage_begin() { stage_name=$1; stage_t0=$SECONDS; echo; echo "=== e2e-aws: $1"; }
stage_end() { local d=$((SECONDS - stage_t0)); stage_t0=""; timings+=("$(printf '%-44s %5ds' "$stage_name" "$d")"); echo "=== e2e-aws: $stage_name: ${d}s"; }

started_docker=false
passed=false
moto_pid=""
nodes_pid=""
finish() {
  local rc=$?
  [ $rc -ne 0 ] || $passed || rc=1
  [ -z "${stage_t0:-}" ] || timings+=("$(printf '%-44s %5ds  (failed)' "$stage_name" $((SECONDS - stage_t0)))")
  if ! $passed && [ -n "${DOCKER_HOST:-}" ]; then
    for c in $(docker ps -aq --filter "label=kubedirect.io/rehearsal=$CLUSTER" 2>/dev/null); do
      docker exec "$c" sh -c 'journalctl --no-pager -u kubelet -u containerd -u kubedirect-image | tail -300' \
        >"$ARTIFACTS/$(docker inspect -f '{{.Name}}' "$c" | tr -d /)-journal.log" 2>&1 || true
    done
  fi
  if [ "${E2E_KEEP:-}" = 1 ] && ! $passed; then
    echo "=== e2e-aws: E2E_KEEP=1: keeping the nodes, moto (pid $moto_pid) and the IMDS stand-in (pid $nodes_pid)"
  else
    [ -z "$nodes_pid" ] || { kill "$nodes_pid" 2>/dev/null || true; wait "$nodes_pid" 2>/dev/null || true; }
    [ -z "$moto_pid" ] || { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; }
    if [ -n "${DOCKER_HOST:-}" ]; then
      ids=$(docker ps -aq --filter "label=kubedirect.io/rehearsal=$CLUSTER" 2>/dev/null || true)
      [ -z "$ids" ] || docker rm -f -v $ids >/dev/null || true
      docker network rm "$NETWORK" >/dev/null 2>&1 || true
    fi
    if $started_docker; then "$ROOT/hack/docker.sh" down || true; fi
  fi
  echo
  echo "=== e2e-aws stage times"
  printf '  %s\n' "${timings[@]}"
  printf '  %-44s %5ds\n' total $((SECONDS - t_start))
  if $passed; then echo "=== e2e-aws: PASS"; else echo "=== e2e-aws: FAIL (artifacts: $ARTIFACTS)"; fi
  exit $rc
}
trap finish EXIT

# --- 1. tools ---------------------------------------------------------------------------------------
stage_begin "docker daemon, node image, builds"
python3.11 -c 'import moto' 2>/dev/null || "$ROOT/hack/ensure-tools.sh"
command -v unshare >/dev/null || { echo "FAIL: unshare (util-linux) is needed"; exit 1; }
if ! { [ -n "${DOCKER_HOST:-}" ] || [ -S /var/run/docker.sock ]; } || ! timeout 10 docker version >/dev/null 2>&1; then
  "$ROOT/hack/docker.sh" status || started_docker=true
fi
docker_env=$("$ROOT/hack/docker.sh" up) || { echo "FAIL: no Docker daemon: hack/docker.sh up failed"; exit 1; }
eval "$docker_env"
node_image=${NODE_IMAGE:-$("$ROOT/hack/nodeimage/build.sh" | tail -1)}
BIN=$ARTIFACTS/kubedirect
CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/kubedirect
CGO_ENABLED=0 go build -trimpath -o "$ARTIFACTS/rehearsal" ./hack/rehearsal # the flags of the line above: one build cache
echo "node image $node_image; DOCKER_HOST=$DOCKER_HOST"
stage_end

# --- 2. network, moto ------------------------------------------------------------------------------
stage_begin "moto and the IMDS stand-in"
if docker network inspect "$NETWORK" >/dev/null 2>&1; then
  [ -z "$(docker ps -aq --filter "network=$NETWORK")" ] || { echo "FAIL: network $NETWORK is in use (another rehearsal?)"; exit 1; }
  docker network rm "$NETWORK" >/dev/null
fi
docker network create "$NETWORK" >/dev/null
GW=$(docker network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$NETWORK")
SUBNET=$(docker network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$NETWORK")
free_port() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$GW"; }
MOTO_PORT=$(free_port)
IMDS_PORT=$(free_port)
MOTO=http://$GW:$MOTO_PORT
cp "$ROOT/hack/rehearsal/amis.json" "$ARTIFACTS/amis.json"
MOTO_AMIS_PATH=$ARTIFACTS/amis.json python3.11 -m moto.server -H "$GW" -p "$MOTO_PORT" >"$ARTIFACTS/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null "$MOTO/moto-api/" && break; sleep 0.2; done
curl -sf -o /dev/null "$MOTO/moto-api/" || { echo "FAIL: moto did not answer at $MOTO"; exit 1; }
"$ARTIFACTS/rehearsal" bucket -moto "$MOTO" -bucket "$BUCKET" -region "$REGION"

# The CLI's view of names: this machine's hosts file plus the API's names (appended by
# `rehearsal nodes`), and no DNS server.
cp /etc/hosts "$ARTIFACTS/hosts"
echo "# kubedirect rehearsal: no DNS server; names resolve only through /etc/hosts" >"$ARTIFACTS/resolv.conf"
mkdir -p "$ARTIFACTS/nodes"
"$ARTIFACTS/rehearsal" nodes -moto "$MOTO" -imds "$GW:$IMDS_PORT" -cluster "$CLUSTER" -network "$NETWORK" \
  -image "$node_image" -hosts "$ARTIFACTS/hosts" -logs "$ARTIFACTS/nodes" -region "$REGION" >"$ARTIFACTS/nodes.log" 2>&1 &
nodes_pid=$!
echo "moto at $MOTO (pid $moto_pid), IMDS stand-in at $GW:$IMDS_PORT (pid $nodes_pid), nodes on $NETWORK ($SUBNET)"
stage_end

export AWS_ENDPOINT_URL=$MOTO AWS_ACCESS_KEY_ID=AKIDREHEARSAL AWS_SECRET_ACCESS_KEY=rehearsal AWS_REGION=$REGION
export AWS_EC2_METADATA_DISABLED=true # the CLI runs outside AWS
export KUBEDIRECT_STATE_STORE=s3://$BUCKET/clusters
export KUBECONFIG=$ARTIFACTS/kubeconfig
# in_names CMD...: CMD with the rehearsal's /etc/hosts and /etc/resolv.conf (a private mount namespace)
in_names() {
  unshare --mount --propagation private sh -c 'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' \
    "$ARTIFACTS/hosts" "$ARTIFACTS/resolv.conf" "$@"
}
kd() { in_names "$BIN" "$@"; }

sed -e "s|@NODEPORT_ACCESS@|$GW/32|" "$ROOT/hack/rehearsal/cluster.yaml" >"$ARTIFACTS/cluster.yaml"

# --- 3. create ---------------------------------------------------------------------------------------
stage_begin "create cluster (infrastructure, nodes, dataplane, validate)"
kd create cluster -f "$ARTIFACTS/cluster.yaml" --wait "$VALIDATE_WAIT"
stage_end
cat "$ARTIFACTS/nodes.log"

# --- 4. through the state store -------------------------------------------------------------------------
stage_begin "get, validate, export through the state store"
kd get clusters | tee "$ARTIFACTS/clusters.txt"
grep -qx "$CLUSTER" "$ARTIFACTS/clusters.txt" || { echo "FAIL: get clusters does not list $CLUSTER"; exit 1; }
kd validate cluster --name "$CLUSTER"
kd export kubeconfig --name "$CLUSTER" --kubeconfig "$ARTIFACTS/exported.kubeconfig"
in_names kubectl --kubeconfig "$ARTIFACTS/exported.kubeconfig" get nodes -o wide
stage_end

stage_begin "census of the live cluster"
# the census after delete must find nothing; it proves something only if it finds a live cluster's parts
if "$ARTIFACTS/rehearsal" census -moto "$MOTO" -cluster "$CLUSTER" -bucket "$BUCKET" -prefix clusters -region "$REGION" >"$ARTIFACTS/census-live.txt" 2>&1; then
  echo "FAIL: the census found nothing of the live cluster $CLUSTER"; exit 1
fi
for kind in vpc subnet internet-gateway route-table security-group launch-template instance auto-scaling-group elb; do
  grep -q "^  $kind " "$ARTIFACTS/census-live.txt" || { echo "FAIL: the census of the live cluster lists no $kind:"; cat "$ARTIFACTS/census-live.txt"; exit 1; }
done
head -1 "$ARTIFACTS/census-live.txt"
stage_end

stage_begin "delete cluster"
kd delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
"$ARTIFACTS/rehearsal" census -moto "$MOTO" -cluster "$CLUSTER" -bucket "$BUCKET" -prefix clusters -region "$REGION"
stage_end
passed=true
