# vigil image: built with the toolchain of scripts/setup.sh, whose versions both read from
# scripts/toolchain.env (stable Rust for user space; a nightly with rust-src and bpf-linker on Debian's
# LLVM for the eBPF programs), run from a slim Debian. There is no image builder on the development
# machine: the build steps below are the ones scripts/setup.sh runs there, and hadolint checks this file
# (integration/tests/shipping.rs).
# The tag is RUST_VERSION of scripts/toolchain.env (a FROM cannot read a file; a test compares them).
FROM rust:1.95-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY scripts/toolchain.env scripts/toolchain.env
# The LLVM major is pinned by the package names; the Debian point release is not, so security updates
# of the same major apply.
# hadolint ignore=DL3008
RUN . scripts/toolchain.env \
 && apt-get update \
 && apt-get install -y --no-install-recommends "llvm-$LLVM_MAJOR-dev" "libpolly-$LLVM_MAJOR-dev" libzstd-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
# aya-build runs `rustup run nightly`: the pinned nightly, linked under that name.
RUN . scripts/toolchain.env \
 && rustup toolchain install "$RUST_NIGHTLY" --profile minimal --component rust-src \
 && rustup toolchain link nightly "$(rustc "+$RUST_NIGHTLY" --print sysroot)"
RUN . scripts/toolchain.env \
 && env LLVM_PREFIX="/usr/lib/llvm-$LLVM_MAJOR" "LLVM_SYS_${LLVM_MAJOR}1_PREFIX=/usr/lib/llvm-$LLVM_MAJOR" \
    cargo install --locked "bpf-linker@$BPF_LINKER_VERSION" --no-default-features --features "llvm-$LLVM_MAJOR"
COPY . .
RUN cargo build --release --locked --bin vigil

FROM debian:bookworm-slim
COPY --from=build /src/target/release/vigil /usr/local/bin/vigil
# vigil runs as root with only the capabilities the DaemonSet adds (BPF, PERFMON, SYS_PTRACE,
# DAC_READ_SEARCH): Kubernetes grants added capabilities to a non-root user only as ambient ones,
# which it does not set, so a USER here would leave vigil without them.
EXPOSE 10420
ENTRYPOINT ["/usr/local/bin/vigil"]
