#!/usr/bin/env bash
# The whole test suite (what `make test` runs after setup): formatting, lints, unit and fixture tests, then
# the end-to-end scenarios one at a time (they share the kernel's tracepoints and count global events).
# Ends with one line: "N passed, N failed, N skipped" (skipped: root-only tests run without root).
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --workspace --exclude vigil-ebpf --exclude vigil-integration 2>&1 | tee -a "$log"
# --nocapture so that a root-only test run without root shows its "SKIPPED <test>: <reason>" line.
cargo test -p vigil-integration --tests -- --test-threads=1 --nocapture 2>&1 | tee -a "$log"

awk '/^test result:/ { passed += $4; failed += $6 }
     /^SKIPPED / { skipped += 1 }
     END { printf "%d passed, %d failed, %d skipped\n", passed - skipped, failed, skipped }' "$log"
