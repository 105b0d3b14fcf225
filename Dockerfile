# vigil image: built with the same toolchain as scripts/setup.sh (stable 1.95 for user space, a nightly
# with rust-src and bpf-linker 0.13 on LLVM 22 for the eBPF programs), run from a slim Debian.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
# aya-build runs `rustup run nightly`; pin the nightly whose LLVM matches bpf-linker's.
RUN rustup toolchain install nightly-2026-05-19 --profile minimal --component rust-src \
 && rustup toolchain link nightly "$(rustc +nightly-2026-05-19 --print sysroot)"
RUN LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
    cargo install --locked bpf-linker@0.13.0 --no-default-features --features llvm-22
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin vigil

FROM debian:bookworm-slim
COPY --from=build /src/target/release/vigil /usr/local/bin/vigil
EXPOSE 10420
ENTRYPOINT ["/usr/local/bin/vigil"]
