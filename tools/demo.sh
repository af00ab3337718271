#!/usr/bin/env bash
# The demo on a fresh machine: installs what is missing, builds the wasm site with the shipped
# weights, and serves it on http://127.0.0.1:8080/ (PORT=... to change). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/site.sh target/site
cargo build --bin epsvae
exec "${CARGO_TARGET_DIR:-target}/debug/epsvae" serve target/site --port "${PORT:-8080}"
