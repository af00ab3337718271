//! Native training (never in the wasm build): data, losses, discriminator, the loop.

pub mod data;
pub mod disc;
pub mod eval;
pub mod lpips;
pub mod trainer;
