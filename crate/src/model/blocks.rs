//! Building blocks shared by the encoder, the UNet decoder, the baseline and the discriminator:
//! residual blocks with optional AdaGN time conditioning (ADM, Dhariwal & Nichol 2021 §3),
//! self-attention, resampling and the sinusoidal time embedding.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

use super::macs;

/// A k×k convolution with "same" padding and the given stride.
pub fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .init(device)
}

/// Runs a convolution and counts its multiply-accumulates.
pub fn conv_fwd(c: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let y = c.forward(x);
    let [b, cout, h, w] = y.dims();
    let [_, cin_g, kh, kw] = c.weight.dims();
    macs::add((b * cout * h * w * cin_g * kh * kw) as u64);
    y
}

/// Runs a linear layer and counts its multiply-accumulates.
pub fn linear_fwd<const D: usize>(l: &Linear, x: Tensor<D>) -> Tensor<D> {
    let [din, dout] = l.weight.dims();
    let rows = x.shape().num_elements() / din;
    macs::add((rows * din * dout) as u64);
    l.forward(x)
}

pub fn group_norm(channels: usize, groups: usize, affine: bool, device: &Device) -> GroupNorm {
    assert!(
        channels.is_multiple_of(groups),
        "GroupNorm: {channels} channels are not a multiple of {groups} groups"
    );
    GroupNormConfig::new(groups, channels).with_affine(affine).init(device)
}

/// Residual block: GN, SiLU, conv3×3, (AdaGN with the time embedding), SiLU, conv3×3, plus a 1×1
/// shortcut when the width changes. With `temb_dim = None` it is the VQGAN block; with a time
/// embedding the second norm is AdaGN: GN(h)·(1 + scale) + shift (ADM "use_scale_shift_norm").
#[derive(Module, Debug)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    emb: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    pub fn new(cin: usize, cout: usize, temb_dim: Option<usize>, groups: usize, device: &Device) -> Self {
        Self {
            norm1: group_norm(cin, groups, true, device),
            conv1: conv(cin, cout, 3, 1, device),
            emb: temb_dim.map(|d| LinearConfig::new(d, 2 * cout).init(device)),
            // Under AdaGN the scale/shift come from the time embedding, so no affine of its own.
            norm2: group_norm(cout, groups, temb_dim.is_none(), device),
            conv2: conv(cout, cout, 3, 1, device),
            skip: (cin != cout).then(|| conv(cin, cout, 1, 1, device)),
        }
    }

    /// x: [B, Cin, H, W], temb: [B, D] when the block is time-conditioned. Returns [B, Cout, H, W].
    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let h = conv_fwd(&self.conv1, silu(self.norm1.forward(x.clone())));
        let h = self.norm2.forward(h);
        let h = match (&self.emb, temb) {
            (Some(emb), Some(t)) => {
                let [b, c2] = [t.dims()[0], 2 * h.dims()[1]];
                let ss = linear_fwd(emb, silu(t.clone())).reshape([b, c2, 1, 1]); // [B, 2C, 1, 1]
                let [scale, shift] = ss.chunk(2, 1).try_into().expect("two chunks");
                h * (scale + 1.0) + shift
            }
            (None, None) => h,
            _ => panic!("ResBlock: time embedding given to an unconditioned block or missing"),
        };
        let h = conv_fwd(&self.conv2, silu(h));
        let x = match &self.skip {
            Some(s) => conv_fwd(s, x),
            None => x,
        };
        x + h
    }
}

/// Multi-head self-attention over the H·W positions with a residual connection (ADM).
#[derive(Module, Debug)]
pub struct Attention {
    norm: GroupNorm,
    qkv: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    pub fn new(channels: usize, head_channels: usize, groups: usize, device: &Device) -> Self {
        Self {
            norm: group_norm(channels, groups, true, device),
            qkv: LinearConfig::new(channels, 3 * channels).init(device),
            out: LinearConfig::new(channels, channels).init(device),
            heads: (channels / head_channels).max(1),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let (n, nh) = (h * w, self.heads);
        let d = c / nh;
        let t = self.norm.forward(x.clone()).reshape([b, c, n]).swap_dims(1, 2); // [B, N, C]
        let qkv = linear_fwd(&self.qkv, t)
            .reshape([b, n, 3, nh, d])
            .permute([2, 0, 3, 1, 4]); // [3, B, nh, N, d]
        let q = qkv.clone().narrow(0, 0, 1).reshape([b, nh, n, d]);
        let k = qkv.clone().narrow(0, 1, 1).reshape([b, nh, n, d]);
        let v = qkv.narrow(0, 2, 1).reshape([b, nh, n, d]);
        let att = softmax(q.matmul(k.swap_dims(2, 3)) / (d as f64).sqrt(), 3); // [B, nh, N, N]
        let o = att.matmul(v).swap_dims(1, 2).reshape([b, n, c]); // [B, N, C]
        macs::add((2 * b * n * n * c) as u64);
        let o = linear_fwd(&self.out, o).swap_dims(1, 2).reshape([b, c, h, w]);
        x + o
    }
}

/// 2× downsampling by a stride-2 conv3×3 (ADM, VQGAN).
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
}

impl Downsample {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: conv(channels, channels, 3, 2, device),
        }
    }
    /// [B, C, H, W] → [B, C, H/2, W/2]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_fwd(&self.conv, x)
    }
}

