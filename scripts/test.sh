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
# Each fuzz target briefly on its committed corpus (new inputs go to a scratch directory): a crash fails
# the suite. The long runs are in README.md, "Fuzzing". Here a debug build with overflow checks and no
# AddressSanitizer (vigil's parsers are safe Rust): it compiles in ~5 minutes on 2 cores from nothing,
# where the long runs' optimised, sanitised build takes four times as long.
fuzz_flags=(--dev --sanitizer none --fuzz-dir fuzz)
fuzz_corpus=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$fuzz_corpus"' EXIT
cargo +nightly fuzz build "${fuzz_flags[@]}"
for target in $(cargo +nightly fuzz list --fuzz-dir fuzz); do
  mkdir -p "$fuzz_corpus/$target"
  if ! cargo +nightly fuzz run "${fuzz_flags[@]}" "$target" "$fuzz_corpus/$target" "fuzz/corpus/$target" -- \
    -max_total_time="${VIGIL_FUZZ_SECONDS:-15}" -rss_limit_mb=2048 >"$fuzz_corpus/$target.log" 2>&1; then
    tail -n 40 "$fuzz_corpus/$target.log"
    echo "fuzz target $target failed (its input is in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  echo "fuzz $target: $(grep -Eo '#[0-9]+[[:space:]]+DONE.*' "$fuzz_corpus/$target.log" | tail -n 1)"
done
# --nocapture so that a root-only test run without root shows its "SKIPPED <test>: <reason>" line.
cargo test -p vigil-integration --tests -- --test-threads=1 --nocapture 2>&1 | tee -a "$log"

awk '/^test result:/ { passed += $4; failed += $6 }
     /^SKIPPED / { skipped += 1 }
     END { printf "%d passed, %d failed, %d skipped\n", passed - skipped, failed, skipped }' "$log"
