//! The encoder E: image [B, 3, H, W] in [-1, 1] → bounded latent [B, n_z, H/f, W/f] (paper §3.1,
//! VQGAN-style: stem, per level residual blocks with 2× downsampling between levels, mid blocks,
//! GN, SiLU, conv1×1 to n_z).

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use super::blocks::{Downsample, ResBlock, conv, conv_fwd, group_norm, pixel_unshuffle};
use crate::config::EncoderConfig;

#[derive(Module, Debug)]
pub struct EncoderLevel {
    blocks: Vec<ResBlock>,
    down: Option<Downsample>,
}

#[derive(Module, Debug)]
pub struct Encoder {
    stem: Conv2d,
    levels: Vec<EncoderLevel>,
    mid: Vec<ResBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    unshuffle: usize,
}

impl Encoder {
    pub fn new(cfg: &EncoderConfig, device: &Device) -> Self {
        let g = cfg.norm_groups;
        let r = cfg.stem_unshuffle;
        let widths: Vec<usize> = cfg.channel_mult.iter().map(|m| m * cfg.base_channels).collect();
        let mut cin = widths[0];
        let levels = widths
            .iter()
            .enumerate()
            .map(|(l, &w)| {
                let blocks = (0..cfg.blocks_per_level)
                    .map(|b| ResBlock::new(if b == 0 { cin } else { w }, w, None, g, device))
                    .collect();
                cin = w;
                let last = l + 1 == widths.len();
                EncoderLevel {
                    blocks,
                    down: (!last).then(|| Downsample::new(w, device)),
                }
            })
            .collect();
        let top = *widths.last().expect("at least one level");
        Self {
            stem: conv(cfg.in_channels * r * r, widths[0], 3, 1, device),
            levels,
            mid: (0..cfg.mid_blocks)
                .map(|_| ResBlock::new(top, top, None, g, device))
                .collect(),
            norm_out: group_norm(top, g, true, device),
            conv_out: conv(top, cfg.latent_channels, 1, 1, device),
            unshuffle: r,
        }
    }

    /// x: [B, 3, H, W] in [-1, 1], H and W multiples of f. Returns z: [B, n_z, H/f, W/f] in (−1, 1).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = conv_fwd(&self.stem, pixel_unshuffle(x, self.unshuffle)); // [B, C0, H/r, W/r]
        for level in &self.levels {
            for b in &level.blocks {
                h = b.forward(h, None);
            }
            if let Some(d) = &level.down {
                h = d.forward(h); // [B, C, H/2, W/2]
            }
        }
        for b in &self.mid {
            h = b.forward(h, None);
        }
        let z = conv_fwd(&self.conv_out, silu(self.norm_out.forward(h))); // [B, n_z, H/f, W/f]
        // The latent is bounded by tanh (a choice: PAPER.md leaves the bound open) so that links can
        // carry it with a fixed-range uniform quantiser.
        z.tanh()
    }
}
