#!/usr/bin/env bash
# Installs what the build and tests need and a fresh Debian machine lacks: Debian packages through apt
# (only when a command is missing) and checks Go. Safe to run again; prints what it installs.
set -euo pipefail
# golangci-lint (`make golangci-lint`), built with `go install` from the Go module proxy into the cache,
# never into the repo: `hack/ensure-tools.sh --golangci-lint` builds it when missing and prints its path.
golangci_lint_version=v2.15.0
golangci_lint="${KUBEDIRECT_CACHE:-$HOME/.cache/kubedirect}/tools/golangci-lint-$golangci_lint_version/golangci-lint"
if [ "${1:-}" = --golangci-lint ]; then
  if [ ! -x "$golangci_lint" ]; then
    echo "ensure-tools: building golangci-lint $golangci_lint_version (go install, a few minutes)" >&2
    GOBIN="$(dirname "$golangci_lint")" GOFLAGS= go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$golangci_lint_version" >&2
  fi
  echo "$golangci_lint"
  exit 0
fi
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have nft || need+=(nftables)
have clang || need+=(clang)
have llvm-strip || need+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
have bpftool || need+=(bpftool)
have flock || need+=(util-linux)
have curl || need+=(curl)
have musl-gcc || need+=(musl-tools) # the e2e's musl DNS client (hack/e2e/resolve.c)
have wrk || need+=(wrk)             # the lab benchmark's load generator (make bench-lab)
have nginx || need+=(nginx-light)   # and its backend; the package's service is never started (policy-rc.d)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-tools: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "ensure-tools: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # No package's service may start on this machine (nginx would listen on :80): invoke-rc.d asks
  # policy-rc.d, and 101 means "not allowed". Only when no policy exists, and removed after.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    trap 'rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy"
  fi
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ -z "$policy" ] || rm -f "$policy"
fi
have go || { echo "ensure-tools: Go is required (go 1.26 or newer)" >&2; exit 1; }
# moto (an AWS emulator) for the TestMoto... tests of provision/aws. PyPI may be unreachable: a failed
# install is harmless, those tests then skip and say why.
if ! python3.11 -c 'import moto' >/dev/null 2>&1; then
  if have python3.11; then
    echo "ensure-tools: installing moto[server]==5.2.1 for python3.11 with pip" >&2
    timeout 120 python3.11 -m pip install --quiet --disable-pip-version-check --retries 0 --timeout 10 'moto[server]==5.2.1' >/dev/null 2>&1 ||
      echo "ensure-tools: could not install moto (PyPI unreachable?); the TestMoto tests will skip" >&2
  else
    echo "ensure-tools: no python3.11, so no moto; the TestMoto tests will skip" >&2
  fi
fi
