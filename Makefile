# The two commands of the README. Both install what they need first.
.PHONY: run test deps check bench

deps:
	@./scripts/deps.sh

# Runs the demo broker (built-in demo policy, embedded SQLite, demo users).
run: deps
	cargo run -q -p firedoor-server -- --data-dir firedoor-demo demo

# Runs every test: unit, property, HTTP API, real PostgreSQL, crash and CLI tests.
test: deps
	cargo test --workspace --locked

# Lints as CI runs them.
check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

bench: deps
	cargo bench -p firedoor-server --bench broker
