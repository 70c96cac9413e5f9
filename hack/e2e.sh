#!/usr/bin/env bash
# End-to-end test on kind, exactly as a user runs kubedirect (the future `make e2e`):
#
#   1. Docker: a reachable daemon, else a private one (hack/docker.sh up)
#   2. node image: on the private daemon build or reuse the offline node image (hack/nodeimage/build.sh);
#      on a user's own daemon use kind's published image (NODE_IMAGE=build forces the local one)
#   3. build kubedirect
#   4. for each spec (examples/kind.yaml, examples/kind-dsr.yaml):
#        kubedirect create cluster -f SPEC          (a copy with spec.kind.nodeImage set)
#        kubedirect validate cluster --name N --wait 10m
#        the kube-proxy behaviour cases of hack/e2e/cases.sh (musl DNS, rollout, UDP fixed port,
#        host-network and remote Services from pods, large UDP replies through NodePorts)
#        the faults of hack/e2e/faults.sh (the agent DaemonSet rolled under load, a node restarted)
#        kubedirect delete cluster --name N         then assert that no container, network or volume
#                                                   the cluster made is left
#      on failure: hack/collect-logs.sh into the artifacts folder, then delete the cluster
#   5. stop the private dockerd if this run started it
# and prints the time each stage took.
#
# Env: E2E_SPECS (space-separated spec files), ARTIFACTS (default _output/e2e/<time>), NODE_IMAGE
# (build | kind | an image tag), E2E_KEEP=1 keeps a failed cluster and the daemon, VALIDATE_WAIT (10m).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SPECS=${E2E_SPECS:-examples/kind.yaml examples/kind-dsr.yaml}
ARTIFACTS=${ARTIFACTS:-$ROOT/_output/e2e/$(date -u +%Y%m%dT%H%M%SZ)}

# E2E_SOURCE=head tests the committed tree: a snapshot of HEAD in a temporary directory (for checkouts
# shared with work in progress; `kubedirect create` builds its node image from the source it runs in).
if [ "${E2E_SOURCE:-worktree}" = head ]; then
  snap=$(mktemp -d "${TMPDIR:-/tmp}/kubedirect-e2e-src.XXXXXX")
  git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$snap"
  echo "=== e2e: testing HEAD $(git -C "$ROOT" rev-parse --short HEAD) from $snap"
  mkdir -p "$ARTIFACTS"
  rc=0
  E2E_SOURCE=worktree ARTIFACTS=$(cd "$ARTIFACTS" && pwd) bash "$snap/hack/e2e.sh" || rc=$?
  rm -rf "$snap"
  exit $rc
fi
VALIDATE_WAIT=${VALIDATE_WAIT:-10m}
mkdir -p "$ARTIFACTS"
ARTIFACTS=$(cd "$ARTIFACTS" && pwd)
export KUBECONFIG=$ARTIFACTS/kubeconfig # never touch the user's kubeconfig

timings=()
t_start=$SECONDS
stage_begin() { stage_name=$1; stage_t0=$SECONDS; echo; echo "=== e2e: $1"; }
stage_end() { local d=$((SECONDS - stage_t0)); stage_t0=""; timings+=("$(printf '%-44s %5ds' "$stage_name" "$d")"); echo "=== e2e: $stage_name: ${d}s"; }
summary() {
  echo
  echo "=== e2e stage times"
  printf '  %s\n' "${timings[@]}"
  printf '  %-44s %5ds\n' total $((SECONDS - t_start))
}

