#!/usr/bin/env python3
"""The perception–distortion plane: PSNR (distortion, up is better) against ST-LPIPS (perception,
left is better) for each ε-VAE sampler setting (temperature τ, 1–3 Euler steps) beside its VAE's
point, from the JSON rows of `epsvae eval --json` (one file per operating point).

    python3 tools/pd_plot.py LABEL=ROWS.json [LABEL=ROWS.json ...] -o docs/perception-distortion.png

Each file's rows: one "VAE" row and ε-VAE rows with `steps` and `temperature` (run the eval with
`--temperature 0.6,0.7,0.8,0.9,1 --steps 1,2,3`). Rows of the mean of several seeds are left out:
they are not one decode a person gets.
"""
import argparse, json
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("files", nargs="+", help="LABEL=PATH of an `epsvae eval --json` file")
ap.add_argument("-o", "--out", type=Path, required=True)
ap.add_argument("--title", default="")
a = ap.parse_args()

fig, ax = plt.subplots(figsize=(7.5, 5.2))
colours = ["#4b6bdc", "#e0503c", "#2a9d55", "#9b59b6"]
markers = {1: "v", 2: "s", 3: "o"}
for i, spec in enumerate(a.files):
    label, path = spec.split("=", 1)
    rows = json.loads(Path(path).read_text())
    c = colours[i % len(colours)]
    vae = [r for r in rows if r["steps"] is None]
    eps = [r for r in rows if r["steps"] is not None and not r.get("seed_mean")]
    for n in sorted({r["steps"] for r in eps}):
        pts = sorted((r for r in eps if r["steps"] == n), key=lambda r: r["temperature"])
        ax.plot([r["st_lpips"] for r in pts], [r["psnr"] for r in pts], "-", color=c, alpha=0.35 + 0.2 * n, lw=1)
        ax.scatter([r["st_lpips"] for r in pts], [r["psnr"] for r in pts], color=c, marker=markers.get(n, "o"), s=28,
                   label=f"{label} ε-VAE, {n} step{'s' if n > 1 else ''}")
        for r in pts:
            if n == max(markers.keys() & {r2['steps'] for r2 in eps}):
                ax.annotate(f"τ {r['temperature']:g}", (r["st_lpips"], r["psnr"]), fontsize=7, xytext=(4, -9),
                            textcoords="offset points", color=c)
    for r in vae:
        ax.scatter([r["st_lpips"]], [r["psnr"]], color=c, marker="*", s=160, edgecolor="k", label=f"{label} VAE")
ax.set_xlabel("ST-LPIPS ↓ (perception: left is better)")
ax.set_ylabel("PSNR (dB) ↑ (distortion: up is better)")
n_img = json.loads(Path(a.files[0].split("=", 1)[1]).read_text())[0]["images"]
ax.set_title(a.title or f"Perception–distortion, {n_img} photos")
ax.grid(alpha=0.3)
ax.legend(fontsize=7, loc="lower left")
fig.tight_layout()
a.out.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(a.out, dpi=110)
print(f"wrote {a.out}")
