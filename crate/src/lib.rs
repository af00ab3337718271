//! ε-VAE (Zhao et al., "ε-VAE: Denoising as Visual Decoding", ICML 2025) in Rust on burn.
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | model presets (`lite`, `small`, `tiny`) whose fields cite the paper |
//! | [`model`] | encoder, ε-decoder (UNet), VAE baseline decoder, shared blocks, MAC counter |
//! | [`flow`] | the rectified-flow convention, time grid, Euler step, sampler, seeded noise |
//! | [`weights`] | the weight file: write, stream-read, verify, quantise |
//! | [`latent`] | the quantised, compressed latent that a shared link carries |
//! | [`image`] | RGBA and image files ↔ planar images ↔ tensors, padding, PSNR, SSIM |
//! | [`backend`] | choosing the device at run time (flex CPU, wgpu) |
//! | `web` | the wasm-bindgen API of the page (feature `web`) |
//! | [`pipeline`] | encode → sample → image, as the CLI, tests and page run it |
//! | `train` | corpus crops, ST-LPIPS, discriminator, training loop (feature `train`) |

pub mod backend;
pub mod config;
pub mod flow;
pub mod image;
pub mod latent;
pub mod model;
pub mod pipeline;
#[cfg(feature = "cli")]
pub mod serve;
#[cfg(feature = "train")]
pub mod train;
#[cfg(feature = "web")]
pub mod web;
pub mod weights;

pub use config::ModelConfig;
pub use model::{Autoencoder, Part};
