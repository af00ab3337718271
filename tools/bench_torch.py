#!/usr/bin/env python3
"""Training throughput of the same networks in plain PyTorch, beside `epsvae bench-train`.

A port of crate/src/model (encoder, ε-decoder UNet, VAE baseline decoder), crate/src/train/disc.rs
and the ST-LPIPS AlexNet of crate/src/train/lpips.rs, built from the config stored in a weight file's
header. It is a benchmark reference only: the project trains with the Rust definition. It checks
that it is the same net by comparing its parameter count per part with the weight files'
tensors, and counts forward FLOPs with torch.utils.flop_counter for comparison with the Rust MAC
counter. One training step is timed as in the Rust bench: Adam (β1 = 0), velocity MSE (or L1 for
the VAE) + 0.5·ST-LPIPS, optionally the adversarial term with a finite-difference R1.

usage: /work/venv-torch/bin/python tools/bench_torch.py [--weights weights/epsvae-small.safetensors]
         [--baseline weights/vae-small.safetensors] [--batch 8] [--crop 64] [--steps 8] [--adversarial]
"""
import argparse
import json
import math
import os
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def part_counts(path):
    """Parameters per part (encoder/decoder/baseline) from a weight file's tensor shapes."""
    counts = {}
    for name, info in header(path).items():
        if name == "__metadata__" or name.endswith(".scale"):
            continue
        part = name.split(".")[0]
        counts[part] = counts.get(part, 0) + math.prod(info["shape"])
    return counts


def gn(c, g, affine=True):
    return nn.GroupNorm(g, c, eps=1e-5, affine=affine)


def conv(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride, k // 2)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, g):
        super().__init__()
        self.norm1, self.conv1 = gn(cin, g), conv(cin, cout, 3)
        self.emb = nn.Linear(temb, 2 * cout) if temb else None
        self.norm2, self.conv2 = gn(cout, g, affine=temb is None), conv(cout, cout, 3)
        self.skip = conv(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb=None):
        h = self.norm2(self.conv1(F.silu(self.norm1(x))))
        if self.emb is not None:
            scale, shift = self.emb(F.silu(temb))[:, :, None, None].chunk(2, 1)
            h = h * (scale + 1) + shift
        h = self.conv2(F.silu(h))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, c, head_channels, g):
        super().__init__()
        self.norm, self.qkv, self.out = gn(c, g), nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.heads = max(c // head_channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        n, nh = h * w, self.heads
        t = self.norm(x).reshape(b, c, n).transpose(1, 2)
        q, k, v = self.qkv(t).reshape(b, n, 3, nh, c // nh).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(c // nh), -1)
        o = (att @ v).transpose(1, 2).reshape(b, n, c)
        return x + self.out(o).transpose(1, 2).reshape(b, c, h, w)


class Upsample(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = conv(cin, cout, 3)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], 1)


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        g, r = c["norm_groups"], c["stem_unshuffle"]
        widths = [m * c["base_channels"] for m in c["channel_mult"]]
        self.r = r
        self.stem = conv(c["in_channels"] * r * r, widths[0], 3)
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            for _ in range(c["blocks_per_level"]):
                layers.append(ResBlock(cin, w, None, g))
                cin = w
            if i + 1 < len(widths):
                layers.append(conv(w, w, 3, 2))
        layers += [ResBlock(cin, cin, None, g) for _ in range(c["mid_blocks"])]
        self.body = nn.Sequential(*layers)
        self.norm_out, self.conv_out = gn(cin, g), conv(cin, c["latent_channels"], 1)

    def forward(self, x):
        h = self.body(self.stem(F.pixel_unshuffle(x, self.r)))
        return torch.tanh(self.conv_out(F.silu(self.norm_out(h))))


class UnetBlock(nn.Module):
    def __init__(self, cin, cout, temb, g, attn, head_channels):
        super().__init__()
        self.res = ResBlock(cin, cout, temb, g)
        self.attn = Attention(cout, head_channels, g) if attn else None

    def forward(self, x, emb):
        h = self.res(x, emb)
        return self.attn(h) if self.attn is not None else h


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        g, r, c0 = c["norm_groups"], c["stem_unshuffle"], c["base_channels"]
        temb, hc = c["time_embed_mult"] * c0, c["head_channels"]
        widths = [m * c0 for m in c["channel_mult"]]
        n, nb = len(widths), c["blocks_per_level"]
        self.r, self.c0 = r, c0
        self.time1, self.time2 = nn.Linear(c0, temb), nn.Linear(temb, temb)
        self.stem = conv(c["image_channels"] * r * r + c["latent_channels"], c0, 3)
        skips, cin = [c0], c0
        self.down = nn.ModuleList()
        for l, w in enumerate(widths):
            for _ in range(nb):
                self.down.append(UnetBlock(cin, w, temb, g, l in c["attention_levels"], hc))
                cin = w
                skips.append(w)
            if l + 1 < n:
                self.down.append(conv(w, w, 3, 2))
                skips.append(w)
        top = widths[-1]
        self.mid1, self.mid_attn, self.mid2 = ResBlock(top, top, temb, g), Attention(top, hc, g), ResBlock(top, top, temb, g)
        self.up = nn.ModuleList()
        for l in reversed(range(n)):
            w = widths[l]
            for _ in range(nb + 1):
                self.up.append(UnetBlock(cin + skips.pop(), w, temb, g, l in c["attention_levels"], hc))
                cin = w
            if l > 0:
                self.up.append(Upsample(w, w))
        assert not skips
        self.norm_out, self.conv_out = gn(c0, g), conv(c0, c["image_channels"] * r * r, 3)

    def forward(self, x_t, t, z):
        emb = self.time2(F.silu(self.time1(timestep_embedding(t, self.c0))))
        x = F.pixel_unshuffle(x_t, self.r)
        z = F.interpolate(z, size=x.shape[2:], mode="nearest")
        hs = [self.stem(torch.cat([x, z], 1))]
        for m in self.down:
            hs.append(m(hs[-1], emb) if isinstance(m, UnetBlock) else m(hs[-1]))
        h = self.mid2(self.mid_attn(self.mid1(hs[-1], emb)), emb)
        for m in self.up:
            h = m(torch.cat([h, hs.pop()], 1), emb) if isinstance(m, UnetBlock) else m(h)
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), self.r)


