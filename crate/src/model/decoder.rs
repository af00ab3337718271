//! The ε-VAE decoder G(x_t, t, z) → v: an ADM-style UNet (paper §3.1; Dhariwal & Nichol 2021).
//! z is nearest-upsampled to the stem's resolution and concatenated with x_t on channels; the time
//! enters every residual block through AdaGN. It knows nothing of noise schedules: `flow.rs` does.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use super::blocks::{
    Attention, Downsample, ResBlock, Upsample, conv, conv_fwd, group_norm, linear_fwd, pixel_shuffle, pixel_unshuffle,
    timestep_embedding, upsample_nearest,
};
use crate::config::DecoderConfig;

/// One residual block, optionally followed by self-attention.
#[derive(Module, Debug)]
pub struct UnetBlock {
    res: ResBlock,
    attn: Option<Attention>,
}

impl UnetBlock {
    fn forward(&self, x: Tensor<4>, temb: &Tensor<2>) -> Tensor<4> {
        let h = self.res.forward(x, Some(temb));
        match &self.attn {
            Some(a) => a.forward(h),
            None => h,
        }
    }
}

#[derive(Module, Debug)]
pub struct DownLevel {
    blocks: Vec<UnetBlock>,
    down: Option<Downsample>,
}

#[derive(Module, Debug)]
pub struct UpLevel {
    blocks: Vec<UnetBlock>,
    up: Option<Upsample>,
}

#[derive(Module, Debug)]
pub struct Decoder {
    time1: Linear,
    time2: Linear,
    stem: Conv2d,
    down: Vec<DownLevel>,
    mid1: ResBlock,
    mid_attn: Attention,
    mid2: ResBlock,
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    unshuffle: usize,
    base_channels: usize,
}

impl Decoder {
    pub fn new(cfg: &DecoderConfig, device: &Device) -> Self {
        let g = cfg.norm_groups;
        let r = cfg.stem_unshuffle;
        let c0 = cfg.base_channels;
        let temb = cfg.time_embed_mult * c0;
        let widths: Vec<usize> = cfg.channel_mult.iter().map(|m| m * c0).collect();
        let n = widths.len();
        let block = |cin: usize, cout: usize, level: usize| UnetBlock {
            res: ResBlock::new(cin, cout, Some(temb), g, device),
            attn: cfg
                .attention_levels
                .contains(&level)
                .then(|| Attention::new(cout, cfg.head_channels, g, device)),
        };
        // Widths of the skip connections, pushed in order on the way down (ADM `input_blocks`).
        let mut skips = vec![c0];
        let mut cin = c0;
        let mut down = Vec::new();
        for (l, &w) in widths.iter().enumerate() {
            let mut blocks = Vec::new();
            for _ in 0..cfg.blocks_per_level {
                blocks.push(block(cin, w, l));
                cin = w;
                skips.push(w);
            }
            let ds = (l + 1 < n).then(|| Downsample::new(w, device));
            if ds.is_some() {
                skips.push(w);
            }
            down.push(DownLevel { blocks, down: ds });
        }
        let top = widths[n - 1];
        let mut up = Vec::new();
        for l in (0..n).rev() {
            let w = widths[l];
            let mut blocks = Vec::new();
            for _ in 0..=cfg.blocks_per_level {
                let s = skips.pop().expect("one skip per up block");
                blocks.push(block(cin + s, w, l));
                cin = w;
            }
            let us = (l > 0).then(|| Upsample::new(w, w, device));
            up.push(UpLevel { blocks, up: us });
        }
        assert!(skips.is_empty(), "every skip connection is consumed");
        Self {
            time1: LinearConfig::new(c0, temb).init(device),
            time2: LinearConfig::new(temb, temb).init(device),
            stem: conv((cfg.image_channels) * r * r + cfg.latent_channels, c0, 3, 1, device),
            down,
            mid1: ResBlock::new(top, top, Some(temb), g, device),
            mid_attn: Attention::new(top, cfg.head_channels, g, device),
            mid2: ResBlock::new(top, top, Some(temb), g, device),
            up,
            // The last up level's width: c0 in every preset (channel_mult starts at 1), but a
            // config may start higher (found by the `config` fuzz target).
            norm_out: group_norm(widths[0], g, true, device),
            conv_out: conv(widths[0], cfg.image_channels * r * r, 3, 1, device),
            unshuffle: r,
            base_channels: c0,
        }
    }

    /// x_t: [B, 3, H, W] (already divided by the flow's input scale), t: [B] already multiplied by
    /// the time scale, z: [B, n_z, H/f, W/f]. Returns the velocity [B, 3, H, W].
    pub fn forward(&self, x_t: Tensor<4>, t: Tensor<1>, z: Tensor<4>) -> Tensor<4> {
        let emb = timestep_embedding(t, self.base_channels); // [B, C0]
        let emb = linear_fwd(&self.time2, silu(linear_fwd(&self.time1, emb))); // [B, 4·C0]
        let x = pixel_unshuffle(x_t, self.unshuffle); // [B, 3r², H/r, W/r]
        let [_, _, h, w] = x.dims();
        let z = upsample_nearest(z, [h, w]); // [B, n_z, H/r, W/r]
        let mut hs = vec![conv_fwd(&self.stem, Tensor::cat(vec![x, z], 1))]; // [B, C0, H/r, W/r]
        for level in &self.down {
            for b in &level.blocks {
                let h = b.forward(hs.last().expect("stem output").clone(), &emb);
                hs.push(h);
            }
            if let Some(d) = &level.down {
                let h = d.forward(hs.last().expect("level output").clone()); // [B, C, H/2, W/2]
                hs.push(h);
            }
        }
        let mut h = hs.last().expect("down path output").clone();
        h = self
            .mid2
            .forward(self.mid_attn.forward(self.mid1.forward(h, Some(&emb))), Some(&emb));
        for level in &self.up {
            for b in &level.blocks {
                let s = hs.pop().expect("a skip for every up block");
                h = b.forward(Tensor::cat(vec![h, s], 1), &emb); // [B, C, ·, ·]
            }
            if let Some(u) = &level.up {
                h = u.forward(h); // [B, C, 2·, 2·]
            }
        }
        let v = conv_fwd(&self.conv_out, silu(self.norm_out.forward(h))); // [B, 3r², H/r, W/r]
        pixel_shuffle(v, self.unshuffle) // [B, 3, H, W]
    }
}
