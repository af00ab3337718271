//! The training corpus built by `tools/corpus.py`: photos held in memory as 8-bit RGB, served as
//! random-scale crops with horizontal flips (DATA.md: pick a downscale ×1–×8 before cropping,
//! weight sources by content, so every photo is equally likely whatever its pixel count).

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::RgbImage;
use image::imageops::{self, FilterType};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::RngCore;
use serde::Deserialize;

use crate::image::Planar;

/// Photos are kept at most this long on their longer side (memory; ×1 crops of 4K wallpapers are
/// mostly sky anyway).
const MAX_SIDE: u32 = 2048;

#[derive(Deserialize)]
struct Record {
    /// `None` for a photo dropped as a near copy of another (split "dropped").
    file: Option<String>,
    split: String,
}

pub struct Corpus {
    pub images: Vec<RgbImage>,
    pub files: Vec<String>,
}

pub fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Corpus {
    /// Loads the photos of `split` ("train", "val" or "test") listed in `dir/manifest.json`.
    pub fn load(dir: &Path, split: &str) -> Result<Self> {
        let manifest = dir.join("manifest.json");
        let records: Vec<Record> = serde_json::from_slice(&std::fs::read(&manifest).with_context(|| {
            format!(
                "reading {}\n---> HINT: build the corpus with `python3 tools/corpus.py`",
                manifest.display()
            )
        })?)
        .with_context(|| format!("parsing {}", manifest.display()))?;
        let files: Vec<String> = records
            .into_iter()
            .filter(|r| r.split == split)
            .filter_map(|r| r.file)
            .collect();
        if files.is_empty() {
            bail!("{} lists no {split} photos", manifest.display());
        }
        let images = files
            .iter()
            .map(|f| {
                let img = image::open(dir.join(f))
                    .with_context(|| format!("decoding {f}"))?
                    .to_rgb8();
                let long = img.width().max(img.height());
                Ok(if long > MAX_SIDE {
                    let s = MAX_SIDE as f64 / long as f64;
                    imageops::resize(
                        &img,
                        (img.width() as f64 * s) as u32,
                        (img.height() as f64 * s) as u32,
                        FilterType::Triangle,
                    )
                } else {
                    img
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { images, files })
    }

    /// `n` random crops of `size`×`size` as [n, 3, size, size] values in [-1, 1]: a random photo,
    /// a log-uniform downscale in [1, 8] (limited by the photo's size), a random position, a
    /// random horizontal flip.
    pub fn batch(&self, rng: &mut ChaCha8Rng, n: usize, size: u32) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * 3 * (size * size) as usize);
        for _ in 0..n {
            let img = &self.images[(rng.next_u64() % self.images.len() as u64) as usize];
            let short = img.width().min(img.height()) as f64;
            let max_scale = (short / size as f64).clamp(1.0, 8.0);
            let scale = max_scale.powf(uniform(rng));
            let side = ((size as f64 * scale) as u32).min(img.width()).min(img.height()).max(1);
            let x = (uniform(rng) * (img.width() - side + 1) as f64) as u32;
            let y = (uniform(rng) * (img.height() - side + 1) as f64) as u32;
            let region = imageops::crop_imm(img, x, y, side, side).to_image();
            let mut crop = if side == size {
                region
            } else {
                imageops::resize(&region, size, size, FilterType::Triangle)
            };
            if rng.next_u64() & 1 == 1 {
                imageops::flip_horizontal_in_place(&mut crop);
            }
            let rgba = image::DynamicImage::ImageRgb8(crop).to_rgba8();
            out.extend(
                Planar::from_rgba(rgba.as_raw(), size as usize, size as usize)
                    .expect("consistent crop")
                    .data,
            );
        }
        out
    }
}
