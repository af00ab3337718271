#!/usr/bin/env bash
# Builds the static site into target/site/ (or the folder given): the wasm module (burn on WebGPU
# with a CPU fallback), its wasm-bindgen glue, the page, the sample photos and the weights. Any
# static host can serve the folder as a public link.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/site}"
source tools/setup.sh
bash tools/setup-web.sh
cargo build --lib --target wasm32-unknown-unknown --profile wasm --no-default-features --features web
wasm="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/wasm/epsvae.wasm"
rm -rf "$out" && mkdir -p "$out/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$out/pkg" "$wasm"
# npm's binaryen (Debian's wasm-opt 108 breaks the module at init; PLATFORM.md). It takes minutes,
# so its output is kept in target/wasm-opt/ under the hash of its input.
key=$(sha256sum "$out/pkg/epsvae_bg.wasm" | cut -c1-16)
opt="target/wasm-opt/$key.wasm"
if [ ! -s "$opt" ]; then
  mkdir -p target/wasm-opt
  node node_modules/binaryen/bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    "$out/pkg/epsvae_bg.wasm" -o "$opt.tmp"
  mv "$opt.tmp" "$opt"
fi
cp "$opt" "$out/pkg/epsvae_bg.wasm"
cp -r www/index.html www/app.js www/worker.js www/style.css www/samples "$out/"
mkdir -p "$out/weights"
cp weights/manifest.json weights/*.safetensors "$out/weights/"
raw=$(stat -c %s "$out/pkg/epsvae_bg.wasm")
gz=$(gzip -9 -c "$out/pkg/epsvae_bg.wasm" | wc -c)
echo "site: $out (wasm $raw bytes, $gz gzipped)"
