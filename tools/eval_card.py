#!/usr/bin/env python3
"""Runs `epsvae eval` on the validation split for the model card: at 128² and 256², on the runs'
f32 EMA weights and on the shipped int8 files, and prints the card's tables and target checks.

    python3 tools/eval_card.py [--bin target/debug/epsvae] [--out target/eval] [--runs EPS,VAE] [--temperature T]

The f32 weights are checkpoints/RUN/ema.safetensors of the two runs in --runs (written by `epsvae
train` at every checkpoint); the int8 ones are weights/*.safetensors. Each eval's rows are kept
as JSON in --out. ε-VAE samples with each file's own default temperature unless --temperature
sets one for both files (the f32 EMA files written by training carry none, i.e. 1).
"""
import argparse, json, subprocess, sys
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--bin", default="target/debug/epsvae")
ap.add_argument("--out", default="target/eval", type=Path)
ap.add_argument("--data", default="data/corpus/val")
ap.add_argument("--sizes", default="128,256")
ap.add_argument("--backend", default="flex", help="flex, or tch with a binary built with --features tch")
ap.add_argument("--temperature", help="sampling temperature τ for ε-VAE, for both storages (default: each file's own)")
ap.add_argument("--runs", default="epsvae-small,vae-small", help="the ε-VAE run and the VAE run, folders in checkpoints/")
a = ap.parse_args()
runs = a.runs.split(",")
if len(runs) != 2:
    sys.exit(f"eval_card.py: --runs {a.runs!r} is not two run folders EPS,VAE (e.g. epsvae-small,vae-small)")
a.out.mkdir(parents=True, exist_ok=True)
files = {
    "f32": tuple(f"checkpoints/{r}/ema.safetensors" for r in runs),
    "int8": ("weights/epsvae-small.safetensors", "weights/vae-small.safetensors"),
}
for eps, vae in files.values():
    for f in (eps, vae):
        if not Path(f).exists():
            sys.exit(f"eval_card.py: {f} is missing (train, or quantise the runs' EMA weights first)")

rows = {}
for size in map(int, a.sizes.split(",")):
    for storage, (eps, vae) in files.items():
        tag = f"-t{a.temperature}" if a.temperature else ""
        j = a.out / f"eval-{size}-{storage}{tag}.json"
        cmd = [a.bin, "eval", "--data", a.data, "--size", str(size), "--steps", "1,2,3", "--weights", eps, "--baseline", vae, "--json", str(j), "--backend", a.backend]
        cmd += ["--temperature", a.temperature] if a.temperature else []
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        rows[size, storage] = json.loads(j.read_text())


def name(r):
    return "VAE" if r["steps"] is None else f"ε-VAE {r['steps']} step{'s' if r['steps'] > 1 else ''}"


def pick(size, storage, steps):
    return next(r for r in rows[size, storage] if r["steps"] == steps)


for size in sorted({s for s, _ in rows}):
    n = rows[size, "f32"][0]["images"]
    tau = f", ε-VAE at τ = {a.temperature}" if a.temperature else ""
    print(f"\nAt {size}×{size} ({n} photos{tau}):\n")
    print("| decoder | storage | PSNR (dB) ↑ | SSIM ↑ | ST-LPIPS ↓ |\n|---|---|---|---|---|")
    for i, r in enumerate(rows[size, "f32"]):
        for storage in files:
            q = rows[size, storage][i]
            print(f"| {name(q)} | {storage} | {q['psnr']:.2f} | {q['ssim']:.4f} | {q['st_lpips']:.4f} |")
    print()
    for storage in files:
        v, e = pick(size, storage, None), pick(size, storage, 3)
        print(f"{storage}: ε-VAE 3 steps vs VAE: ST-LPIPS {100 * (e['st_lpips'] / v['st_lpips'] - 1):+.1f}%, PSNR {e['psnr'] - v['psnr']:+.2f} dB  ")
    for steps in (None, 3):
        d = pick(size, "int8", steps)["psnr"] - pick(size, "f32", steps)["psnr"]
        print(f"int8 − f32 PSNR, {name(pick(size, 'f32', steps))}: {d:+.3f} dB  ")
