#!/usr/bin/env bash
# What the browser build and tests need beyond tools/setup.sh: the wasm target, wasm-bindgen at the
# version in Cargo.lock, npm's binaryen and playwright-core, Debian's Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/lib.sh
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$want" ]; then
  timed "cargo install wasm-bindgen-cli" cargo install wasm-bindgen-cli --version "$want"
fi
[ -d node_modules/binaryen ] && [ -d node_modules/playwright-core ] || timed "npm ci" npm ci --no-audit --no-fund
if ! command -v chromium >/dev/null; then
  apt_install chromium
fi