class Baseline(nn.Module):
    def __init__(self, c):
        super().__init__()
        g, r = c["norm_groups"], c["stem_unshuffle"]
        widths = [m * c["base_channels"] for m in c["channel_mult"]]
        top = widths[-1]
        self.r = r
        layers = [conv(c["latent_channels"], top, 3)] + [ResBlock(top, top, None, g) for _ in range(c["mid_blocks"])]
        cin = top
        for l in reversed(range(len(widths))):
            w = widths[l]
            for _ in range(c["blocks_per_level"]):
                layers.append(ResBlock(cin, w, None, g))
                cin = w
            if l > 0:
                layers.append(Upsample(w, widths[l - 1]))
                cin = widths[l - 1]
        self.body = nn.Sequential(*layers)
        self.norm_out, self.conv_out = gn(widths[0], g), conv(widths[0], c["image_channels"] * r * r, 3)

    def forward(self, z):
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(self.body(z)))), self.r)


class Discriminator(nn.Module):
    def __init__(self, paired, base=32):
        super().__init__()
        temb = 4 * base if paired else None
        self.base, self.paired = base, paired
        if paired:
            self.time1, self.time2 = nn.Linear(base, 4 * base), nn.Linear(4 * base, 4 * base)
        self.stem = conv(6 if paired else 3, base, 3)
        widths, cin = [base, 2 * base, 4 * base, 4 * base], base
        self.blocks, self.downs = nn.ModuleList(), nn.ModuleList()
        for i, w in enumerate(widths):
            self.blocks.append(ResBlock(cin, w, temb, 8))
            cin = w
            if i + 1 < len(widths):
                self.downs.append(conv(w, w, 3, 2))
        self.norm_out, self.head = gn(cin, 8), conv(cin, 1, 3)

    def forward(self, image, cond=None):
        emb = None
        if self.paired:
            x_t, t = cond
            emb = self.time2(F.silu(self.time1(timestep_embedding(t, self.base))))
            image = torch.cat([image, x_t], 1)
        h = self.stem(image)
        for i, b in enumerate(self.blocks):
            h = b(h, emb)
            if i < len(self.downs):
                h = self.downs[i](h)
        return self.head(F.silu(self.norm_out(h)))


