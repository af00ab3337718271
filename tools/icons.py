"""Draws the page's app icons, www/icon-192.png and www/icon-512.png: a square that turns from
noise (top left) into a smooth colour field (bottom right), what the decoder does, with an ε on it.

    python3 tools/icons.py        # needs Pillow and numpy, and the DejaVu fonts (Debian)
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf"
www = Path(__file__).resolve().parent.parent / "www"

for side in (192, 512):
    y, x = np.mgrid[0:side, 0:side] / (side - 1)
    smooth = np.stack([0.15 + 0.6 * x, 0.35 + 0.4 * y, 0.75 - 0.35 * x * y], axis=-1)
    cells = np.random.default_rng(0).normal(0.5, 0.25, (24, 24, 3))  # coarse noise: a small PNG
    noise = cells[(y * 23.999).astype(int), (x * 23.999).astype(int)]
    w = np.clip(((x + y) / 2 - 0.3) / 0.4, 0, 1)[..., None]  # 0 = noise, 1 = smooth
    img = Image.fromarray((np.clip(w * smooth + (1 - w) * noise, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, int(side * 0.62))
    draw.text((side / 2, side / 2), "ε", font=font, fill=(255, 255, 255), anchor="mm",
              stroke_width=max(2, side // 48), stroke_fill=(20, 20, 40))
    img.save(www / f"icon-{side}.png", optimize=True)
    print(f"wrote {www / f'icon-{side}.png'}", file=sys.stderr)
