#!/usr/bin/env bash
# A private Docker daemon for kind clusters on machines that have none (this project's sandboxes, CI).
#
#   hack/docker.sh up      start it unless a daemon is reachable; prints `export DOCKER_HOST=...` last
#   hack/docker.sh down    stop the private daemon (and its containerd) by pid
#   hack/docker.sh env     print `export DOCKER_HOST=...` for the private daemon if it runs
#   hack/docker.sh status  exit 0 when the private daemon answers
#
# `eval "$(hack/docker.sh up)"` leaves DOCKER_HOST set in the calling shell. `up` is idempotent: a
# daemon reachable through $DOCKER_HOST or /var/run/docker.sock is used as is (nothing is started), a
# running private daemon is reused. On a fresh machine it apt-get installs docker.io, containerd, runc
# and jq first.
#
# The private daemon has its own socket, pidfile and exec root under $KUBEDIRECT_DOCKER_RUN
# (default /run/kubedirect-docker), its own containerd, and a data root in the cache
# ($KUBEDIRECT_CACHE/docker, default ~/.cache/kubedirect/docker) so built node images survive a stop.
# Containers go under the caller's own memory cgroup (cgroupfs driver). Where the capability bounding
# set lacks CAP_SYS_RESOURCE the default runtime is hack/docker/runc-wrapper, which makes
# --privileged containers (kind nodes) work. `down` restores the host's iptables FORWARD policy, which
# dockerd turns to DROP.
set -euo pipefail

HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN=${KUBEDIRECT_DOCKER_RUN:-/run/kubedirect-docker}
CACHE=${KUBEDIRECT_CACHE:-$HOME/.cache/kubedirect}
DATA=$CACHE/docker
SOCK=$RUN/docker.sock
CSOCK=$RUN/containerd/containerd.sock
PIDFILE=$RUN/dockerd.pid
CPIDFILE=$RUN/containerd.pid
HOST=unix://$SOCK

log() { echo "docker.sh: $*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

answers() { DOCKER_HOST=$1 timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  command -v jq >/dev/null || missing+=(jq)
  command -v iptables >/dev/null || missing+=(iptables)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

own_cgroup() { # the caller's memory cgroup (cgroup v1), or the unified one (cgroup v2)
  local line
  line=$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' /proc/self/cgroup || true)
  [ -n "$line" ] || line=$(grep -E '^0::' /proc/self/cgroup || true)
  echo "${line#*:*:}"
}

need_wrapper() {
  local bnd
  bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
  [ $(( (0x$bnd >> 24) & 1 )) -eq 0 ]
}

wait_for() { # wait_for SECONDS CMD...: poll until CMD succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}

up() {
  if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "$HOST" ] && answers "$DOCKER_HOST"; then
    log "using the daemon at DOCKER_HOST=$DOCKER_HOST"
    echo "export DOCKER_HOST=$DOCKER_HOST"
    return
  fi
  if [ -z "${DOCKER_HOST:-}" ] && [ -S /var/run/docker.sock ] && answers unix:///var/run/docker.sock; then
    log "using the system daemon at /var/run/docker.sock"
    echo "export DOCKER_HOST=unix:///var/run/docker.sock"
    return
  fi
  install_packages
  mkdir -p "$RUN" "$DATA"
  exec 8>"$RUN/.lock"
  flock 8 # two callers starting the daemon at once: the second waits and reuses it
  if alive "$PIDFILE" && answers "$HOST"; then
    log "reusing the private daemon (pid $(cat "$PIDFILE"))"
    echo "export DOCKER_HOST=$HOST"
    return
  fi
  [ -f "$RUN/forward-policy" ] || iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p' >"$RUN/forward-policy" || true

  if ! alive "$CPIDFILE"; then
    mkdir -p "$RUN/containerd" "$DATA/containerd"
    cat >"$RUN/containerd.toml" <<EOF
version = 2
root = "$DATA/containerd"
state = "$RUN/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CSOCK"
[debug]
  level = "warn"
EOF
    log "starting containerd (log $RUN/containerd.log)"
    setsid containerd --config "$RUN/containerd.toml" >>"$RUN/containerd.log" 2>&1 </dev/null 8>&- &
    echo $! >"$CPIDFILE"
    wait_for 30 test -S "$CSOCK" || { log "containerd did not come up; see $RUN/containerd.log"; exit 1; }
  fi

  local cgroup args=()
  cgroup=$(own_cgroup)
  args=(--data-root "$DATA/data" --exec-root "$RUN/exec" --pidfile "$PIDFILE" -H "$HOST"
    --containerd "$CSOCK" --storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs
    --cgroup-parent "${cgroup%/}/kubedirect-docker")
  if need_wrapper; then
    cp "$HACK/docker/runc-wrapper" "$RUN/runc-wrapper"
    args+=(--add-runtime "kubedirect-runc=$RUN/runc-wrapper" --default-runtime kubedirect-runc)
    log "capability bounding set lacks CAP_SYS_RESOURCE: default runtime is $RUN/runc-wrapper"
  fi
  log "starting dockerd (log $RUN/dockerd.log, cgroup parent ${cgroup%/}/kubedirect-docker)"
  setsid dockerd "${args[@]}" >>"$RUN/dockerd.log" 2>&1 </dev/null 8>&- & # the daemons must not hold the lock
  wait_for 60 answers "$HOST" || { log "dockerd did not answer; see $RUN/dockerd.log"; tail -20 "$RUN/dockerd.log" >&2; exit 1; }
  log "private dockerd $(DOCKER_HOST=$HOST docker version --format '{{.Server.Version}}') is up (pid $(cat "$PIDFILE"))"
  echo "export DOCKER_HOST=$HOST"
}

stop_pid() { # stop_pid PIDFILE NAME
  alive "$1" || { rm -f "$1"; return 0; }
  local pid
  pid=$(cat "$1")
  log "stopping $2 (pid $pid)"
  kill -TERM "$pid"
  wait_for 30 sh -c "! kill -0 $pid 2>/dev/null" || { log "$2 did not stop; killing it"; kill -KILL "$pid" || true; }
  rm -f "$1"
}

down() {
  [ -d "$RUN" ] || return 0
  stop_pid "$PIDFILE" dockerd
  stop_pid "$CPIDFILE" containerd
  if [ -s "$RUN/forward-policy" ]; then
    iptables -P FORWARD "$(cat "$RUN/forward-policy")" 2>/dev/null || true
    rm -f "$RUN/forward-policy"
  fi
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  env) alive "$PIDFILE" && echo "export DOCKER_HOST=$HOST" ;;
  status) alive "$PIDFILE" && answers "$HOST" ;;
  *) echo "usage: $0 up|down|env|status" >&2; exit 2 ;;
esac
