//! Model presets. Every field says where its value comes from: a section of Zhao et al.,
//! "ε-VAE: Denoising as Visual Decoding" (ICML 2025), or *(choice)* where the paper is silent
//! (see `shared/PAPER.md`). The weight file stores the whole `ModelConfig`, so a file never has to
//! be matched to an architecture by its name.

use burn::config::Config;

/// The VQGAN-style convolutional encoder (paper §3.1, "Encoder").
#[derive(Config, Debug, PartialEq)]
pub struct EncoderConfig {
    /// Image channels (RGB).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Pixel-unshuffle factor of the stem *(choice)*: 2 folds each 2×2 patch into channels, so the
    /// first level runs at H/2. The paper's lite encoder uses 1 (a plain conv3×3 stem).
    pub stem_unshuffle: usize,
    /// Width of the first level (paper lite: 64).
    pub base_channels: usize,
    /// Channel multiplier per level; a 2×2 downsample sits between levels (paper lite: 1,1,2,2,4).
    pub channel_mult: Vec<usize>,
    /// Residual blocks per level (paper: 2).
    pub blocks_per_level: usize,
    /// Residual blocks at the lowest resolution, after the last level (paper: 2).
    pub mid_blocks: usize,
    /// Latent channels n_z (paper lite: 8).
    pub latent_channels: usize,
    /// GroupNorm groups (VQGAN: 32). Every width must be a multiple of it.
    #[config(default = 32)]
    pub norm_groups: usize,
}

/// How far a network with this stem and these levels reaches: its lowest resolution is H/reach
/// (the stem's unshuffle, then a 2× step between consecutive levels).
fn reach(stem_unshuffle: usize, channel_mult: &[usize]) -> usize {
    stem_unshuffle << (channel_mult.len() - 1)
}

impl EncoderConfig {
    /// Spatial downsampling factor f = unshuffle · 2^(levels − 1).
    pub fn downsample_factor(&self) -> usize {
        reach(self.stem_unshuffle, &self.channel_mult)
    }
}

/// The ε-VAE decoder G(x_t, t, z): an ADM-style UNet that predicts the velocity (paper §3.1,
/// "Decoder" and Appendix A: ADM, Dhariwal & Nichol 2021).
#[derive(Config, Debug, PartialEq)]
pub struct DecoderConfig {
    /// Image channels of x_t and of the velocity.
    #[config(default = 3)]
    pub image_channels: usize,
    /// Latent channels n_z; z is nearest-upsampled and concatenated with x_t (paper §3.1).
    pub latent_channels: usize,
    /// Pixel-unshuffle factor of the stem and pixel-shuffle of the output *(choice)*. 1 = the
    /// paper's full-resolution first level.
    pub stem_unshuffle: usize,
    /// Width of the first level (paper decoder B: 64).
    pub base_channels: usize,
    /// Channel multiplier per level (paper decoder B: 1,1,2,2,4).
    pub channel_mult: Vec<usize>,
    /// Residual blocks per level on the way down; the way up has one more (ADM). Paper: 2.
    pub blocks_per_level: usize,
    /// Levels (0 = highest resolution) whose blocks are followed by self-attention. The paper puts
    /// attention at the three lowest resolutions.
    pub attention_levels: Vec<usize>,
    /// Channels per attention head (ADM: 64).
    #[config(default = 64)]
    pub head_channels: usize,
    /// Width of the time embedding MLP, as a multiple of `base_channels` (ADM: 4).
    #[config(default = 4)]
    pub time_embed_mult: usize,
    /// GroupNorm groups (ADM: 32).
    #[config(default = 32)]
    pub norm_groups: usize,
}

/// The one-pass VAE baseline decoder: z → image, deterministic, the mirror of the encoder and of
/// similar size to the ε-decoder (paper Table 1, "VAE" rows).
#[derive(Config, Debug, PartialEq)]
pub struct BaselineConfig {
    #[config(default = 3)]
    pub image_channels: usize,
    pub latent_channels: usize,
    /// Pixel-shuffle factor of the output (as the ε-decoder's `stem_unshuffle`).
    pub stem_unshuffle: usize,
    pub base_channels: usize,
    /// Channel multiplier per level, listed from the highest resolution (as the encoder).
    pub channel_mult: Vec<usize>,
    pub blocks_per_level: usize,
    pub mid_blocks: usize,
    #[config(default = 32)]
    pub norm_groups: usize,
    /// A fixed 5-tap filter after the pixel shuffle that cannot pass a period-2 pattern
    /// ([`crate::model::blocks::nyquist_notch`]). The shuffle's r² output phases come from separate
    /// filters, and where they disagree the image carries a 2-pixel grid (measured on the f16 and f8
    /// VAEs trained without it). Absent (older files) means off.
    pub anti_alias: Option<bool>,
}

