#!/usr/bin/env bash
# Runs every test of the project on a fresh machine (installs what is missing first): the Rust
# tests (model, flow, weight file, CLI, training units), then the page in headless Chromium on
# WebGPU (SwiftShader) and on the CPU, against the site built from this checkout; then 20 s of
# fuzzing for each parser of untrusted bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh
# The flex-vs-wgpu parity test must not skip itself: lavapipe is installed above.
export EPSVAE_REQUIRE_WGPU=1
start=$SECONDS
# Formatting (rustfmt.toml) and lints first: a change that breaks either fails here.
timed "cargo fmt --check" cargo fmt --all --check
timed "cargo fmt --check (fuzz targets)" cargo fmt --all --check --manifest-path fuzz/Cargo.toml
# Clippy's lints (what `cargo clippy --workspace --all-targets -- -D warnings` checks) run inside
# the test build: cargo compiles the workspace's own crates with clippy-driver (its
# RUSTC_WORKSPACE_WRAPPER; clippy's CLIPPY_ARGS carries `-D warnings`), so the dependencies are
# built once, for the tests, instead of a second time in check mode for `cargo clippy`. Should a
# warning still be printed (a lint or clippy's interface changed), the step fails on it.
lints=(env RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__")
log=$(mktemp)
timed "cargo test build + clippy" "${lints[@]}" cargo test --workspace --all-targets --no-run 2>&1 | tee "$log"
if grep -q '^warning' "$log"; then
  echo "test.sh: the build printed warnings (above); clippy and rustc warnings fail the tests" >&2
  exit 1
fi
rm -f "$log"
timed "cargo test run" "${lints[@]}" cargo test --workspace 2>&1
timed "site build" bash tools/site.sh target/site
timed "browser tests" node --test --test-concurrency=1 tests/browser.test.mjs 2>&1
# Every parser of untrusted bytes under libFuzzer for 20 s each (SECURITY.md "Fuzzing").
timed "fuzzing" bash tools/fuzz.sh 20
echo "time: tools/test.sh took $((SECONDS - start)) s after set-up"
