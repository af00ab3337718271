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
timed "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings 2>&1
timed "cargo test build" cargo test --workspace --no-run 2>&1
timed "cargo test run" cargo test --workspace 2>&1
timed "site build" bash tools/site.sh target/site
timed "browser tests" node --test --test-concurrency=1 tests/browser.test.mjs 2>&1
# Every parser of untrusted bytes under libFuzzer for 20 s each (SECURITY.md "Fuzzing").
timed "fuzzing" bash tools/fuzz.sh 20
echo "time: tools/test.sh took $((SECONDS - start)) s after set-up"
