#!/usr/bin/env bash
# Builds the real Kubernetes control plane used by the integration tests from Go modules
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, helm) and
# downloads the third-party CRD modules. Binaries are cached outside the repository, keyed by
# hack/versions.env, so a second run only prints the directory.
#
# Prints the bin directory on its last line. Usage: hack/build-controlplane.sh [--print-dir]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

# the key is the content of the pins and of this script, not where the checkout lives
key="$(cat "$here/versions.env" "$here/build-controlplane.sh" | sha256sum | cut -c1-12)"
cache="${TUNELINE_CACHE:-$HOME/.cache/tuneline}/controlplane/$key"
bin="$cache/bin"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$bin"; exit 0; fi

want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm)
missing=()
for b in "${want[@]}"; do [[ -x "$bin/$b" ]] || missing+=("$b"); done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "control plane binaries cached in $bin" >&2
  echo "$bin"; exit 0
fi
echo "building control plane binaries (${missing[*]}) into $bin; a cold build takes 15-25 minutes on 2 cores" >&2
mkdir -p "$bin" "$cache/src"
start=$(date +%s)

k8s_minor="v0.${KUBERNETES_VERSION#v1.}"
if printf '%s\n' "${missing[@]}" | grep -qE '^kube|^kubectl$'; then
  src="$cache/src/kubernetes"; mkdir -p "$src"; cd "$src"
  go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
  k8s_mod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod"
  {
    echo "module tuneline.io/controlplane"
    echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo "replace ("
    # every staging module k8s.io/kubernetes replaces locally becomes its published v0.<minor>.<patch>
    grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$k8s_mod" | awk -v v="$k8s_minor" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
  go mod tidy -e >/dev/null 2>&1 || true
  go get "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null 2>&1 || true
  go mod tidy
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
  go build -trimpath -ldflags "$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
fi

if [[ ! -x "$bin/etcd" ]]; then
  src="$cache/src/etcd"; mkdir -p "$src"; cd "$src"
  cat > go.mod <<GOMOD
module tuneline.io/etcd
go 1.24
require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat > main.go <<'GO'
// A wrapper around etcd's own main: `go install` of etcd's module fails on its replace directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .
fi

if [[ ! -x "$bin/kwok" ]]; then
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi
if [[ ! -x "$bin/helm" ]]; then
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

# third-party CRDs are read from the module cache by the tests, never copied into the repository
for m in "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION" "sigs.k8s.io/kueue@$KUEUE_VERSION" \
         "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
         "github.com/kedacore/keda/v2@$KEDA_VERSION" "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"; do
  (cd "$cache/src" && go mod download "$m")
done
echo "control plane built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
