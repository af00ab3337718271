#!/usr/bin/env bash
# Fetches the ST-LPIPS AlexNet weights (BSD-2-clause) from the stlpips-pytorch wheel on PyPI into
# data/lpips/ (git-ignored). The wheel is a zip; nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dst=data/lpips/alex_shift_tolerant.pth
[ -s "$dst" ] && exit 0
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" stlpips-pytorch==0.0.2
mkdir -p data/lpips
python3 - "$tmp"/stlpips_pytorch-0.0.2-py3-none-any.whl "$dst" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth"))
PY
rm -rf "$tmp"
echo "fetched $dst"