/// 2× nearest-neighbour upsampling followed by a conv3×3 (ADM, VQGAN).
#[derive(Module, Debug)]
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn new(cin: usize, cout: usize, device: &Device) -> Self {
        Self {
            conv: conv(cin, cout, 3, 1, device),
        }
    }
    /// [B, Cin, H, W] → [B, Cout, 2H, 2W]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        conv_fwd(&self.conv, upsample_nearest(x, [2 * h, 2 * w]))
    }
}

pub fn upsample_nearest(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    if x.dims()[2..] == size {
        return x;
    }
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size),
    )
}

/// Folds each r×r patch into channels: [B, C, H, W] → [B, C·r², H/r, W/r] (channel order c·r² + i·r + j,
/// as PyTorch's pixel_unshuffle).
pub fn pixel_unshuffle(x: Tensor<4>, r: usize) -> Tensor<4> {
    if r == 1 {
        return x;
    }
    let [b, c, h, w] = x.dims();
    assert!(
        h % r == 0 && w % r == 0,
        "pixel_unshuffle: {h}×{w} is not a multiple of {r}"
    );
    x.reshape([b * c, h / r, r, w / r, r])
        .permute([0, 2, 4, 1, 3])
        .reshape([b, c * r * r, h / r, w / r])
}

/// Inverse of [`pixel_unshuffle`]: [B, C·r², H, W] → [B, C, H·r, W·r].
pub fn pixel_shuffle(x: Tensor<4>, r: usize) -> Tensor<4> {
    if r == 1 {
        return x;
    }
    let [b, crr, h, w] = x.dims();
    let c = crr / (r * r);
    x.reshape([b * c, r, r, h, w])
        .permute([0, 3, 1, 4, 2])
        .reshape([b, c, h * r, w * r])
}

/// The separable 5-tap filter [−1, 4, 10, 4, −1]/16 along x, then along y, with mirrored borders:
/// response 1 at constant, 0.75 at a 4-pixel period and exactly 0 at a 2-pixel period (along x,
/// along y and diagonally), so nothing after it can draw a pixel-shuffle grid. Sides ≥ 3. It is
/// [`nyquist_notch_order`] with m = 2.
pub fn nyquist_notch(x: Tensor<4>) -> Tensor<4> {
    nyquist_notch_order(x, 2)
}

/// The largest m [`nyquist_notch_order`] takes (17 taps).
pub const MAX_NOTCH_ORDER: usize = 8;

/// The taps of the order-m notch: δ − (−1)^m·(1 − z)^(2m)/4^m centred, whose response is
/// H(ω) = 1 − sin^(2m)(ω/2): 1 at constant, exactly 0 at a 2-pixel period, 1 − 2^(−m) at a
/// 4-pixel period; the larger m, the narrower the band around the 2-pixel period it removes.
/// m = 1 is the blur [1, 2, 1]/4, m = 2 is [−1, 4, 10, 4, −1]/16.
pub fn notch_taps(m: usize) -> Vec<f64> {
    let n = 2 * m;
    let sign = if m.is_multiple_of(2) { -1.0 } else { 1.0 };
    let mut binom = 1.0f64; // C(n, k)
    let mut taps: Vec<f64> = (0..=n)
        .map(|k| {
            let c = if k.is_multiple_of(2) { binom } else { -binom };
            binom = binom * (n - k) as f64 / (k + 1) as f64;
            sign * c / 4f64.powi(m as i32)
        })
        .collect();
    taps[m] += 1.0;
    taps
}

/// [`notch_taps`]`(m)` along x, then along y, with mirrored borders (sides > m; m ≥ 1).
pub fn nyquist_notch_order(x: Tensor<4>, m: usize) -> Tensor<4> {
    let taps: Vec<f32> = notch_taps(m).into_iter().map(|t| t as f32).collect();
    let [b, c, h, w] = x.dims();
    macs::add((2 * taps.len() * b * c * h * w) as u64);
    let pass = |x: Tensor<4>, dim: usize| {
        let n = x.dims()[dim];
        let at = |i: usize| x.clone().narrow(dim, i, 1);
        let mut parts: Vec<Tensor<4>> = (1..=m).rev().map(at).collect();
        parts.push(x.clone());
        parts.extend((1..=m).map(|i| at(n - 1 - i)));
        let padded = Tensor::cat(parts, dim);
        taps.iter()
            .enumerate()
            .map(|(i, &k)| padded.clone().narrow(dim, i, n) * k)
            .reduce(|a, b| a + b)
            .expect("at least three taps")
    };
    pass(pass(x, 3), 2)
}

/// Sinusoidal embedding of `t` (already scaled, e.g. 1000·t), [B] → [B, dim] (ADM `timestep_embedding`:
/// cos for the first half, sin for the second, frequencies 10000^(−i/half)).
pub fn timestep_embedding(t: Tensor<1>, dim: usize) -> Tensor<2> {
    let half = dim / 2;
    let device = t.device();
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::<1>::from_floats(freqs.as_slice(), &device).reshape([1, half]);
    let b = t.dims()[0];
    let args = t.reshape([b, 1]) * freqs; // [B, half]
    Tensor::cat(vec![args.clone().cos(), args.sin()], 1)
}
