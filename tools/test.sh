#!/usr/bin/env bash
# Runs every test of the project on a fresh machine (installs what is missing first).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh
# The flex-vs-wgpu parity test must not skip itself: lavapipe is installed above.
export EPSVAE_REQUIRE_WGPU=1
cargo test --workspace 2>&1
