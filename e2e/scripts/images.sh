#!/usr/bin/env bash
# Builds the zop-operator and zop-worker container images as OCI archives, without
# Docker: umoci (e2e/scripts/tools.sh) writes each image from a root made of this host's
# files, distroless-like: the binaries (debug info stripped), the shared libraries they
# load, a `nonroot` user (65532), the CA certificates and /tmp. No shell. The worker
# image also carries cuBLAS and NVRTC from NVIDIA's wheels, so that its host needs the
# NVIDIA driver (libcuda, mounted by the NVIDIA container runtime) and no CUDA toolkit.
#
#   e2e/scripts/images.sh [--profile debug|release] [--out DIR]
#
# The binaries come from target/PROFILE (default debug, what e2e/test builds); only
# when one is missing does this run `cargo build [--release] -p zop-operator -p
# zop-worker --bins`, so build first when the sources changed. Writes
# DIR/zop-operator.oci.tar and DIR/zop-worker.oci.tar (default DIR: target/images), each
# an OCI image layout whose one image is tagged with the crate version, and prints their
# sizes.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
profile=debug out=$root/target/images
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    *) echo "usage: $0 [--profile debug|release] [--out DIR]" >&2; exit 2 ;;
  esac
done
case $profile in debug|release) ;; *) echo "images: unknown profile '$profile'" >&2; exit 2 ;; esac

die() { echo "images: $*" >&2; exit 1; }
eval "$("$root/e2e/scripts/tools.sh" env | grep -E '^export ZOP_(UMOCI|NVRTC_DIR|CUBLAS_DIR)=')"
[ -x "$ZOP_UMOCI" ] || die "umoci is missing ($ZOP_UMOCI): run e2e/scripts/tools.sh build"
umoci=$ZOP_UMOCI
bin=${CARGO_TARGET_DIR:-$root/target}/$profile
cuda_dir=/usr/local/lib/zop-cuda
cuda_libs=("$ZOP_CUBLAS_DIR/libcublas.so.12" "$ZOP_CUBLAS_DIR/libcublasLt.so.12"
           "$ZOP_NVRTC_DIR/libnvrtc.so.12" "$ZOP_NVRTC_DIR"/libnvrtc-builtins.so.*)

if [ ! -x "$bin/zop-operator" ] || [ ! -x "$bin/kubectl-zop" ] || [ ! -x "$bin/zop-worker" ]; then
  flag=(); [ "$profile" = release ] && flag=(--release)
  (cd "$root" && cargo build "${flag[@]}" -p zop-operator -p zop-worker --bins)
fi
version=$("$bin/zop-operator" --version | awk '{print $2}')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# Copies BIN... (debug info stripped, symbols kept for backtraces) into DIR/usr/local/bin.
stage_bins() {
  local dir=$1/usr/local/bin b; shift
  mkdir -p "$dir"
  for b in "$@"; do strip --strip-debug -o "$dir/$b" "$bin/$b"; done
}

# Copies into BASE the shared libraries that the ELF files under PART... load, each at
# the path where this host's loader found it (ldd): the loader's default directories,
# where it finds them again with no ld.so.cache. Those the parts hold themselves
# (cuBLAS's cuBLASLt) stay there.
stage_libs() {
  local base=$1 lib listed; shift
  listed=$(find "$@" -type f \( -perm -u+x -o -name '*.so*' \) -print0 | xargs -0 env -u LD_LIBRARY_PATH ldd 2>/dev/null || true)
  if grep -q 'not found' <<<"$listed"; then die "unresolved libraries: $(grep 'not found' <<<"$listed" | sort -u)"; fi
  awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' <<<"$listed" | sort -u |
    while read -r lib; do
      [[ $lib == "$work"/* ]] && continue
      mkdir -p "$base$(dirname "$lib")"
      cp -L "$lib" "$base$lib"
    done
}

stage_base() {
  local base=$1
  mkdir -p "$base/etc/ssl/certs" "$base/tmp"
  chmod 1777 "$base/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$base/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$base/etc/group"
  echo 'hosts: files dns' >"$base/etc/nsswitch.conf"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/"
  else
    echo "images: warning: this host has no /etc/ssl/certs/ca-certificates.crt; the images carry no CA certificates" >&2
  fi
}

# Compressed bytes of the image's layers, from its manifest.
layer_bytes() {
  python3 - "$1" <<'PY'
import json, os, sys
layout = sys.argv[1]
blob = lambda d: os.path.join(layout, "blobs", *d.split(":"))
index = json.load(open(os.path.join(layout, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
print(sum(layer["size"] for layer in manifest["layers"]))
PY
}

# build NAME CONFIG_FLAGS...: the image from $work/NAME/{cuda,bin}, one layer per part
# over the base, the binaries last, so that a new build leaves the larger layers below
# them unchanged in a registry.
build() {
  local name=$1; shift
  local dir=$work/$name part parts=()
  local layout=$dir/layout image=$dir/layout:$version
  for part in cuda bin; do [ -d "$dir/$part" ] && parts+=("$dir/$part"); done
  stage_base "$dir/base"
  stage_libs "$dir/base" "${parts[@]}"
  "$umoci" init --layout "$layout"
  "$umoci" new --image "$image"
  for part in "$dir/base" "${parts[@]}"; do
    "$umoci" insert --rootless --image "$image" --history.created_by "images.sh: ${part##*/}" "$part" /
  done
  "$umoci" config --image "$image" --config.user 65532:65532 --config.workingdir / \
    --config.entrypoint "/usr/local/bin/$name" --config.env PATH=/usr/local/bin "$@"
  "$umoci" gc --layout "$layout"
  tar -C "$layout" --owner=0 --group=0 --numeric-owner -cf "$out/$name.oci.tar" oci-layout index.json blobs
  printf '%-22s %-20s %14s %14s %14s\n' "$name.oci.tar" "$name:$version" "$(layer_bytes "$layout")" \
    "$(stat -c %s "$out/$name.oci.tar")" "$(du -sbc "$dir/base" "${parts[@]}" | tail -1 | cut -f1)" >>"$work/sizes"
}

stage_bins "$work/zop-operator/bin" zop-operator kubectl-zop
build zop-operator

worker_env=()
if ls "${cuda_libs[@]}" >/dev/null 2>&1; then
  mkdir -p "$work/zop-worker/cuda$cuda_dir"
  cp -L "${cuda_libs[@]}" "$work/zop-worker/cuda$cuda_dir/"
  # The worker looks in ZOP_CUDA_LIBRARY_PATH first; with that directory on
  # LD_LIBRARY_PATH too, cudarc finds them under its own names and the worker needs no
  # links in /tmp, which is read-only in the operator's worker Pods.
  worker_env=(--config.env "ZOP_CUDA_LIBRARY_PATH=$cuda_dir" --config.env "LD_LIBRARY_PATH=$cuda_dir")
else
  echo "images: warning: cuBLAS or NVRTC is missing from the tools' cache (e2e/scripts/tools.sh build fetches them); the worker image carries no CUDA libraries" >&2
fi
stage_bins "$work/zop-worker/bin" zop-worker
build zop-worker --config.exposedports 9464/tcp "${worker_env[@]}"

printf '%-22s %-20s %14s %14s %14s\n' archive tag compressed archive uncompressed
cat "$work/sizes"
echo "(bytes; compressed: the layers' gzip sizes in the manifest; uncompressed: the root's files; profile $profile, in $out)"
