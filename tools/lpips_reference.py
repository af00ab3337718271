#!/usr/bin/env python3
"""Reference ST-LPIPS scores from the original implementation, for the Rust parity test.

    python3 -m venv venv && venv/bin/pip install torch==2.9.0 torchvision==0.24.0 \
        stlpips-pytorch==0.0.2 IPython torchsummary pillow numpy
    venv/bin/python tools/lpips_reference.py

Makes a few image pairs from the bundled sample photos (saved as PNG, so both sides read the
same 8-bit pixels), scores them with stlpips_pytorch.stlpips.LPIPS(net="alex",
variant="shift_tolerant"), and writes crate/tests/data/lpips/reference.json.
"""
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from stlpips_pytorch import stlpips

root = Path(__file__).resolve().parent.parent
out = root / "crate/tests/data/lpips"
out.mkdir(parents=True, exist_ok=True)

storm = Image.open(root / "www/samples/storm.jpg").convert("RGB")
citrus = Image.open(root / "www/samples/citrus.jpg").convert("RGB")
rng = np.random.default_rng(0)
a = citrus.crop((100, 60, 164, 124))
noisy = Image.fromarray(np.clip(np.asarray(a, np.float64) + rng.normal(0, 12, (64, 64, 3)), 0, 255).round().astype(np.uint8))
pairs = {
    "same": (a, a),
    "noise": (a, noisy),
    "blur": (a, a.filter(ImageFilter.GaussianBlur(1.5))),
    "shift": (a, citrus.crop((101, 60, 165, 124))),
    "other": (a, storm.crop((200, 100, 264, 164))),
    "wide": (citrus.crop((0, 0, 96, 80)), storm.crop((0, 0, 96, 80))),
}
net = stlpips.LPIPS(net="alex", variant="shift_tolerant", verbose=False)
ref = {}
for name, (x, y) in pairs.items():
    x.save(out / f"{name}_a.png")
    y.save(out / f"{name}_b.png")
    t = lambda im: torch.tensor(np.asarray(im), dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        ref[name] = float(net(t(x), t(y)).item())
(out / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
print(json.dumps(ref, indent=1))