/// The rectified-flow convention of the decoder (paper §3.2 and §4.1 ablations).
#[derive(Config, Debug, PartialEq)]
pub struct FlowConfig {
    /// Noise scaling γ: x_t = (1 − t)·γ·x0 + t·ε (paper Table 2 ablation: 0.6).
    #[config(default = 0.6)]
    pub gamma: f64,
    /// σ_data of pixels in [-1, 1] for the analytic input scale
    /// s(t) = sqrt(((1 − t)·γ·σ_data)² + t²) *(choice)*.
    #[config(default = 0.5)]
    pub sigma_data: f64,
    /// Time scale of the sinusoidal embedding: the network sees 1000·t *(choice)*.
    #[config(default = 1000.0)]
    pub time_scale: f64,
    /// Output preconditioning *(choice, after EDM, Karras et al. 2022)*: v̂ = c_skip(t)·x_t +
    /// c_out(t)·G(…), where c_skip·x_t is the least-squares estimate of v from x_t alone and c_out
    /// the spread of what it leaves, so the network learns a unit-variance residual and an
    /// untrained one already removes most of the noise. Absent (older files) means off.
    pub precondition: Option<bool>,
    /// n of the reversed-log sampling grid t_i = ln(n − (n − 1)·i/N) / ln(n) (paper §3.2: m = 1,
    /// n = 100). Absent (older files) means the paper's 100; 1 gives the uniform grid.
    pub grid_base: Option<f64>,
    /// Temperature τ of the sampler's starting noise, x_1 = τ·ε *(choice, as in Glow's reduced-
    /// temperature sampling)*: below 1 the sampler starts nearer the middle of the noise and its
    /// image nearer the decoder's average, trading invented detail for fidelity. Absent (older
    /// files) means 1, the paper's sampler.
    pub temperature: Option<f64>,
    /// m of a fixed notch on the decoded image, [`crate::model::blocks::nyquist_notch_order`]
    /// (2m + 1 taps along x and along y; response 1 − sin^(2m)(ω/2)) *(choice)*: the ε-decoder's
    /// pixel-shuffle output phases disagree where it invents texture, and the notch removes the
    /// 2-pixel grain that leaves, which is error, not detail. Applied to each step's x̂0 and to the
    /// final image, not to the sampler's state. Absent (older files) or 0 means off; at most 8.
    pub output_notch: Option<usize>,
}

/// The paper's reversed-log grid base n.
pub const PAPER_GRID_BASE: f64 = 100.0;

/// Whether `n` can be the base of a reversed-log grid: finite and at least 1 (1 = uniform).
pub fn is_grid_base(n: f64) -> bool {
    n.is_finite() && n >= 1.0
}

impl FlowConfig {
    /// The sampling grid's base: the file's, or the paper's 100.
    pub fn grid_base(&self) -> f64 {
        self.grid_base.unwrap_or(PAPER_GRID_BASE)
    }

    /// The starting noise's temperature: the file's, or 1.
    pub fn temperature(&self) -> f64 {
        self.temperature.unwrap_or(1.0)
    }

    /// The output notch's m: the file's, or 0 (off).
    pub fn output_notch(&self) -> usize {
        self.output_notch.unwrap_or(0)
    }
}

/// Whether `tau` can be a sampling temperature: finite, in [0, 2] (0 starts from zero noise,
/// 1 is the paper's sampler).
pub fn is_temperature(tau: f64) -> bool {
    (0.0..=2.0).contains(&tau)
}

/// Whether `v`, written as the header writes it and read back as the header is read, is `v` again.
fn survives_json(v: f64) -> bool {
    serde_json::to_string(&v)
        .ok()
        .and_then(|s| serde_json::from_str::<f64>(&s).ok())
        .is_some_and(|w| w.to_bits() == v.to_bits())
}

/// Why an output notch order is not allowed (None when it is): 0 (off) to
/// [`crate::model::blocks::MAX_NOTCH_ORDER`].
pub fn output_notch_error(m: Option<usize>) -> Option<String> {
    let max = crate::model::blocks::MAX_NOTCH_ORDER;
    m.filter(|m| *m > max)
        .map(|m| format!("{m}: expected 0 (off) to {max}, the notch's half-width m (2m + 1 taps)"))
}