class StLpips(nn.Module):
    """ST-LPIPS AlexNet (random weights: throughput does not depend on them)."""

    CONVS = [(3, 64, 11, 2), (64, 192, 5, 2), (192, 384, 3, 1), (384, 256, 3, 1), (256, 256, 3, 1)]

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, 1, p) for i, o, k, p in self.CONVS)
        self.lins = nn.ParameterList(nn.Parameter(torch.rand(1, o, 1, 1) / o) for _, o, _, _ in self.CONVS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("blur", (k[:, None] * k[None]) / 16)
        self.requires_grad_(False)

    def blur_down(self, x):
        c = x.shape[1]
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.blur[None, None].repeat(c, 1, 1, 1), stride=2, groups=c)

    def features(self, x):
        x = (x - self.shift) / self.scale
        pool = lambda t: F.max_pool2d(t, 3, 1)
        h1 = F.relu(self.blur_down(self.convs[0](x)))
        h2 = F.relu(self.convs[1](self.blur_down(pool(h1))))
        h3 = F.relu(self.convs[2](self.blur_down(pool(h2))))
        h4 = F.relu(self.convs[3](h3))
        h5 = F.relu(self.convs[4](h4))
        return [h1, h2, h3, h4, h5]

    def forward(self, a, b):
        with torch.no_grad():
            fb = self.features(b)
        unit = lambda t: t / (t.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        return sum(((unit(fa) - unit(f)).pow(2) * lin).sum(1).mean((1, 2)) for fa, f, lin in zip(self.features(a), fb, self.lins))


GAMMA, SIGMA_DATA, TIME_SCALE = 0.6, 0.5, 1000.0


def logit_normal(b):
    return torch.sigmoid(torch.randn(b))


def make_step(model, cfg, batch, crop, adversarial):
    enc = Encoder(cfg["encoder"])
    dec = Decoder(cfg["decoder"]) if model == "epsvae" else Baseline(cfg["baseline"])
    disc = Discriminator(model == "epsvae")
    lpips = StLpips()
    gen_params = list(enc.parameters()) + list(dec.parameters())
    opt_g = torch.optim.Adam(gen_params, lr=2e-4, betas=(0.0, 0.999), eps=1e-8)
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.0, 0.999), eps=1e-8)

    def generator(x0):
        z = enc(x0)
        z = z + (torch.rand_like(z) * 2 - 1) / 255
        if model == "epsvae":
            eps, t = torch.randn_like(x0), logit_normal(x0.shape[0])
            tt = t[:, None, None, None]
            x_t = x0 * (1 - tt) * GAMMA + eps * tt
            s = (((1 - tt) * GAMMA * SIGMA_DATA) ** 2 + tt**2).sqrt()
            v = dec(x_t / s, t * TIME_SCALE, z)
            recon = (v - (eps - GAMMA * x0)).pow(2).mean()
            x_hat = (x_t - v * tt) / GAMMA
            cond = (x_t.detach(), t * TIME_SCALE)
        else:
            x_hat = dec(z)
            recon, cond = (x_hat - x0).abs().mean(), None
        return recon, x_hat, cond

    def step(x0):
        recon, x_hat, cond = generator(x0)
        loss = recon + 0.5 * lpips(x_hat, x0).mean()
        if adversarial:
            loss = loss + 0.5 * F.softplus(-disc(x_hat, cond)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        if adversarial:
            real = disc(x0, cond)
            fake = disc(x_hat.detach(), cond)
            shifted = disc(x0 + 0.01 * torch.randn_like(x0), cond)
            r1 = ((shifted - real) ** 2).mean() / 0.01**2  # as disc.rs: per patch, averaged
            d_loss = F.softplus(-real).mean() + F.softplus(fake).mean() + 0.005 * r1
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        return loss.item()

    def forward_flops(x0):
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            _, x_hat, cond = generator(x0)
            lpips(x_hat, x0)
            if adversarial:
                for _ in range(4):
                    disc(x0, cond)
        return fc.get_total_flops()

    counts = {"encoder": sum(p.numel() for p in enc.parameters()),
              "decoder" if model == "epsvae" else "baseline": sum(p.numel() for p in dec.parameters())}
    return step, forward_flops, counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="weights/epsvae-small.safetensors")
    ap.add_argument("--baseline", default="weights/vae-small.safetensors")
    ap.add_argument("--model", default="epsvae,vae")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--adversarial", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--peak-gflops", type=float, default=166.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = json.loads(header(a.weights)["__metadata__"]["config"])
    expected = {}
    for path in (a.weights, a.baseline):
        if os.path.exists(path):
            expected.update(part_counts(path))
    print(f"PyTorch {torch.__version__}, {a.threads} threads, preset {cfg['preset']}")
    print(f"| backend | model | adversarial | batch × crop | s/step (median) | images/s | GFLOP/s | share of {a.peak_gflops:.0f} GFLOP/s peak |")
    print("|---|---|---|---|---|---|---|---|")
    notes = []
    for model in a.model.split(","):
        for adv in ([False, True] if a.adversarial else [False]):
            step, forward_flops, counts = make_step(model, cfg, a.batch, a.crop, adv)
            for part, n in counts.items():
                if part in expected and expected[part] != n:
                    raise SystemExit(f"{part}: {n} parameters here, {expected[part]} in the weight files: not the same net")
                notes.append(f"{part}: {n:,} parameters" + (" (= weight file)" if part in expected else " (no weight file to compare)"))
            x = torch.rand(a.batch, 3, a.crop, a.crop) * 2 - 1
            fwd = forward_flops(x)
            times = []
            for i in range(a.warmup + a.steps):
                t0 = time.perf_counter()
                step(x)
                if i >= a.warmup:
                    times.append(time.perf_counter() - t0)
            med = sorted(times)[len(times) // 2]
            gflops = 3 * fwd / med / 1e9
            print(f"| pytorch | {model} | {'on' if adv else 'off'} | {a.batch} × {a.crop}² | {med:.3f} | {a.batch / med:.2f} | {gflops:.1f} | {100 * gflops / a.peak_gflops:.0f}% |")
            notes.append(f"{model} adv {'on' if adv else 'off'}: forward {fwd / 2e9:.2f} GMAC per batch (torch flop counter)")
    for n in dict.fromkeys(notes):
        print(n)


if __name__ == "__main__":
    main()