started_docker=false
problems=()
passed=false # set by the last line: anything else that ends the script is a failure
current_cluster=""
BIN=""
failed=false
finish() {
  local rc=$?
  $passed || failed=true
  [ $rc -ne 0 ] || $passed || rc=1
  [ -z "${stage_t0:-}" ] || timings+=("$(printf '%-44s %5ds  (failed)' "$stage_name" $((SECONDS - stage_t0)))")
  if [ -n "$current_cluster" ] && [ -n "$BIN" ]; then
    if $failed; then
      echo "=== e2e: FAILED with cluster $current_cluster up: collecting logs into $ARTIFACTS/$current_cluster-logs"
      "$ROOT/hack/collect-logs.sh" "$current_cluster" "$ARTIFACTS/$current_cluster-logs" "$KUBECONFIG" || true
    fi
    if [ "${E2E_KEEP:-}" = 1 ]; then
      echo "=== e2e: E2E_KEEP=1: keeping cluster $current_cluster (KUBECONFIG=$KUBECONFIG)"
    else
      "$BIN" delete cluster --name "$current_cluster" --kubeconfig "$KUBECONFIG" || true
    fi
  fi
  if $started_docker && [ "${E2E_KEEP:-}" != 1 ]; then
    stage_begin "stop private dockerd"
    "$ROOT/hack/docker.sh" down || true
    stage_end
  fi
  summary
  if $failed; then echo "=== e2e: FAIL (artifacts: $ARTIFACTS)"; else echo "=== e2e: PASS"; fi
  exit $rc
}
trap finish EXIT

# --- 1. Docker --------------------------------------------------------------------------------------
stage_begin "docker daemon"
if ! { [ -n "${DOCKER_HOST:-}" ] || [ -S /var/run/docker.sock ]; } || ! timeout 10 docker version >/dev/null 2>&1; then
  "$ROOT/hack/docker.sh" status || started_docker=true
fi
# a daemon that does not come up must stop the run here with its reason, not later as an unset DOCKER_HOST
docker_env=$("$ROOT/hack/docker.sh" up) || { echo "FAIL: no Docker daemon: hack/docker.sh up failed (its log is above)" >&2; exit 1; }
eval "$docker_env"
private=false
[ "$DOCKER_HOST" = "unix://${KUBEDIRECT_DOCKER_RUN:-/run/kubedirect-docker}/docker.sock" ] && private=true
echo "DOCKER_HOST=$DOCKER_HOST (private: $private, started by this run: $started_docker)"
stage_end

# --- 2. node image ----------------------------------------------------------------------------------
stage_begin "node image"
mode=${NODE_IMAGE:-}
[ -n "$mode" ] || { if $private; then mode=build; else mode=kind; fi; }
case "$mode" in
  build) node_image=$("$ROOT/hack/nodeimage/build.sh" | tail -1) ;;
  kind) node_image="" ;; # kind's published image for the spec's Kubernetes version
  *) node_image=$mode ;;
esac
echo "node image: ${node_image:-the kind default for the spec}"
stage_end

# --- 3. kubedirect ----------------------------------------------------------------------------------
stage_begin "build kubedirect"
BIN=$ARTIFACTS/kubedirect
# same flags as the self-image build in provision/install, so that one hits the build cache
CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/kubedirect
"$BIN" version || true
command -v musl-gcc >/dev/null || "$ROOT/hack/ensure-tools.sh"
resolve_bin=$ARTIFACTS/resolve # the musl DNS client of the cases (hack/e2e/cases.sh)
musl-gcc -static -O2 -o "$resolve_bin" hack/e2e/resolve.c
stage_end

kubectl_bin=$(ls "${KUBEDIRECT_CACHE:-$HOME/.cache/kubedirect}"/k8s/v1.*/bin/kubectl 2>/dev/null | tail -1 || true)
kubectl_bin=${kubectl_bin:-kubectl}
kc() { "$kubectl_bin" --kubeconfig "$KUBECONFIG" --context "kind-$current_cluster" "$@"; }

# What validate does not cover: CoreDNS serving (pod networking and pod -> ClusterIP of the API server)
# and host-network processes on every node reaching a ClusterIP through the socket hooks.
extra_checks() {
  kc -n kube-system wait --for=condition=Available deployment/coredns --timeout=120s >/dev/null ||
    { echo "FAIL: CoreDNS not Available"; return 1; }
  echo "ok: CoreDNS Available"
  local ip node
  ip=$(kc get service kubernetes -o jsonpath='{.spec.clusterIP}')
  for node in $(docker ps --format '{{.Names}}' --filter "label=io.x-k8s.kind.cluster=$current_cluster"); do
    docker exec "$node" curl -sk -m 10 -o /dev/null -w '%{http_code}' "https://$ip/version" | grep -q 200 ||
      { echo "FAIL: host network of $node cannot reach the API server's ClusterIP $ip"; return 1; }
    echo "ok: host network of $node reaches ClusterIP $ip"
  done
}

