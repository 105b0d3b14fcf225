# The two commands of the README. Both run scripts/setup.sh first (idempotent; about a second when
# everything is installed). Both need root: vigil loads eBPF programs, the tests run real ones.
.PHONY: run test setup setup-test bench-growth soak

# Runs vigil on this node with the embedded default configuration. Extra flags: make run ARGS='--log.level debug'
run: setup
	cargo build --release --bin vigil
	./target/release/vigil $(ARGS)

# The whole test suite (scripts/test.sh): formatting, lints, unit and fixture tests, then the end-to-end
# scenarios against the real kernel and real workloads.
test: setup-test
	bash scripts/test.sh

# What vigil costs as its node fills: RSS, scrape cost and exposition size against pods and label sets,
# RSS against connections (integration/src/bin/bench_growth.rs; about 12 minutes, ARGS=--quick for 3).
bench-growth: setup-test
	cargo build --release -p vigil -p vigil-integration --bins
	./target/release/bench-growth $(ARGS)

# Process churn plus load for 30 minutes, then vigil's tables, connections, series and RSS against their
# baseline (integration/src/bin/soak.rs; ARGS='--minutes N'). `make test` runs a two-minute version.
soak: setup-test
	cargo build --release -p vigil -p vigil-integration --bins
	./target/release/soak $(ARGS)

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test
