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
    /// n of the reversed-log grid ε-VAE sampled on (none for the VAE).
    pub grid_base: Option<f64>,
    /// Temperature of the starting noise (none for the VAE).
    pub temperature: Option<f64>,
    /// m of the output notch ε-VAE decoded with, 0 = off (none for the VAE).
    pub output_notch: Option<usize>,
    pub psnr: f64,
    pub ssim: f64,
    pub st_lpips: f64,
    pub images: usize,
    pub seeds: usize,
    /// Scores of the per-pixel mean of the seeds' images rather than the mean of their scores
    /// (an estimate of the decoder's posterior mean: what the sampling noise costs in PSNR).
    pub seed_mean: bool,
}

/// Image files in `dir` (PNG, JPEG, WebP), sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["png", "jpg", "jpeg", "webp"].contains(&e.to_lowercase().as_str()))
        })
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("{} holds no PNG, JPEG or WebP images", dir.display());
    }
    Ok(v)
}

/// Evaluates on every image of `dir`, centre-cropped to `size`². ε-VAE samples on the reversed-log
/// grid of each base in `grid_bases` from noise of each temperature in `temperatures`, through each
/// output notch in `notches`, or with its weight file's grid, temperature and notch where those are
/// empty. Runs on
/// `device` (flex, or libtorch with the `tch` feature: the same numbers to float rounding, faster).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    dir: &Path,
    size: usize,
    epsvae_weights: &Path,
    vae_weights: Option<&Path>,
    steps: &[usize],
    seeds: usize,
    grid_bases: &[f64],
    temperatures: &[f64],
    notches: &[usize],
    lpips_path: &Path,
    device: Device,
) -> Result<Vec<Row>> {
    if let Some(n) = grid_bases.iter().find(|n| !crate::config::is_grid_base(**n)) {
        bail!("grid base {n}: expected a number ≥ 1 (the paper's is 100; 1 is the uniform grid)");
    }
    if let Some(e) = temperatures
        .iter()
        .find_map(|t| crate::config::temperature_error(Some(*t)))
    {
        bail!("temperature {e}");
    }
    if let Some(e) = notches.iter().find_map(|m| crate::config::output_notch_error(Some(*m))) {
        bail!("output notch {e}");
    }
    let lpips = StLpips::load(lpips_path, &device)?;
    let images: Vec<Planar> = image_files(dir)?
        .iter()
        .map(|p| {
            Ok(Planar::decode(&std::fs::read(p)?)
                .with_context(|| p.display().to_string())?
                .center_square(size))
        })
        .collect::<Result<_>>()?;
    let score = |a: &Planar, b: &Planar| -> [f64; 3] {
        let l = lpips.forward(a.to_tensor(&device), b.to_tensor(&device));
        [
            psnr(a, b),
            ssim(a, b),
            l.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32")[0] as f64,
        ]
    };
    let mut rows = Vec::new();
    let mut push = |name: String,
                    steps: Option<usize>,
                    flow: Option<(f64, f64, usize)>,
                    sums: [f64; 3],
                    n: usize,
                    seeds: usize,
                    seed_mean: bool| {
        let (grid_base, temperature, output_notch) = (flow.map(|f| f.0), flow.map(|f| f.1), flow.map(|f| f.2));
        rows.push(Row {
            decoder: name,
            steps,
            grid_base,
            temperature,
            output_notch,
            psnr: sums[0] / n as f64,
            ssim: sums[1] / n as f64,
            st_lpips: sums[2] / n as f64,
            images: images.len(),
            seeds,
            seed_mean,
        });
    };
    if let Some(vp) = vae_weights {
        let (h, m, _) = weights::load_file(vp, &device)?;
        if m.baseline.is_none() {
            bail!(
                "{}: no VAE baseline decoder in it (parts {:?}); the baseline file is a VAE's, e.g. weights/vae-small.safetensors",
                vp.display(),
                h.part_list()
            );
        }
        let mut s = [0.0; 3];
        for img in &images {
            let lat = pipeline::encode(&m, &h.config, img, &device);
            let out = pipeline::to_image(pipeline::decode_baseline(&m, &lat), &lat);
            s.iter_mut().zip(score(img, &out)).for_each(|(a, b)| *a += b);
        }
        push("VAE".into(), None, None, s, images.len(), 1, false);
    }
    let (h, m, _) = weights::load_file(epsvae_weights, &device)?;
    if m.decoder.is_none() {
        bail!(
            "{}: no ε-decoder in it (parts {:?}); --weights takes an ε-VAE file, e.g. weights/epsvae-small.safetensors",
            epsvae_weights.display(),
            h.part_list()
        );
    }
    let bases = if grid_bases.is_empty() {
        vec![h.config.flow.grid_base()]
    } else {
        grid_bases.to_vec()
    };
    let latents: Vec<_> = images
        .iter()
        .map(|img| pipeline::encode(&m, &h.config, img, &device))
        .collect();
    let temps = if temperatures.is_empty() {
        vec![h.config.flow.temperature()]
    } else {
        temperatures.to_vec()
    };
    let notches = if notches.is_empty() {
        vec![h.config.flow.output_notch()]
    } else {
        notches.to_vec()
    };
    let mut settings = Vec::new();
    for &b in &bases {
        for &t in &temps {
            settings.extend(notches.iter().map(|&m| (b, t, m)));
        }
    }
    for (base, tau, notch) in settings {
        let mut cfg = h.config.clone();
        cfg.flow.grid_base = Some(base);
        cfg.flow.temperature = Some(tau);
        cfg.flow.output_notch = Some(notch);
        for &n in steps {
            let (mut s, mut sm) = ([0.0; 3], [0.0; 3]);
            for (img, lat) in images.iter().zip(&latents) {
                let mut mean = vec![0f32; img.data.len()];
                for seed in 0..seeds as u64 {
                    let out = pipeline::to_image(pipeline::decode(&m, &cfg, lat, n, seed, |_| {}), lat);
                    s.iter_mut().zip(score(img, &out)).for_each(|(a, b)| *a += b);
                    mean.iter_mut().zip(&out.data).for_each(|(a, b)| *a += b / seeds as f32);
                }
                if seeds > 1 {
                    let mean = Planar {
                        width: img.width,
                        height: img.height,
                        data: mean,
                    };
                    sm.iter_mut().zip(score(img, &mean)).for_each(|(a, b)| *a += b);
                }
            }
            let grid = if bases.len() > 1 {
                format!(", grid n = {base}")
            } else {
                String::new()
            };
            let temp = if temps.len() > 1 || tau != 1.0 {
                format!(", τ = {tau}")
            } else {
                String::new()
            };
            let notch_name = if notches.len() > 1 {
                format!(", notch m = {notch}")
            } else {
                String::new()
            };
            let name = format!(
                "ε-VAE {n} step{}{grid}{temp}{notch_name}",
                if n == 1 { "" } else { "s" }
            );
            push(
                name.clone(),
                Some(n),
                Some((base, tau, notch)),
                s,
                images.len() * seeds,
                seeds,
                false,
            );
            if seeds > 1 {
                push(
                    format!("{name}, mean image of {seeds} seeds"),
                    Some(n),
                    Some((base, tau, notch)),
                    sm,
                    images.len(),
                    seeds,
                    true,
                );
            }
        }
    }
    Ok(rows)
}

pub fn markdown(rows: &[Row], size: usize) -> String {
    let mut s = format!("| decoder ({size}×{size}) | PSNR (dB) ↑ | SSIM ↑ | ST-LPIPS ↓ |\n|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.2} | {:.4} | {:.4} |\n",
            r.decoder, r.psnr, r.ssim, r.st_lpips
        ));
    }
    s
}
