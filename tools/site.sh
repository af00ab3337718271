#!/usr/bin/env bash
# Builds the static site into target/site/ (or the folder given): the wasm module (burn on WebGPU
# with a CPU fallback), its wasm-bindgen glue, the page, the sample photos and the weights. Any
# static host can serve the folder as a public link.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/site}"
source tools/setup.sh
bash tools/setup-web.sh
rm -rf "$out" && mkdir -p "$out"
# Two modules: pkg/ (WebGPU) and pkg-cpu/ (burn's flex CPU backend), which the page loads when
# the browser offers no working WebGPU adapter or the person asks for the CPU.
# Each has its own cargo profile (size for the WebGPU one, speed for the CPU one; Cargo.toml).
# wasm-opt is single-threaded and takes minutes, so each module's runs in the background while the
# next one compiles; the script waits for them (and fails with them) before copying the page.
pids=()
# The CPU module is built with wasm SIMD (simd128, in every current browser): burn's flex kernels
# and gemm's matrix products then use 128-bit vectors (README "Sizes"). The WebGPU module needs none.
for variant in pkg:wasm:web,gpu: pkg-cpu:wasm-cpu:web,cpu:+simd128; do
  IFS=: read -r name profile features target_features <<< "$variant"
  dir="$out/$name"
  if [ -n "$target_features" ]; then
    export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=$target_features"
  else
    unset CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS
  fi
  timed "cargo build $name ($profile)" cargo build --lib --target wasm32-unknown-unknown --profile "$profile" --no-default-features --features "$features"
  wasm="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/$profile/epsvae.wasm"
  mkdir -p "$dir"
  wasm-bindgen --target web --no-typescript --out-dir "$dir" "$wasm"
  # npm's binaryen (Debian's wasm-opt 108 breaks the module at init; PLATFORM.md). Its output is
  # kept in target/wasm-opt/ under the hash of its input.
  key=$(sha256sum "$dir/epsvae_bg.wasm" | cut -c1-16)
  opt="target/wasm-opt/$key.wasm"
  if [ -s "$opt" ]; then
    cp "$opt" "$dir/epsvae_bg.wasm"
    continue
  fi
  mkdir -p target/wasm-opt
  (
    timed "wasm-opt $name" node node_modules/binaryen/bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals --enable-simd \
      "$dir/epsvae_bg.wasm" -o "$opt.tmp"
    mv "$opt.tmp" "$opt"
    cp "$opt" "$dir/epsvae_bg.wasm"
  ) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
cp -r www/index.html www/app.js www/worker.js www/sw.js www/style.css www/manifest.webmanifest www/icon-192.png www/icon-512.png www/samples "$out/"
mkdir -p "$out/weights"
cp weights/manifest.json weights/*.safetensors "$out/weights/"
for dir in pkg pkg-cpu; do
  raw=$(stat -c %s "$out/$dir/epsvae_bg.wasm")
  gz=$(gzip -9 -c "$out/$dir/epsvae_bg.wasm" | wc -c)
  echo "site: $out/$dir (wasm $raw bytes, $gz gzipped)"
done
