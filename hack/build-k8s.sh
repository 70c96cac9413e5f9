#!/usr/bin/env bash
# Builds real Kubernetes components (and etcd) from the Go module proxy into a cache outside the repo.
#   hack/build-k8s.sh [COMPONENT...]   (default: kube-apiserver etcd)
# Components: kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl etcd
# Prints the directory holding the binaries on its last line. Env: KUBE_VERSION (default v1.34.4),
# ETCD_VERSION (default v3.6.5), KUBEDIRECT_CACHE (default ~/.cache/kubedirect).
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.5}
CACHE=${KUBEDIRECT_CACHE:-$HOME/.cache/kubedirect}
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kube-apiserver etcd)

bin="$CACHE/k8s/$KUBE_VERSION/bin"
mod="$CACHE/k8s/$KUBE_VERSION/module"
mkdir -p "$bin" "$mod"
exec 9>"$CACHE/k8s/$KUBE_VERSION/.lock"
flock 9 # one build at a time per version, shared by parallel runs

staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)
staging_version="v0.${KUBE_VERSION#v1.}"

if [ ! -f "$mod/go.mod" ] || ! grep -q "k8s.io/kubernetes $KUBE_VERSION" "$mod/go.mod"; then
  {
    echo "module kubedirect.io/k8s-tools"
    echo "go 1.24"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    for s in "${staging[@]}"; do echo "replace k8s.io/$s => k8s.io/$s $staging_version"; done
  } >"$mod/go.mod"
  mkdir -p "$mod/etcd"
  cat >"$mod/etcd/main.go" <<'GO'
// Command etcd is the real etcd server command line, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  (cd "$mod" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null)
fi

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1
 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean
 -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
for c in "${components[@]}"; do
  [ -x "$bin/$c" ] && continue
  case "$c" in
    etcd) pkg=./etcd ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|kubelet|kubeadm|kubectl) pkg=k8s.io/kubernetes/cmd/$c ;;
    *) echo "build-k8s: unknown component $c" >&2; exit 2 ;;
  esac
  echo "build-k8s: building $c $KUBE_VERSION" >&2
  (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$bin/$c.tmp" "$pkg")
  mv "$bin/$c.tmp" "$bin/$c"
done
echo "$bin"
