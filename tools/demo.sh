#!/usr/bin/env bash
# The demo on a fresh machine. Until the browser page lands (issue 4), it reconstructs the bundled
# sample photos with the command-line tool and the shipped weights, writing every denoising frame.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh
cargo build --bin epsvae
out=target/demo
mkdir -p "$out"
for img in www/samples/*.jpg; do
  name=$(basename "$img" .jpg)
  ./target/debug/epsvae reconstruct "$img" "$out/$name.png" --steps 3 --seed 0 \
    --weights weights/epsvae-small.safetensors --frames "$out/$name-frames" --baseline "$out/$name-vae.png"
done
echo "demo output in $out/ (NAME.png: ε-VAE, 3 steps; NAME-vae.png: VAE baseline; NAME-frames/: every x_t and x̂0)"