/// What is wrong with a temperature, if anything: "τ: expected …", for the caller to prefix with
/// the name the person gave it (`--temperature`, `flow.temperature = `, …).
pub fn temperature_error(tau: Option<f64>) -> Option<String> {
    tau.filter(|t| !is_temperature(*t))
        .map(|t| format!("{t}: expected a number in [0, 2] (1 is the paper's sampler)"))
}

/// How the latent is bounded *(choice)*: `tanh` keeps every value in (−1, 1), so the 8-bit
/// uniform quantiser of shared links has a fixed range and never clips.
#[derive(Config, Debug, PartialEq)]
pub struct LatentConfig {
    /// Bits per value when the latent is quantised for links.
    #[config(default = 8)]
    pub link_bits: u32,
}

/// Everything that defines a model file: encoder, ε-decoder, baseline decoder, flow, latent.
#[derive(Config, Debug, PartialEq)]
pub struct ModelConfig {
    /// Preset name this config was made from ("lite", "small", "tiny"), for people to read.
    pub preset: String,
    pub encoder: EncoderConfig,
    pub decoder: DecoderConfig,
    pub baseline: BaselineConfig,
    pub flow: FlowConfig,
    pub latent: LatentConfig,
}

impl ModelConfig {
    /// Look a preset up by name.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "lite" => Some(Self::lite()),
            "small" => Some(Self::small()),
            "small-f8" => Some(Self::small_f8()),
            "tiny" => Some(Self::tiny()),
            _ => None,
        }
    }

    /// Names accepted by [`ModelConfig::preset`].
    pub const PRESETS: [&'static str; 4] = ["lite", "small", "small-f8", "tiny"];

    /// The paper's lite encoder (6 M params, f = 16, n_z = 8) with decoder B (20.6 M params,
    /// base 64, mult 1,1,2,2,4, 2 blocks, attention at the 3 lowest resolutions). Kept for
    /// reference: too slow to train on CPUs or to run in every browser.
    pub fn lite() -> Self {
        let mult = vec![1, 1, 2, 2, 4];
        Self {
            preset: "lite".into(),
            encoder: EncoderConfig::new(1, 64, mult.clone(), 2, 2, 8),
            decoder: DecoderConfig::new(8, 1, 64, mult.clone(), 2, vec![2, 3, 4]),
            baseline: BaselineConfig::new(8, 1, 64, mult, 3, 2),
            flow: FlowConfig::new(),
            latent: LatentConfig::new(),
        }
    }

    /// The shipped model: the paper's lite compression (f = 16, n_z = 8, 96:1) at a size that
    /// trains on CPUs and decodes in a browser. Pixel-unshuffle stems move the first level to H/2,
    /// which is what brings a step under 4 GMAC at 256×256 (see the README's size table).
    pub fn small() -> Self {
        Self {
            preset: "small".into(),
            encoder: EncoderConfig::new(2, 32, vec![1, 2, 4, 4], 1, 1, 8).with_norm_groups(8),
            decoder: DecoderConfig::new(8, 2, 24, vec![1, 2, 3, 6], 1, vec![3]).with_norm_groups(8),
            baseline: BaselineConfig::new(8, 2, 24, vec![1, 2, 3, 8], 3, 2).with_norm_groups(8),
            // Preconditioned since the second training run: the first (unpreconditioned) run
            // still left visible noise after 23k images; see weights/README.md.
            flow: FlowConfig::new().with_precondition(Some(true)),
            latent: LatentConfig::new(),
        }
    }

    /// The `small` model at f = 8, n_z = 4 (48:1, the setting of SD-VAE and TAESD): the encoder
    /// without its last level, the ε-decoder unchanged (its UNet still reaches H/16, so images
    /// are padded to multiples of 16, see [`ModelConfig::alignment`]), and a baseline that keeps
    /// the `small` baseline's three lowest-resolution levels (192, 72, 48 wide) one octave higher.
    /// Every part but the latent-facing convolutions has a `small` counterpart of the same shape,
    /// so `train --init-from` starts it from the `small` weights *(choice)*.
    pub fn small_f8() -> Self {
        let small = Self::small();
        Self {
            preset: "small-f8".into(),
            encoder: EncoderConfig::new(2, 32, vec![1, 2, 4], 1, 1, 4).with_norm_groups(8),
            decoder: DecoderConfig {
                latent_channels: 4,
                ..small.decoder
            },
            baseline: BaselineConfig::new(4, 2, 24, vec![2, 3, 8], 3, 2)
                .with_norm_groups(8)
                .with_anti_alias(Some(true)),
            flow: small.flow,
            latent: small.latent,
        }
    }

    /// A few-thousand-parameter model with f = 4 for unit tests (seconds on a CPU).
    pub fn tiny() -> Self {
        Self {
            preset: "tiny".into(),
            encoder: EncoderConfig::new(2, 8, vec![1, 2], 1, 1, 4).with_norm_groups(4),
            decoder: DecoderConfig::new(4, 2, 8, vec![1, 2], 1, vec![1])
                .with_norm_groups(4)
                .with_head_channels(8),
            baseline: BaselineConfig::new(4, 2, 8, vec![1, 2], 1, 1).with_norm_groups(4),
            flow: FlowConfig::new(),
            latent: LatentConfig::new(),
        }
    }

    /// Spatial downsampling factor f of the latent.
    pub fn downsample_factor(&self) -> usize {
        self.encoder.downsample_factor()
    }

    /// The multiple of which image sides must be (images are mirror-padded to it): the latent's f,
    /// or more where the ε-decoder's UNet reaches a lower resolution than the latent (`small-f8`).
    pub fn alignment(&self) -> usize {
        let f = self.downsample_factor();
        let f_dec = reach(self.decoder.stem_unshuffle, &self.decoder.channel_mult);
        let gcd = |mut a: usize, mut b: usize| {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        f / gcd(f, f_dec) * f_dec
    }

    /// Bounds on every field the networks divide, shift, index or allocate by, checked before any
    /// of them is used, so a crafted weight-file header gets a named error instead of a panic or a
    /// huge allocation. The bounds are far above every preset (`lite` is the largest).
    fn check_bounds(&self) -> Result<(), String> {
        let within = |name: &str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v} must lie in {lo}..={hi}"))
            }
        };
        let (e, d, b) = (&self.encoder, &self.decoder, &self.baseline);
        for (what, ch, r, base, mult, blocks, groups, n_z) in [
            (
                "encoder",
                e.in_channels,
                e.stem_unshuffle,
                e.base_channels,
                &e.channel_mult,
                e.blocks_per_level,
                e.norm_groups,
                e.latent_channels,
            ),
            (
                "decoder",
                d.image_channels,
                d.stem_unshuffle,
                d.base_channels,
                &d.channel_mult,
                d.blocks_per_level,
                d.norm_groups,
                d.latent_channels,
            ),
            (
                "baseline",
                b.image_channels,
                b.stem_unshuffle,
                b.base_channels,
                &b.channel_mult,
                b.blocks_per_level,
                b.norm_groups,
                b.latent_channels,
            ),
        ] {
            within(&format!("{what}.image channels"), ch, 3, 3)?;
            within(&format!("{what}.stem_unshuffle"), r, 1, 4)?;
            // At least 3: burn's GroupNorm panics on a tensor of 2 elements or fewer (it checks the
            // element count where it means the rank), which a 1- or 2-channel level reaches at 1×1
            // (found by the `config` fuzz target).
            within(&format!("{what}.base_channels"), base, 3, 512)?;
            within(&format!("{what}.channel_mult length"), mult.len(), 1, 6)?;
            for m in mult.iter() {
                within(&format!("{what}.channel_mult entry"), *m, 1, 16)?;
            }
            // At least 1: a level's first block is what changes the width to the level's, so a part
            // without blocks whose channel_mult changes would feed a width its next layer does not
            // take (found by the `config` fuzz target).
            within(&format!("{what}.blocks_per_level"), blocks, 1, 8)?;
            within(&format!("{what}.norm_groups"), groups, 1, 64)?;
            within(&format!("{what}.latent_channels"), n_z, 1, 64)?;
        }
        within("encoder.mid_blocks", e.mid_blocks, 0, 8)?;
        within("baseline.mid_blocks", b.mid_blocks, 0, 8)?;
        within("decoder.head_channels", d.head_channels, 1, 1024)?;
        within("decoder.time_embed_mult", d.time_embed_mult, 1, 8)?;
        if d.base_channels % 2 != 0 {
            return Err(format!(
                "decoder.base_channels = {} must be even (the sinusoidal time embedding has a sine and a cosine half)",
                d.base_channels
            ));
        }
        let f = &self.flow;
        if !(f.sigma_data.is_finite() && f.sigma_data > 0.0 && f.sigma_data <= 10.0) {
            return Err(format!("flow.sigma_data = {} must lie in (0, 10]", f.sigma_data));
        }
        if !(f.time_scale.is_finite() && f.time_scale > 0.0 && f.time_scale <= 1e6) {
            return Err(format!("flow.time_scale = {} must lie in (0, 1e6]", f.time_scale));
        }
        Ok(())
    }

    /// Checks that the parts fit together; the message names the field and the values.
    pub fn validate(&self) -> Result<(), String> {
        self.check_bounds()?;
        let n_z = self.encoder.latent_channels;
        if self.decoder.latent_channels != n_z || self.baseline.latent_channels != n_z {
            return Err(format!(
                "latent channels disagree: encoder {n_z}, decoder {}, baseline {}",
                self.decoder.latent_channels, self.baseline.latent_channels
            ));
        }
        let f = self.downsample_factor();
        let r_dec = self.decoder.stem_unshuffle;
        if r_dec == 0 || !f.is_multiple_of(r_dec) {
            return Err(format!(
                "decoder.stem_unshuffle = {r_dec} must divide the latent's f = {f} (z is upsampled to H/{r_dec})"
            ));
        }
        let f_base = reach(self.baseline.stem_unshuffle, &self.baseline.channel_mult);
        if f_base != f {
            return Err(format!(
                "baseline upsamples by {f_base}, the encoder downsamples by {f}"
            ));
        }
        for (what, base, mult, groups) in [
            (
                "encoder",
                self.encoder.base_channels,
                &self.encoder.channel_mult,
                self.encoder.norm_groups,
            ),
            (
                "decoder",
                self.decoder.base_channels,
                &self.decoder.channel_mult,
                self.decoder.norm_groups,
            ),
            (
                "baseline",
                self.baseline.base_channels,
                &self.baseline.channel_mult,
                self.baseline.norm_groups,
            ),
        ] {
            if mult.is_empty() {
                return Err(format!("{what}.channel_mult is empty"));
            }
            // The base width too: the decoder's stem gives it to its first block (found by the
            // `config` fuzz target).
            if let Some(m) = std::iter::once(&1)
                .chain(mult.iter())
                .find(|m| (base * **m) % groups != 0)
            {
                return Err(format!(
                    "{what}: width {} is not a multiple of norm_groups {groups}",
                    base * m
                ));
            }
        }
        if let Some(l) = self
            .decoder
            .attention_levels
            .iter()
            .find(|l| **l >= self.decoder.channel_mult.len())
        {
            return Err(format!(
                "decoder.attention_levels names level {l}, the decoder has {}",
                self.decoder.channel_mult.len()
            ));
        }
        // Attention splits a level's width into heads of about head_channels: the width must
        // divide evenly (the lowest level always has attention, in the middle block).
        let d = &self.decoder;
        let top = d.channel_mult.len() - 1;
        for l in d.attention_levels.iter().copied().chain([top]) {
            let width = d.base_channels * d.channel_mult[l];
            let heads = (width / d.head_channels).max(1);
            if !width.is_multiple_of(heads) {
                return Err(format!(
                    "decoder level {l}: width {width} does not split into {heads} attention heads of \
                     about head_channels = {}",
                    d.head_channels
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.flow.gamma) || self.flow.gamma == 0.0 {
            return Err(format!("flow.gamma = {} must lie in (0, 1]", self.flow.gamma));
        }
        if let Some(n) = self.flow.grid_base.filter(|n| !is_grid_base(*n)) {
            return Err(format!(
                "flow.grid_base = {n} must be a finite number ≥ 1 (the paper's is 100)"
            ));
        }
        if let Some(e) = temperature_error(self.flow.temperature) {
            return Err(format!("flow.temperature = {e}"));
        }
        if let Some(e) = output_notch_error(self.flow.output_notch) {
            return Err(format!("flow.output_notch = {e}"));
        }
        // serde_json's default float reader is not correctly rounded: a decimal of 17 significant
        // digits can come back one unit in the last place off, so a header holding one would change
        // each time a file is re-written (found by fuzzing the config). Such values are refused.
        let f = &self.flow;
        for (name, v) in [
            ("gamma", Some(f.gamma)),
            ("sigma_data", Some(f.sigma_data)),
            ("time_scale", Some(f.time_scale)),
            ("grid_base", f.grid_base),
            ("temperature", f.temperature),
        ] {
            if let Some(v) = v.filter(|v| !survives_json(*v)) {
                return Err(format!(
                    "flow.{name} = {v} does not read back as the same number from the header's JSON; \
                     give it with at most 15 significant digits"
                ));
            }
        }
        if !(2..=8).contains(&self.latent.link_bits) {
            return Err(format!(
                "latent.link_bits = {} must lie in 2..=8",
                self.latent.link_bits
            ));
        }
        Ok(())
    }
}
