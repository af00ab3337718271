//! The discriminator of adversarial trajectory matching (paper §3.3): D sees concat(x0, x_t) as
//! real and concat(x̂0, x_t) as fake, conditioned on t through AdaGN, so it judges the one-step
//! estimate against the noisy state it came from. For the VAE baseline it is an ordinary
//! (unpaired) image discriminator: 3 input channels, no time. Training only.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::activation::{silu, softplus};
use burn::tensor::{Device, Tensor};

use crate::model::blocks::{Downsample, ResBlock, conv, conv_fwd, group_norm, linear_fwd, timestep_embedding};

#[derive(Module, Debug)]
pub struct Discriminator {
    time1: Option<Linear>,
    time2: Option<Linear>,
    stem: Conv2d,
    blocks: Vec<ResBlock>,
    downs: Vec<Downsample>,
    norm_out: GroupNorm,
    head: Conv2d,
    base: usize,
}

impl Discriminator {
    /// `paired`: trajectory matching (6 channels + time) or an unpaired image discriminator.
    pub fn new(paired: bool, base: usize, device: &Device) -> Self {
        let temb = paired.then_some(4 * base);
        let widths = [base, 2 * base, 4 * base, 4 * base];
        let mut blocks = Vec::new();
        let mut downs = Vec::new();
        let mut cin = base;
        for (i, &w) in widths.iter().enumerate() {
            blocks.push(ResBlock::new(cin, w, temb, 8, device));
            cin = w;
            if i + 1 < widths.len() {
                downs.push(Downsample::new(w, device));
            }
        }
        Self {
            time1: paired.then(|| LinearConfig::new(base, 4 * base).init(device)),
            time2: paired.then(|| LinearConfig::new(4 * base, 4 * base).init(device)),
            stem: if paired {
                zero_condition_inputs(conv(6, base, 3, 1, device))
            } else {
                conv(3, base, 3, 1, device)
            },
            blocks,
            downs,
            norm_out: group_norm(cin, 8, true, device),
            head: conv(cin, 1, 3, 1, device),
            base,
        }
    }

    /// Patch logits [B, 1, H/8, W/8] for image [B, 3, H, W] (and x_t, 1000·t when paired).
    pub fn forward(&self, image: Tensor<4>, cond: Option<(Tensor<4>, Tensor<1>)>) -> Tensor<4> {
        let (x, emb) = match (cond, &self.time1, &self.time2) {
            (Some((x_t, t)), Some(t1), Some(t2)) => {
                let e = linear_fwd(t2, silu(linear_fwd(t1, timestep_embedding(t, self.base))));
                (Tensor::cat(vec![image, x_t], 1), Some(e))
            }
            (None, None, None) => (image, None),
            _ => panic!("Discriminator: pass (x_t, t) exactly when it was built paired"),
        };
        let mut h = conv_fwd(&self.stem, x);
        for (i, b) in self.blocks.iter().enumerate() {
            h = b.forward(h, emb.as_ref());
            if let Some(d) = self.downs.get(i) {
                h = d.forward(h);
            }
        }
        conv_fwd(&self.head, silu(self.norm_out.forward(h)))
    }
}

/// The paired stem with its x_t input channels (3..6) zeroed, so the discriminator starts as an
/// image discriminator and brings x_t in as training finds it useful. With every input channel at
/// random weights, x_t's noise (standard deviation up to 1) fills the stem's high frequencies, the
/// band in which a decoder's estimate differs from the image, and D stayed at chance: a fresh D
/// trained 60 steps on textured crops against their blur ended at GAN loss 1.399 (2 ln 2 = 1.386),
/// the same D without x_t at 0.90 (tests/train.rs).
fn zero_condition_inputs(mut stem: Conv2d) -> Conv2d {
    stem.weight = stem.weight.map(|w| {
        let [o, i, kh, kw] = w.dims();
        let (device, grad) = (w.device(), w.is_require_grad());
        // A fresh leaf: the slice assignment's own graph must not become part of the parameter.
        let zeroed = w.slice_assign([0..o, 3..i, 0..kh, 0..kw], Tensor::zeros([o, i - 3, kh, kw], &device));
        zeroed.detach().set_require_grad(grad)
    });
    stem
}

/// Non-saturating generator loss: mean softplus(−D(fake)).
pub fn generator_loss(fake: Tensor<4>) -> Tensor<1> {
    softplus(fake.neg(), 1.0).mean()
}

/// Non-saturating discriminator loss: mean softplus(−D(real)) + mean softplus(D(fake)).
pub fn discriminator_loss(real: Tensor<4>, fake: Tensor<4>) -> Tensor<1> {
    softplus(real.neg(), 1.0).mean() + softplus(fake, 1.0).mean()
}

/// R1 = E‖∇ₓD(x)‖² of the real images, for each patch logit D_p and averaged over the patches as
/// the GAN loss is, so its scale does not depend on the crop size (a penalty on each image's sum of
/// patch logits grew with the square of their number, ~256× from 64² to 256² crops, and held D at
/// chance). Estimated to first order by finite differences, E_δ[(D_p(x + σδ) − D_p(x))²] / σ²
/// with δ ~ N(0, I): burn's autodiff has no double backward, and this estimate needs none.
pub fn r1_penalty(d_real: Tensor<4>, d_shifted: Tensor<4>, sigma: f64) -> Tensor<1> {
    (d_shifted - d_real).powi_scalar(2).mean() / (sigma * sigma)
}
