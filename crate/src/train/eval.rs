//! `epsvae eval`: PSNR, SSIM and ST-LPIPS of the VAE baseline and of ε-VAE at each step count,
//! averaged over images (centre-cropped squares) and noise seeds.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde::Serialize;

use super::lpips::StLpips;
use crate::image::{Planar, psnr, ssim};
use crate::pipeline;
use crate::weights;

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// "VAE" or "ε-VAE N steps".
    pub decoder: String,
    pub steps: Option<usize>,
    pub psnr: f64,
    pub ssim: f64,
    pub st_lpips: f64,
    pub images: usize,
    pub seeds: usize,
}

/// Image files in `dir` (PNG, JPEG, WebP), sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| ["png", "jpg", "jpeg", "webp"].contains(&e.to_lowercase().as_str())))
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("{} holds no PNG, JPEG or WebP images", dir.display());
    }
    Ok(v)
}

/// Evaluates on every image of `dir`, centre-cropped to `size`².
pub fn evaluate(
    dir: &Path,
    size: usize,
    epsvae_weights: &Path,
    vae_weights: Option<&Path>,
    steps: &[usize],
    seeds: usize,
    lpips_path: &Path,
) -> Result<Vec<Row>> {
    let device = Device::flex();
    let lpips = StLpips::load(lpips_path, &device)?;
    let images: Vec<Planar> = image_files(dir)?
        .iter()
        .map(|p| Ok(Planar::decode(&std::fs::read(p)?).with_context(|| p.display().to_string())?.center_square(size)))
        .collect::<Result<_>>()?;
    let score = |a: &Planar, b: &Planar| -> [f64; 3] {
        let l = lpips.forward(a.to_tensor(&device), b.to_tensor(&device));
        [psnr(a, b), ssim(a, b), l.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32")[0] as f64]
    };
    let mut rows = Vec::new();
    let mut push = |name: String, steps: Option<usize>, sums: [f64; 3], n: usize, seeds: usize| {
        rows.push(Row { decoder: name, steps, psnr: sums[0] / n as f64, ssim: sums[1] / n as f64, st_lpips: sums[2] / n as f64, images: images.len(), seeds });
    };
    if let Some(vp) = vae_weights {
        let (h, m, _) = weights::load_file(vp, &device)?;
        let mut s = [0.0; 3];
        for img in &images {
            let lat = pipeline::encode(&m, &h.config, img, &device);
            let out = pipeline::to_image(pipeline::decode_baseline(&m, &lat), &lat);
            s.iter_mut().zip(score(img, &out)).for_each(|(a, b)| *a += b);
        }
        push("VAE".into(), None, s, images.len(), 1);
    }
    let (h, m, _) = weights::load_file(epsvae_weights, &device)?;
    for &n in steps {
        let mut s = [0.0; 3];
        for img in &images {
            let lat = pipeline::encode(&m, &h.config, img, &device);
            for seed in 0..seeds as u64 {
                let out = pipeline::to_image(pipeline::decode(&m, &h.config, &lat, n, seed, |_| {}), &lat);
                s.iter_mut().zip(score(img, &out)).for_each(|(a, b)| *a += b);
            }
        }
        push(format!("ε-VAE {n} step{}", if n == 1 { "" } else { "s" }), Some(n), s, images.len() * seeds, seeds);
    }
    Ok(rows)
}

pub fn markdown(rows: &[Row], size: usize) -> String {
    let mut s = format!("| decoder ({size}×{size}) | PSNR (dB) ↑ | SSIM ↑ | ST-LPIPS ↓ |\n|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!("| {} | {:.2} | {:.4} | {:.4} |\n", r.decoder, r.psnr, r.ssim, r.st_lpips));
    }
    s
}
