#!/usr/bin/env bash
# Builds the real control-plane tools from their published Go modules (and
# Prometheus and umoci from Debian's packages, NVRTC and cuBLAS from NVIDIA's Python
# wheels) into a cache outside the repository, keyed by version: a second run builds
# nothing.
#
#   e2e/scripts/tools.sh build   build whatever is missing
#   e2e/scripts/tools.sh env     print shell exports naming every binary
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ZOP_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/zoptoken/tools}

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.21.4
# NVRTC compiles kernels/cuda/*.cu to PTX with no GPU: the kernels' tests check
# that the CUDA sources compile on every machine.
NVRTC_VERSION=12.9.86
# cuBLAS of the same CUDA release (12.9 Update 1), carried by the worker image.
CUBLAS_VERSION=12.9.1.4
# Debian bookworm's umoci writes the container images (e2e/scripts/images.sh).
UMOCI_VERSION=0.4.7

# controller-gen generates the monitoring.coreos.com CRDs from prometheus-operator's API
# types, so that the chart's ServiceMonitor and PrometheusRule are dry-run for real.
CONTROLLER_TOOLS_VERSION=v0.23.0
MONITORING_VERSION=v0.95.2

k8s_dir=$cache/kubernetes-$K8S_VERSION
etcd_dir=$cache/etcd-$ETCD_VERSION
kwok_dir=$cache/kwok-$KWOK_VERSION
helm_dir=$cache/helm-$HELM_VERSION
prom_dir=$cache/prometheus-debian
cgen_dir=$cache/controller-gen-$CONTROLLER_TOOLS_VERSION
mon_dir=$cache/monitoring-crds-$MONITORING_VERSION
nvrtc_dir=$cache/nvrtc-$NVRTC_VERSION
cublas_dir=$cache/cublas-$CUBLAS_VERSION
umoci_dir=$cache/umoci-$UMOCI_VERSION

die() { echo "tools: $*" >&2; exit 1; }

need_go() {
  command -v go >/dev/null || die "Go is not installed: install Go >= 1.26 (GOTOOLCHAIN=local is used, nothing is downloaded)"
  local v; v=$(go env GOVERSION | sed 's/^go//')
  [ "$(printf '%s\n1.26\n' "$v" | sort -V | head -1)" = "1.26" ] || die "Go $v is too old: install Go >= 1.26"
}

# go_build MODULE_DIR OUT_DIR LDFLAGS PACKAGE...
go_build() {
  local mod=$1 out=$2 ldflags=$3; shift 3
  local tmp=$out.partial
  need_go
  rm -rf "$tmp" && mkdir -p "$tmp"
  echo "tools: building $(basename "$out") ($*)" >&2
  local start=$SECONDS
  (cd "$here/tools/$mod" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod \
    go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/" "$@") \
    || die "building $mod failed: check that the Go module proxy is reachable (GOPROXY=$(go env GOPROXY)) and rerun"
  mv "$tmp" "$out"
  echo "tools: built $(basename "$out") in $((SECONDS - start))s" >&2
}

build_kubernetes() {
  [ -x "$k8s_dir/kube-apiserver" ] && return
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local v=k8s.io/component-base/version
  go_build kubernetes "$k8s_dir" \
    "-X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  [ -x "$etcd_dir/etcd" ] && return
  go_build etcd "$etcd_dir" "" . && mv "$etcd_dir/etcd" "$etcd_dir/etcd.tmp" 2>/dev/null || true
  # `go build .` names the binary after the module's last element, which is already "etcd".
  [ -x "$etcd_dir/etcd.tmp" ] && mv "$etcd_dir/etcd.tmp" "$etcd_dir/etcd"
  return 0
}

build_kwok() {
  [ -x "$kwok_dir/kwokctl" ] && return
  go_build kwok "$kwok_dir" "" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
}

build_helm() {
  [ -x "$helm_dir/helm" ] && return
  go_build helm "$helm_dir" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
}

# The ServiceMonitor and PrometheusRule CRDs, generated as prometheus-operator does.
build_monitoring_crds() {
  [ -s "$mon_dir/monitoring.coreos.com_servicemonitors.yaml" ] && return
  go_build monitoring "$cgen_dir" "" sigs.k8s.io/controller-tools/cmd/controller-gen
  local tmp=$mon_dir.partial
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$here/tools/monitoring" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$cgen_dir/controller-gen" \
    crd:allowDangerousTypes=true \
    paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
    output:crd:dir="$tmp/all") || die "generating the monitoring.coreos.com CRDs failed"
  cp "$tmp"/all/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml "$tmp/"
  rm -rf "$tmp/all" "$mon_dir" && mv "$tmp" "$mon_dir"
}

# unpack_deb PACKAGE DIR: Debian's PACKAGE downloaded (never installed) and unpacked into
# DIR/root.
unpack_deb() {
  command -v apt-get >/dev/null || die "apt-get is missing: $1 comes from Debian's '$1' package"
  echo "tools: fetching Debian's $1 package" >&2
  (cd "$2" && apt-get download "$1" >/dev/null 2>&1) \
    || { apt-get update -qq >/dev/null && (cd "$2" && apt-get download "$1" >/dev/null); } \
    || die "apt-get download $1 failed: run 'apt-get update' and check the Debian mirror"
  dpkg-deb -x "$2/$1"_*.deb "$2/root"
}

