#!/usr/bin/env bash
# The main job on any machine (the future `make demo`): create the example cluster on kind and
# validate it.
#
#   hack/demo.sh [SPEC]     (default examples/kind.yaml; BIN=path/to/kubedirect, default bin/kubedirect)
#
# With a reachable Docker daemon (a user's machine, with internet) it uses that daemon and kind's
# published node image. Without one (this project's sandboxes) it starts the private daemon
# (hack/docker.sh) and builds or reuses the offline node image (hack/nodeimage/build.sh) first; the
# daemon keeps running with the cluster: see the commands printed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SPEC=${1:-examples/kind.yaml}
BIN=${BIN:-bin/kubedirect}
[ -x "$BIN" ] || CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/kubedirect

# a daemon that does not come up must stop the run here with its reason, not later as an unset DOCKER_HOST
docker_env=$("$ROOT/hack/docker.sh" up) || { echo "FAIL: no Docker daemon: hack/docker.sh up failed (its log is above)" >&2; exit 1; }
eval "$docker_env"
private=false
[ "$DOCKER_HOST" = "unix://${KUBEDIRECT_DOCKER_RUN:-/run/kubedirect-docker}/docker.sock" ] && private=true

spec=$SPEC
if $private || [ "${NODE_IMAGE:-}" = build ]; then
  image=$("$ROOT/hack/nodeimage/build.sh" | tail -1)
  grep -q '^  kind:' "$SPEC" && { echo "$SPEC already has spec.kind: set nodeImage: $image there" >&2; exit 1; }
  spec=$(mktemp "${TMPDIR:-/tmp}/kubedirect-demo.XXXXXX.yaml")
  trap 'rm -f "$spec"' EXIT
  { cat "$SPEC"; printf '  kind:\n    nodeImage: %s\n' "$image"; } >"$spec"
fi
name=$(awk '/^metadata:/ {m=1; next} m && /^[^ ]/ {m=0} m && $1 == "name:" {print $2; exit}' "$SPEC")

"$BIN" create cluster -f "$spec"
if "$BIN" --help 2>/dev/null | grep -qE '^[[:space:]]+validate[[:space:]]'; then
  "$BIN" validate cluster --name "$name" --wait 10m
else
  echo "kubedirect validate is not available in this build; skipping validation" >&2
fi

cat <<EOF

The cluster $name runs on DOCKER_HOST=$DOCKER_HOST.
  export DOCKER_HOST=$DOCKER_HOST
  kubectl --context kind-$name get nodes
  $BIN delete cluster --name $name
EOF
$private && echo "  hack/docker.sh down        # stops the private Docker daemon once no cluster is needed"
exit 0
