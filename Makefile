# The two commands of the README. Both install what they need first.
.PHONY: run run-broker test deps ui check bench bench-desktop types

deps:
	@./scripts/deps.sh

# The web UI, built into ui/dist (the app embeds it at compile time).
ui: deps
	cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build

# Regenerates the UI's TypeScript types (ui/src/lib/generated.ts) from the Rust types
# (crates/client/src/ts.rs says which); `cargo test` fails while the file is stale.
types:
	cargo run -q -p firedoor-client --features ts --bin firedoor-types

# Runs the desktop console in demo mode: the broker in-process on an embedded
# SQLite database with a seeded team; you are bob.
run: ui
	cargo run -q -p firedoor -- --demo

# Runs only the demo broker (no window), printing the URL and a token per user.
run-broker: deps
	cargo run -q -p firedoor-server -- --data-dir firedoor-demo demo

# Runs every test: UI component tests, then unit, property, HTTP API, real
# PostgreSQL, crash, CLI, keyring, replicas behind HAProxy and end-to-end tests of
# the real app window; then the store-level tests (HTTP API, break glass, on call,
# incidents) again on a PostgreSQL store started by the harness.
test: ui
	cd ui && npm test
	cargo test --workspace --locked
	FIREDOOR_TEST_STORE=postgres cargo test --workspace --locked --test api --test breakglass --test oncall --test incidents --test approvals --test notifications --test oncall_sync --test siem --test ssh --test sso

# Lints as CI runs them.
check: ui
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

bench: deps
	cargo bench -p firedoor-server --bench broker
	cargo bench -p firedoor-server --bench events
	cargo bench -p firedoor-server --bench breakglass
	cargo bench -p firedoor-server --bench sso
	cargo bench -p firedoor-client --bench unlock

bench-desktop: ui
	./scripts/bench-desktop.sh