# Debian's prometheus: the server and promtool, which checks the chart's alerting rules.
build_prometheus() {
  [ -x "$prom_dir/prometheus" ] && [ -x "$prom_dir/promtool" ] && return
  local tmp; tmp=$(mktemp -d)
  unpack_deb prometheus "$tmp"
  mkdir -p "$prom_dir.partial"
  cp "$tmp/root/usr/bin/prometheus" "$tmp/root/usr/bin/promtool" "$prom_dir.partial/"
  rm -rf "$prom_dir" "$tmp" && mv "$prom_dir.partial" "$prom_dir"
}

# fetch_wheel PACKAGE VERSION DIR FILE...: NVIDIA's wheel of PACKAGE from PyPI, unzipped,
# keeping only FILEs (globs, relative to the wheel's root) in DIR. Optional: a failure only
# warns, and what needs the files says it skipped.
fetch_wheel() {
  local package=$1 version=$2 dir=$3; shift 3
  local tmp f; tmp=$(mktemp -d)
  echo "tools: fetching $package $version from PyPI" >&2
  if ! python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$package==$version" \
    || ! python3 -m zipfile -e "$tmp"/*.whl "$tmp/whl"; then
    echo "tools: warning: could not fetch $package $version with pip; what needs it will say it skipped" >&2
    rm -rf "$tmp"
    return 0
  fi
  mkdir -p "$dir.partial"
  for f in "$@"; do cp "$tmp"/whl/$f "$dir.partial/"; done
  rm -rf "$dir" "$tmp" && mv "$dir.partial" "$dir"
}

# NVRTC compiles the kernels in their tests (skipped without it) and goes into the worker
# image.
build_nvrtc() {
  [ -e "$nvrtc_dir/libnvrtc.so.12" ] && return
  fetch_wheel nvidia-cuda-nvrtc-cu12 "$NVRTC_VERSION" "$nvrtc_dir" \
    nvidia/cuda_nvrtc/lib/libnvrtc.so.12 'nvidia/cuda_nvrtc/lib/libnvrtc-builtins.so.*'
}

# Debian's umoci package, unpacked. It links only against glibc (>= 2.34), so it runs
# wherever `--version` does; that is checked here rather than at first use.
build_umoci() {
  [ -x "$umoci_dir/umoci" ] && return
  local tmp; tmp=$(mktemp -d)
  unpack_deb umoci "$tmp"
  local v; v=$("$tmp/root/usr/bin/umoci" --version 2>&1) \
    || die "Debian's umoci does not run here ($v); ldd says: $(ldd "$tmp/root/usr/bin/umoci" 2>&1 | tr '\n' ' ')"
  [[ $v == *" $UMOCI_VERSION"* ]] || die "Debian ships '$v', not umoci $UMOCI_VERSION: update UMOCI_VERSION"
  mkdir -p "$umoci_dir.partial"
  cp "$tmp/root/usr/bin/umoci" "$umoci_dir.partial/"
  rm -rf "$umoci_dir" "$tmp" && mv "$umoci_dir.partial" "$umoci_dir"
}

# cuBLAS for the worker image: libcublas and the libcublasLt it loads. Without it the
# worker image carries no CUDA libraries, and e2e/scripts/images.sh says so.
build_cublas() {
  [ -e "$cublas_dir/libcublas.so.12" ] && [ -e "$cublas_dir/libcublasLt.so.12" ] && return
  fetch_wheel nvidia-cublas-cu12 "$CUBLAS_VERSION" "$cublas_dir" \
    nvidia/cublas/lib/libcublas.so.12 nvidia/cublas/lib/libcublasLt.so.12
}

cmd_env() {
  cat <<ENV
export ZOP_K8S_VERSION=$K8S_VERSION
export ZOP_KUBE_APISERVER=$k8s_dir/kube-apiserver
export ZOP_KUBE_CONTROLLER_MANAGER=$k8s_dir/kube-controller-manager
export ZOP_KUBE_SCHEDULER=$k8s_dir/kube-scheduler
export ZOP_KUBECTL=$k8s_dir/kubectl
export ZOP_ETCD=$etcd_dir/etcd
export ZOP_KWOK=$kwok_dir/kwok
export ZOP_KWOKCTL=$kwok_dir/kwokctl
export ZOP_HELM=$helm_dir/helm
export ZOP_PROMETHEUS=$prom_dir/prometheus
export ZOP_PROMTOOL=$prom_dir/promtool
export ZOP_MONITORING_CRDS=$mon_dir
export ZOP_UMOCI=$umoci_dir/umoci
export ZOP_NVRTC_DIR=$nvrtc_dir
export ZOP_CUBLAS_DIR=$cublas_dir
export LD_LIBRARY_PATH=$nvrtc_dir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
ENV
}

case ${1:-build} in
  build)
    mkdir -p "$cache"
    build_etcd; build_kwok; build_helm; build_prometheus; build_umoci; build_nvrtc; build_cublas; build_monitoring_crds
    build_kubernetes
    ;;
  env) cmd_env ;;
  *) die "usage: $0 build|env" ;;
esac
