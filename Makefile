# The two commands of the README. Both install what they need first.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo -E env "PATH=$$PATH")
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
.PHONY: run run-broker test deps ui check bench bench-desktop types package appimage install-test

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
	FIREDOOR_TEST_STORE=postgres cargo test --workspace --locked --test api --test breakglass --test oncall --test incidents --test approvals --test notifications --test oncall_sync --test siem --test ssh --test sso --test quorum --test drills --test uses --test reports
	$(SUDO) ./scripts/install-test.sh --prebuilt

# Installs the two .deb packages (made from the debug builds), runs the broker as its
# unit says and the app under Xvfb, opens a firedoor:// link, then purges both. Root.
install-test: ui
	$(SUDO) ./scripts/install-test.sh

# Lints as CI runs them.
check: ui
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

bench: deps
	cargo bench -p firedoor-server --bench broker
	cargo bench -p firedoor-server --bench events
	cargo bench -p firedoor-server --bench breakglass
	cargo bench -p firedoor-server --bench sso
	cargo bench -p firedoor-server --bench report
	cargo bench -p firedoor-client --bench unlock
	cargo bench -p firedoor-client --bench quorum

bench-desktop: ui
	./scripts/bench-desktop.sh

# The release packages: the desktop app's .deb (Tauri bundler: desktop file, icon,
# the firedoor:// scheme) and the broker's .deb (systemd unit, its own user, example
# policy), both in dist/. The UI is built by the `ui` step (not again by the bundler).
package: ui
	ui/node_modules/.bin/tauri build --ci --bundles deb --config '{"build":{"beforeBuildCommand":""}}'
	mkdir -p dist
	cp $(TARGET_DIR)/release/bundle/deb/Firedoor_*.deb dist/
	./scripts/package-server.sh --release
	@ls -l dist/*.deb

# The AppImage: the bundler downloads linuxdeploy and AppRun from GitHub, so this runs
# only on a machine that reaches GitHub (not on one limited to package registries).
appimage: ui
	ui/node_modules/.bin/tauri build --ci --bundles appimage --config '{"build":{"beforeBuildCommand":""}}'
