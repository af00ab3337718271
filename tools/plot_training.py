#!/usr/bin/env python3
"""Plots a run's log.csv (written by `epsvae train`) to PNG: training losses and validation metrics.

    python3 tools/plot_training.py runs/epsvae-small [runs/vae-small ...] -o weights/training.png

A run given as DIR:STEP is plotted from that step on (a run that resumed another's checkpoint
carries its history before it).
"""
import argparse, csv
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt


def smooth(v, k=50):
    out, acc = [], []
    for x in v:
        acc.append(x)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("runs", nargs="+")
ap.add_argument("-o", "--out", type=Path, default=Path("training.png"))
a = ap.parse_args()
fig, ax = plt.subplots(1, 3, figsize=(15, 4))
for arg in a.runs:
    path, _, since = arg.partition(":")
    run = Path(path)
    rows = [r for r in csv.DictReader(open(run / "log.csv")) if int(r["step"]) > int(since or -1)]
    # x: the training step (runs that changed their crop size see different pixels per image).
    img = [int(r["step"]) / 1000 for r in rows]
    name = run.name
    ax[0].plot(img, smooth([float(r["recon"]) for r in rows]), label=f"{name}: reconstruction")
    ax[0].plot(img, smooth([float(r["lpips"]) for r in rows]), label=f"{name}: ST-LPIPS (train)")
    val = [(int(r["step"]) / 1000, float(r["val_psnr"]), float(r["val_lpips"])) for r in rows if r["val_psnr"]]
    if val:
        ax[1].plot([v[0] for v in val], [v[1] for v in val], "o-", label=name)
        ax[2].plot([v[0] for v in val], [v[2] for v in val], "o-", label=name)
ax[0].set_title("training losses (moving average of 50 steps)")
ax[1].set_title("validation PSNR (dB), 16 crops of 128²")
ax[2].set_title("validation ST-LPIPS, 16 crops of 128²")
for x in ax:
    x.set_xlabel("thousand steps")
    x.legend(fontsize=8)
    x.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(a.out, dpi=90)
print(f"wrote {a.out}")
