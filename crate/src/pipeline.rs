//! Image → latent → image, the way the CLI, the tests and the page run it. Sizes that are not
//! multiples of the model's alignment (f, or 16 for `small-f8`) are mirror-padded on the right and
//! bottom before encoding and cropped after decoding, so nothing is resampled.

use burn::tensor::{Device, Tensor};

use crate::config::ModelConfig;
use crate::flow::{self, Flow, Frame};
use crate::image::Planar;
use crate::model::Autoencoder;

/// A latent with the size of the image it came from.
#[derive(Clone, Debug)]
pub struct Latent {
    /// [1, n_z, Hp/f, Wp/f] for the padded image Hp×Wp.
    pub z: Tensor<4>,
    pub width: usize,
    pub height: usize,
}

impl Latent {
    /// Padded image size [Hp, Wp] the decoders produce.
    pub fn padded_size(&self, f: usize) -> [usize; 2] {
        let [_, _, h, w] = self.z.dims();
        [h * f, w * f]
    }
}

/// Encodes `image`. The latent is put on the uniform grid that links use (`latent.link_bits`), so
/// the image decoded here and the one decoded from a shared link come from the same numbers.
pub fn encode(model: &Autoencoder, cfg: &ModelConfig, image: &Planar, device: &Device) -> Latent {
    let x = image.pad_to_multiple(cfg.alignment()).to_tensor(device);
    let z = quantize_latent(model.encode(x), cfg.latent.link_bits);
    Latent {
        z,
        width: image.width,
        height: image.height,
    }
}

/// Rounds z ∈ [−1, 1] to the nearest of 2^bits uniform levels (the same arithmetic as
/// `latent::encode` followed by `latent::decode`).
pub fn quantize_latent(z: Tensor<4>, bits: u32) -> Tensor<4> {
    let top = ((1u32 << bits) - 1) as f64;
    ((z.clamp(-1.0, 1.0) + 1.0) * (0.5 * top)).round() / top * 2.0 - 1.0
}

/// The starting noise for decoding `latent` with `seed`, [1, 3, Hp, Wp]: standard normal times
/// the flow's temperature.
pub fn noise(cfg: &ModelConfig, latent: &Latent, seed: u64, device: &Device) -> Tensor<4> {
    let [h, w] = latent.padded_size(cfg.downsample_factor());
    flow::noise_tensor(seed, [1, 3, h, w], device) * cfg.flow.temperature()
}

/// ε-VAE decoding in `steps` Euler steps; `hook` sees every frame (padded size). Returns the
/// clamped image tensor at the padded size.
pub fn decode(
    model: &Autoencoder,
    cfg: &ModelConfig,
    latent: &Latent,
    steps: usize,
    seed: u64,
    hook: impl FnMut(&Frame),
) -> Tensor<4> {
    let device = latent.z.device();
    let eps = noise(cfg, latent, seed, &device);
    flow::sample(&Flow::new(&cfg.flow), model.decoder(), &latent.z, eps, steps, hook)
}

/// The VAE baseline's one-pass decoding, clamped, at the padded size.
pub fn decode_baseline(model: &Autoencoder, latent: &Latent) -> Tensor<4> {
    model.baseline().forward(latent.z.clone()).clamp(-1.0, 1.0)
}

/// Back to the image's own size.
#[cfg(not(target_arch = "wasm32"))]
pub fn to_image(t: Tensor<4>, latent: &Latent) -> Planar {
    Planar::from_tensor(t).crop(latent.width, latent.height)
}
