//! The VAE baseline decoder: z → image in one deterministic pass (paper Table 1 "VAE" rows). The
//! mirror of the encoder (VQGAN decoder): conv stem at H/f, mid blocks, per level residual blocks
//! with 2× nearest upsampling between levels, GN, SiLU, conv3×3, pixel shuffle.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use super::blocks::{ResBlock, Upsample, conv, conv_fwd, group_norm, nyquist_notch, pixel_shuffle};
use crate::config::BaselineConfig;

#[derive(Module, Debug)]
pub struct BaselineLevel {
    blocks: Vec<ResBlock>,
    up: Option<Upsample>,
}

#[derive(Module, Debug)]
pub struct BaselineDecoder {
    stem: Conv2d,
    mid: Vec<ResBlock>,
    levels: Vec<BaselineLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    shuffle: usize,
    anti_alias: bool,
}

impl BaselineDecoder {
    pub fn new(cfg: &BaselineConfig, device: &Device) -> Self {
        let g = cfg.norm_groups;
        let r = cfg.stem_unshuffle;
        let widths: Vec<usize> = cfg.channel_mult.iter().map(|m| m * cfg.base_channels).collect();
        let top = *widths.last().expect("at least one level");
        let mut cin = top;
        let levels = (0..widths.len())
            .rev()
            .map(|l| {
                let w = widths[l];
                let blocks = (0..cfg.blocks_per_level)
                    .map(|b| ResBlock::new(if b == 0 { cin } else { w }, w, None, g, device))
                    .collect();
                cin = w;
                let next = if l > 0 { widths[l - 1] } else { w };
                let up = (l > 0).then(|| Upsample::new(w, next, device));
                if l > 0 {
                    cin = next;
                }
                BaselineLevel { blocks, up }
            })
            .collect();
        Self {
            stem: conv(cfg.latent_channels, top, 3, 1, device),
            mid: (0..cfg.mid_blocks)
                .map(|_| ResBlock::new(top, top, None, g, device))
                .collect(),
            levels,
            norm_out: group_norm(widths[0], g, true, device),
            conv_out: conv(widths[0], cfg.image_channels * r * r, 3, 1, device),
            shuffle: r,
            anti_alias: cfg.anti_alias == Some(true),
        }
    }

    /// z: [B, n_z, H/f, W/f] → image [B, 3, H, W] (unclamped; pixels nominally in [-1, 1]).
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut h = conv_fwd(&self.stem, z); // [B, C_top, H/f, W/f]
        for b in &self.mid {
            h = b.forward(h, None);
        }
        for level in &self.levels {
            for b in &level.blocks {
                h = b.forward(h, None);
            }
            if let Some(u) = &level.up {
                h = u.forward(h); // [B, C, 2·, 2·]
            }
        }
        let x = conv_fwd(&self.conv_out, silu(self.norm_out.forward(h))); // [B, 3r², H/r, W/r]
        let x = pixel_shuffle(x, self.shuffle);
        if self.anti_alias && self.shuffle > 1 {
            nyquist_notch(x)
        } else {
            x
        }
    }
}