# shellcheck source=hack/e2e/cases.sh
source "$ROOT/hack/e2e/cases.sh"
# shellcheck source=hack/e2e/faults.sh
source "$ROOT/hack/e2e/faults.sh"

# ids of the containers, networks and volumes on the daemon
resources() {
  { docker ps -aq --no-trunc | sed 's/^/container /'
    docker network ls -q --no-trunc | sed 's/^/network /'
    docker volume ls -q | sed 's/^/volume /'; } | sort
}

# --- 4. clusters ------------------------------------------------------------------------------------
# kind's shared "kind" network with no node on it is a leftover of an earlier run: remove it from the
# private daemon so the leftover check below sees what this run's clusters leave.
if $private && docker network inspect kind >/dev/null 2>&1 &&
  [ "$(docker network inspect -f '{{len .Containers}}' kind)" = 0 ]; then
  echo "removing the unused kind network an earlier run left on the private daemon"
  docker network rm kind >/dev/null
fi

for spec in $SPECS; do
  name=$(awk '/^metadata:/ {m=1; next} m && /^[^ ]/ {m=0} m && $1 == "name:" {print $2; exit}' "$spec")
  [ -n "$name" ] || { echo "cannot read metadata.name from $spec"; exit 1; }
  if "$BIN" get clusters 2>/dev/null | grep -qx "$name"; then
    echo "a cluster named $name already exists on $DOCKER_HOST: not touching it"; exit 1
  fi
  run_spec=$ARTIFACTS/$(basename "$spec")
  if [ -n "$node_image" ]; then
    grep -q '^  kind:' "$spec" && { echo "$spec already has spec.kind; cannot set the node image"; exit 1; }
    { cat "$spec"; printf '  kind:\n    nodeImage: %s\n' "$node_image"; } >"$run_spec"
  else
    cp "$spec" "$run_spec"
  fi
  before=$(resources)

  stage_begin "$name: create cluster"
  current_cluster=$name
  "$BIN" create cluster -f "$run_spec" --kubeconfig "$KUBECONFIG"
  stage_end

  stage_begin "$name: validate"
  "$BIN" validate cluster --name "$name" --wait "$VALIDATE_WAIT"
  extra_checks
  stage_end

  stage_begin "$name: kube-proxy behaviour cases"
  # every case runs and reports even when an earlier one fails (set -e is off inside ||)
  run_cases || { echo "FAIL: cases ${case_failures[*]}"; exit 1; }
  stage_end
  stage_begin "$name: monitor"; bash "$ROOT/hack/e2e/observe-flows.sh" "$BIN" "$name"; stage_end
  stage_begin "$name: status, inspect, verify"; current_cluster=$name BIN=$BIN bash "$ROOT/hack/e2e/observe-maps.sh"; stage_end
  stage_begin "$name: trace"; bash "$ROOT/hack/e2e/observe-trace.sh" "$BIN" "$name"; stage_end
  stage_begin "$name: privileges"; bash "$ROOT/hack/e2e/observe-priv.sh" "$BIN" "$name"; stage_end

  stage_begin "$name: faults (agents rolled under load, a node restarted)"
  run_faults || { echo "FAIL: faults ${case_failures[*]}"; exit 1; }
  stage_end

  stage_begin "$name: delete cluster"
  "$BIN" delete cluster --name "$name" --kubeconfig "$KUBECONFIG"
  current_cluster=""
  left=$(comm -13 <(echo "$before") <(resources))
  if [ -n "$left" ]; then
    echo "FAIL: delete left behind:"; echo "$left" | sed 's/^/  /'
    for id in $(echo "$left" | awk '$1 == "network" {print $2}'); do docker network inspect -f '    network {{.Name}}' "$id"; done
    problems+=("$name: delete left $(echo "$left" | awk '{print $1}' | sort | uniq -c | xargs) behind")
  else
    echo "ok: no container, network or volume left"
  fi
  stage_end
done

# leftovers do not stop the next spec; they fail the run here
if [ ${#problems[@]} -gt 0 ]; then
  printf 'FAIL: %s\n' "${problems[@]}"
  exit 1
fi
passed=true
