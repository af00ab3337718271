//! The training loop (paper §3.3 losses, §4 setup): score (velocity MSE) + 0.5·ST-LPIPS on the
//! one-step estimate + 0.5·adversarial trajectory matching, Adam with β1 = 0 and warm-up, EMA of
//! the generator. The VAE baseline trains on the same data and number of images with a pixel L1,
//! 0.5·ST-LPIPS and an unpaired GAN. Checkpoints resume exactly: weights, EMA, discriminator,
//! both optimisers, the step (every step's randomness is derived from (seed, step)).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsAccumulator, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use super::data::{Corpus, uniform};
use super::disc::{Discriminator, discriminator_loss, generator_loss, r1_penalty};
use super::lpips::StLpips;
use crate::config::ModelConfig;
use crate::flow::{self, Flow};
use crate::image::{Planar, psnr};
use crate::model::{Autoencoder, Part, macs};
use crate::weights::{self, Provenance, Storage};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Encoder + ε-decoder, trained by the rectified-flow objective.
    Epsvae,
    /// Encoder + one-pass baseline decoder.
    Vae,
}

impl std::str::FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "epsvae" => Ok(ModelKind::Epsvae),
            "vae" => Ok(ModelKind::Vae),
            _ => Err(format!("model {s:?} is not one of epsvae, vae")),
        }
    }
}

/// Everything a run is trained with; stored in the run folder and checked on resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub preset: String,
    pub model: ModelKind,
    /// Square crop side (the paper trains at 128²; CPUs afford less).
    pub crop: u32,
    pub batch: usize,
    /// Peak learning rate (paper: 1e-4).
    pub lr: f64,
    /// The discriminator's learning rate as a multiple of the generator's, on the same schedule
    /// *(choice: 1; a D that must catch up with a generator resumed from trained weights can be
    /// given more)*.
    #[serde(default = "one")]
    pub d_lr_scale: f64,
    /// Linear warm-up steps (paper: 5k at batch 256).
    pub warmup: u64,
    /// Step at which the learning rate starts to fall linearly from `lr` to 0 at `decay_end`
    /// (warm-up, constant, decay) *(choice: the paper gives no decay)*; `u64::MAX`: constant.
    #[serde(default = "never")]
    pub decay_start: u64,
    #[serde(default = "never")]
    pub decay_end: u64,
    /// A second warm-up, for a run that resumes a checkpoint on a new recipe: from step
    /// `rewarm_start` the rate ramps linearly from 0 to its scheduled value at `rewarm_end`
    /// *(choice: going straight back to the full rate after a decay to 0 raised the losses
    /// 2–3.5-fold for about 150 steps; weights/README.md)*; `u64::MAX`: none.
    #[serde(default = "never")]
    pub rewarm_start: u64,
    #[serde(default = "never")]
    pub rewarm_end: u64,
    /// EMA decay of the generator (paper: 0.999), reached after a warm-up of
    /// (1 + step)/(10 + step) *(choice)*.
    pub ema: f64,
    /// Weight of ST-LPIPS on x̂0 (paper: 0.5).
    pub lpips_weight: f64,
    /// Weight of a pixel L1 between the ε-VAE's one-step estimate x̂0 and x0, the VAE baseline's
    /// reconstruction term, added to the score loss *(choice: the paper has none; 0 is the
    /// paper's objective)*. It pulls x̂0 towards the conditional median, so each noise seed
    /// invents less detail of its own; the VAE's L1 always has weight 1.
    #[serde(default)]
    pub x0_l1_weight: f64,
    /// Weight of a loss on the ε-VAE's actual decode from noise *(choice: the paper has none; 0
    /// is the paper's objective)*: each step also samples x̂ from x₁ = τ·ε over the model's grid
    /// in `decode_steps` Euler steps, the first ones without gradients and the last one with them
    /// (through decoder and encoder), and adds `decode_weight`·(`decode_l1_weight`·L1 +
    /// `lpips_weight`·ST-LPIPS) between x̂ and x0: the VAE's reconstruction terms, on what
    /// `epsvae eval` scores. The paper's losses see x_t made from the real image; this one sees
    /// the states the sampler itself reaches. τ is the model config's sampling temperature (1 when it has none).
    #[serde(default)]
    pub decode_weight: f64,
    /// Weight of the pixel L1 inside that loss *(choice: 1, the VAE's; 0 leaves ST-LPIPS alone,
    /// FlowMo's perceptual-only post-training, which does not pull the decode towards the blurred
    /// median)*.
    #[serde(default = "one")]
    pub decode_l1_weight: f64,
    /// Euler steps of that decode (the card's evaluation: 3).
    #[serde(default = "three")]
    pub decode_steps: usize,
    /// Weight of the adversarial loss (paper: 0.5).
    pub adv_weight: f64,
    /// Step from which the adversarial loss is on *(choice: after the reconstruction settles)*.
    pub adv_start: u64,
    /// R1 weight on the per-patch penalty of `disc::r1_penalty` *(choice)*: 0.01, the largest of
    /// 1, 0.1 and 0.01 with which a fresh discriminator learns to tell textured crops from their
    /// blur in 60 steps (the `discriminator_learns_…` test). Runs begun before 2026-12-06 have 10 in
    /// their train.json, which holds D at chance with this penalty: resume them with `--r1 0.01`.
    pub r1_weight: f64,
    /// Half-width of the uniform noise added to the latent in training, so the decoder tolerates
    /// the 8-bit quantisation of shared links *(choice)*: one 8-bit step over (−1, 1) is 2/255.
    pub latent_noise: f64,
    pub seed: u64,
    /// Total steps to reach; a resumed run continues to this.
    pub steps: u64,
    /// Seconds between checkpoints.
    pub checkpoint_every_s: u64,
    /// Steps between validations.
    pub val_every: u64,
    /// A weight file the run started from (`train --init-from`), by parameter name: equal shapes
    /// copied, the shared leading block of others (see `weights::transplant`). `None`: fresh.
    #[serde(default)]
    pub init_from: Option<String>,
}

fn never() -> u64 {
    u64::MAX
}

fn one() -> f64 {
    1.0
}

fn three() -> usize {
    3
}

impl TrainConfig {
    /// The learning rate of step `step` (counted from 0): linear warm-up to `lr`, constant, then
    /// linear decay to 0 between `decay_start` and `decay_end`; times the re-warm-up's ramp from
    /// `rewarm_start` to `rewarm_end`.
    pub fn lr_at(&self, step: u64) -> f64 {
        let warm = ((step + 1) as f64 / self.warmup.max(1) as f64).min(1.0);
        let rewarm = if step < self.rewarm_start {
            1.0
        } else {
            let span = self.rewarm_end.saturating_sub(self.rewarm_start).max(1);
            ((step - self.rewarm_start + 1) as f64 / span as f64).min(1.0)
        };
        let decay = if step < self.decay_start {
            1.0
        } else {
            let span = self.decay_end.saturating_sub(self.decay_start).max(1);
            (1.0 - (step - self.decay_start) as f64 / span as f64).max(0.0)
        };
        self.lr * warm * rewarm * decay
    }

    pub fn new(preset: &str, model: ModelKind) -> Self {
        Self {
            preset: preset.into(),
            model,
            crop: 64,
            batch: 8,
            lr: 2e-4,
            d_lr_scale: 1.0,
            warmup: 500,
            decay_start: never(),
            decay_end: never(),
            rewarm_start: never(),
            rewarm_end: never(),
            ema: 0.999,
            lpips_weight: 0.5,
            x0_l1_weight: 0.0,
            decode_weight: 0.0,
            decode_l1_weight: 1.0,
            decode_steps: 3,
            adv_weight: 0.5,
            adv_start: 3000,
            r1_weight: 0.01,
            latent_noise: 1.0 / 255.0,
            seed: 0,
            steps: 200_000,
            checkpoint_every_s: 600,
            val_every: 500,
            init_from: None,
        }
    }
}

/// The run's progress, stored beside the checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunState {
    pub step: u64,
    pub images_seen: u64,
    pub wall_s: f64,
}

/// Losses of one step, as logged.
#[derive(Clone, Debug, Default)]
pub struct StepLosses {
    /// Velocity MSE (ε-VAE) or pixel L1 (VAE).
    pub recon: f32,
    /// The ε-VAE's L1 on x̂0 (0 unless `x0_l1_weight` > 0).
    pub x0_l1: f32,
    /// L1 and ST-LPIPS of the ε-VAE's decode from noise (0 unless `decode_weight` > 0).
    pub decode_l1: f32,
    pub decode_lpips: f32,
    pub lpips: f32,
    pub g_adv: f32,
    /// The discriminator's GAN loss (without R1): 2·ln 2 ≈ 1.386 when it cannot tell real from fake.
    pub d_loss: f32,
    /// Mean D(real) − mean D(fake) over the batch's patch logits: above 0 when D separates them.
    pub d_margin: f32,
}

/// A run folder. Each checkpoint is a folder `ckpt-<step>`; resuming takes the newest (or `ckpt`,
/// the layout of runs checkpointed before step numbers were in the name). A process removes the
/// checkpoints it superseded itself, never ones it found: those may be committed, and replacing a
/// committed binary in git costs its size twice (old and new), where adding one costs it once.
struct Paths {
    dir: PathBuf,
}

impl Paths {
    fn latest(&self) -> Option<PathBuf> {
        let numbered = std::fs::read_dir(&self.dir).ok()?.filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let step: u64 = name.strip_prefix("ckpt-")?.parse().ok()?;
            Some((step, self.dir.join(name)))
        });
        let newest = numbered
            .filter(|(_, p)| p.join("state.json").exists())
            .max_by_key(|(s, _)| *s)
            .map(|(_, p)| p);
        newest.or_else(|| Some(self.dir.join("ckpt")).filter(|p| p.join("state.json").exists()))
    }
}

/// Adam's first moment is not stored: with β1 = 0 every step sets it to that step's gradient
/// before reading it, so zeros restore the optimiser exactly, and its files are half the size.
const BETA_1: f32 = 0.0;
const MOMENT_1: &str = ".moment_1";
const MOMENT_2: &str = ".moment_2";

/// Reads an optimiser state (burnpack), lets `edit` change its list of tensors, and gives it back
/// with the same scalars and metadata.
fn rewrite_optimizer(
    bytes: burn_pack::Bytes,
    edit: impl FnOnce(Vec<burn_pack::Tensor>) -> Result<Vec<burn_pack::Tensor>>,
) -> Result<burn_pack::Writer> {
    let reader = burn_pack::Reader::from_bytes(bytes).context("not an optimiser state (burnpack)")?;
    let (scalars, meta) = (reader.scalars().clone(), reader.metadata().clone());
    let mut w = burn_pack::Writer::new(edit(reader.into_tensors()?)?);
    for (k, v) in &scalars {
        w = w.with_scalar(k, *v);
    }
    for (k, v) in &meta {
        w = w.with_metadata(k, v);
    }
    Ok(w)
}

fn save_optimizer(optim: &burn::optim::ModuleOptimizer, path: &Path) -> Result<()> {
    let state = optim
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("optimiser state: {e:?}"))?;
    let w = rewrite_optimizer(state, |tensors| {
        let kept = tensors.into_iter().filter(|t| !t.name.ends_with(MOMENT_1));
        kept.map(|t| {
            let (name, dtype, shape, id, bytes) = t.into_parts()?;
            Ok(burn_pack::Tensor::new(name, dtype, shape, id, bytes))
        })
        .collect()
    })?;
    w.write_to_file(path)
        .with_context(|| format!("writing {}", path.display()))
}

fn load_optimizer(optim: burn::optim::ModuleOptimizer, path: &Path) -> Result<burn::optim::ModuleOptimizer> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let w = rewrite_optimizer(burn_pack::Bytes::from_bytes_vec(bytes), |tensors| {
        // Files written before the first moment was dropped still hold it.
        let has_m1 = tensors.iter().any(|t| t.name.ends_with(MOMENT_1));
        let mut out = vec![];
        for t in tensors {
            let (name, dtype, shape, id, bytes) = t.into_parts()?;
            if let Some(stem) = name.strip_suffix(MOMENT_2).filter(|_| !has_m1) {
                let zeros = burn_pack::Bytes::from_bytes_vec(vec![0; bytes.len()]);
                out.push(burn_pack::Tensor::new(
                    format!("{stem}{MOMENT_1}"),
                    dtype,
                    shape.clone(),
                    id,
                    zeros,
                ));
            }
            out.push(burn_pack::Tensor::new(name, dtype, shape, id, bytes));
        }
        Ok(out)
    })
    .with_context(|| format!("reading {}", path.display()))?;
    optim
        .from_bytes(w.into_bytes()?)
        .map_err(|e| anyhow::anyhow!("optimiser state in {}: {e:?}", path.display()))
}

fn parts(kind: ModelKind) -> Vec<Part> {
    match kind {
        ModelKind::Epsvae => vec![Part::Encoder, Part::Decoder],
        ModelKind::Vae => vec![Part::Encoder, Part::Baseline],
    }
}

/// Flattened copies of every float parameter by path (for the EMA).
fn params_by_path<M: Module>(m: &M) -> HashMap<String, Tensor<1>> {
    let mut out = HashMap::new();
    weights::visit_params(m, |path, _, value| {
        out.insert(path.to_string(), value());
    });
    out
}

/// ema ← decay·ema + (1 − decay)·current, parameter by parameter.
fn ema_update(ema: Autoencoder, current: &HashMap<String, Tensor<1>>, decay: f64) -> Autoencoder {
    weights::map_params(ema, |path, _| {
        let c = current
            .get(path)
            .expect("EMA and model have the same parameters")
            .clone();
        Some(move |e: Tensor<1>| e * decay + c * (1.0 - decay))
    })
}

fn device_tensor(values: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32")[0]
}

/// What a step's losses need besides the networks.
struct Setup<'a> {
    cfg: &'a TrainConfig,
    model_cfg: &'a ModelConfig,
    flow: &'a Flow,
}

/// The networks one shard of a step runs, and their device.
struct Nets<'a> {
    generator: &'a Autoencoder,
    lpips: &'a StLpips,
    /// The discriminator, when the step has the adversarial term.
    disc: Option<&'a Discriminator>,
    inner: &'a Device,
    ad: &'a Device,
}

/// What the discriminator's step takes from the generator's: the real crops, the generator's
/// estimate and the ε-VAE's condition (x_t and its time).
struct Generated {
    x0: Tensor<4>,
    x_hat: Tensor<4>,
    cond: Option<(Tensor<4>, Tensor<1>)>,
}

/// One shard's generator loss (to backpropagate) and its logged parts.
struct ShardLoss {
    loss: Tensor<1>,
    losses: StepLosses,
    generated: Option<Generated>,
}

impl StepLosses {
    /// Adds one of `n` equal shards' losses (each a mean over its images) to the batch's mean.
    fn add_share(&mut self, l: &StepLosses, n: usize) {
        let w = 1.0 / n as f32;
        for (a, b) in [
            (&mut self.recon, l.recon),
            (&mut self.x0_l1, l.x0_l1),
            (&mut self.decode_l1, l.decode_l1),
            (&mut self.decode_lpips, l.decode_lpips),
            (&mut self.lpips, l.lpips),
            (&mut self.g_adv, l.g_adv),
        ] {
            *a += b * w;
        }
    }
}

/// The generator's loss on shard `k` of `n` of the batch `x0_all` ([B, 3, S, S] host values):
/// reconstruction, perceptual, the optional terms and (with `nets.disc`) the adversarial term,
/// scaled by 1 / n. The step's randomness (latent noise, ε, t, the decode's noise) is drawn for
/// the whole batch from `step_seed` and sliced, so shards see what one unsharded step sees.
fn shard_loss(setup: &Setup, nets: &Nets, x0_all: &[f32], (k, n): (usize, usize), step_seed: u64) -> ShardLoss {
    let cfg = setup.cfg;
    let (b, s) = (cfg.batch, cfg.crop as usize);
    let (bs, px) = (b / n, 3 * s * s);
    // Shard k's rows of a batch-major array of `per` values per image.
    let rows = move |v: &[f32], per: usize| v[k * bs * per..(k + 1) * bs * per].to_vec();
    let x0 = device_tensor(rows(x0_all, px), [bs, 3, s, s], nets.ad);
    let z = nets.generator.encode(x0.clone());
    let zs = z.dims();
    let per_z = zs[1] * zs[2] * zs[3];
    let mut rng = ChaCha8Rng::seed_from_u64(step_seed);
    let u: Vec<f32> = (0..b * per_z)
        .map(|_| ((2.0 * uniform(&mut rng) - 1.0) * cfg.latent_noise) as f32)
        .collect();
    let z = z + device_tensor(rows(&u, per_z), zs, nets.ad);
    let mut out = StepLosses::default();
    // The optional terms beyond the paper's objective, each already weighted.
    let mut extra: Vec<Tensor<1>> = vec![];
    if cfg.model == ModelKind::Epsvae && cfg.decode_weight > 0.0 {
        let noise = rows(&flow::gaussian_noise(step_seed ^ 4, b * px), px);
        let decoded = decode_from_noise(setup, nets, z.clone(), noise);
        let l1 = (decoded.clone() - x0.clone()).abs().mean();
        let lp = nets.lpips.forward(decoded, x0.clone()).mean();
        (out.decode_l1, out.decode_lpips) = (scalar(l1.clone().detach()), scalar(lp.clone().detach()));
        extra.push((l1 * cfg.decode_l1_weight + lp * cfg.lpips_weight) * cfg.decode_weight);
    }
    // Reconstruction, perceptual and adversarial terms.
    let (recon, x_hat, cond) = match cfg.model {
        ModelKind::Epsvae => {
            let eps = device_tensor(
                rows(&flow::gaussian_noise(step_seed ^ 1, b * px), px),
                [bs, 3, s, s],
                nets.ad,
            );
            let t = Tensor::<1>::from_data(
                TensorData::new(rows(&flow::logit_normal_times(step_seed ^ 2, b), 1), [bs]),
                nets.ad,
            );
            let flow = setup.flow;
            let x_t = flow.noisy(x0.clone(), eps.clone(), t.clone());
            let v = flow.velocity(nets.generator.decoder(), x_t.clone(), t.clone(), z);
            let mse = (v.clone() - flow.target(x0.clone(), eps)).powi_scalar(2).mean();
            let x_hat = flow.x0_hat(x_t.clone(), t.clone(), v);
            if cfg.x0_l1_weight > 0.0 {
                let l1 = (x_hat.clone() - x0.clone()).abs().mean();
                out.x0_l1 = scalar(l1.clone().detach());
                extra.push(l1 * cfg.x0_l1_weight);
            }
            (mse, x_hat, Some((x_t.detach(), t * flow.time_scale)))
        }
        ModelKind::Vae => {
            let x_hat = nets.generator.baseline().forward(z);
            ((x_hat.clone() - x0.clone()).abs().mean(), x_hat, None)
        }
    };
    let lp = nets.lpips.forward(x_hat.clone(), x0.clone()).mean();
    let mut loss = recon.clone() + lp.clone() * cfg.lpips_weight;
    for term in extra {
        loss = loss + term;
    }
    if let Some(disc) = nets.disc {
        let g_adv = generator_loss(disc.forward(x_hat.clone(), cond.clone()));
        out.g_adv = scalar(g_adv.clone().detach());
        loss = loss + g_adv * cfg.adv_weight;
    }
    out.recon = scalar(recon.detach());
    out.lpips = scalar(lp.detach());
    if n > 1 {
        loss = loss * (1.0 / n as f64);
    }
    ShardLoss {
        loss,
        losses: out,
        generated: Some(Generated { x0, x_hat, cond }),
    }
}

/// The ε-VAE's decode of the latent `z` from `noise` (host values, times the temperature), as
/// `epsvae eval` samples it: the sampler's steps before the last run on a copy of the weights
/// without gradients, the last one from the state they reach with gradients through `z` and the
/// decoder. Returns the unclamped x̂0 of the last step (through the flow's output notch), which is
/// the sampler's image before its clamp to [−1, 1].
fn decode_from_noise(setup: &Setup, nets: &Nets, z: Tensor<4>, noise: Vec<f32>) -> Tensor<4> {
    let (b, s) = (z.dims()[0], setup.cfg.crop as usize);
    let steps = setup.cfg.decode_steps;
    let frozen = nets.generator.valid();
    let z_frozen = Tensor::<4>::from_data(z.clone().detach().into_data(), nets.inner);
    let noise = device_tensor(noise, [b, 3, s, s], nets.inner) * setup.model_cfg.flow.temperature();
    let mut sampler = flow::Sampler::new(setup.flow.clone(), noise.clone(), steps);
    let (mut x, mut t) = (noise, 1.0);
    for _ in 1..steps {
        let frame = sampler
            .step(frozen.decoder(), &z_frozen)
            .expect("a step within the grid");
        (x, t) = (frame.x_next, frame.t_next);
    }
    let x = Tensor::<4>::from_data(x.into_data(), nets.ad);
    let t = Tensor::<1>::full([b], t, nets.ad);
    let v = setup.flow.velocity(nets.generator.decoder(), x.clone(), t.clone(), z);
    setup.flow.x0_hat(x, t, v)
}

/// Everything that changes while training.
pub struct Trainer {
    pub cfg: TrainConfig,
    pub model_cfg: ModelConfig,
    pub state: RunState,
    generator: Autoencoder,
    ema: Autoencoder,
    disc: Discriminator,
    optim_g: burn::optim::ModuleOptimizer,
    optim_d: burn::optim::ModuleOptimizer,
    lpips: StLpips,
    flow: Flow,
    /// The backend's device, and its autodiff wrapper.
    inner: Device,
    ad: Device,
    /// Data-parallel training ([`Trainer::set_devices`]): the devices of the shards after the
    /// first (which runs on `inner`), each with its copy of ST-LPIPS. Empty: no shards.
    shards: Vec<(Device, StLpips)>,
    paths: Paths,
    /// The checkpoint this process wrote last (removed when it writes the next one).
    written: Option<PathBuf>,
}

impl Trainer {
    /// Opens `dir`: resumes its checkpoint when there is one (the config must match), else starts.
    /// `inner` is the (non-autodiff) device to train on; a run may resume on another backend.
    pub fn open(dir: &Path, cfg: TrainConfig, lpips_path: &Path, inner: Device) -> Result<Self> {
        let preset = ModelConfig::preset(&cfg.preset)
            .with_context(|| format!("preset {:?} is not one of {:?}", cfg.preset, ModelConfig::PRESETS))?;
        // A run keeps the model config it started with (model.json), so a preset that changes
        // later does not change a run being resumed.
        let model_path = dir.join("model.json");
        let model_cfg = if model_path.exists() {
            let m: ModelConfig = serde_json::from_slice(&std::fs::read(&model_path)?)
                .with_context(|| format!("reading {}", model_path.display()))?;
            if m.preset != cfg.preset {
                bail!(
                    "{} holds preset {:?}; this run asks for {:?}",
                    model_path.display(),
                    m.preset,
                    cfg.preset
                );
            }
            m
        } else {
            preset
        };
        if !(cfg.crop as usize).is_multiple_of(model_cfg.alignment()) {
            bail!(
                "crop {}: expected a multiple of {} for preset {:?}",
                cfg.crop,
                model_cfg.alignment(),
                model_cfg.preset
            );
        }
        let ad = inner.clone().autodiff();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let paths = Paths { dir: dir.to_path_buf() };
        let cfg_path = dir.join("train.json");
        if cfg_path.exists() {
            let old: TrainConfig = serde_json::from_slice(&std::fs::read(&cfg_path)?)?;
            if (old.preset.as_str(), old.model, old.seed) != (cfg.preset.as_str(), cfg.model, cfg.seed) {
                bail!(
                    "{} was trained as {:?}/{:?} seed {}; this run asks for {:?}/{:?} seed {}\n---> HINT: use another --run folder",
                    dir.display(),
                    old.preset,
                    old.model,
                    old.seed,
                    cfg.preset,
                    cfg.model,
                    cfg.seed
                );
            }
        }
        std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg)?)?;
        std::fs::write(&model_path, serde_json::to_string_pretty(&model_cfg)?)?;
        inner.seed(cfg.seed);
        let mut generator = Autoencoder::new(&model_cfg, &parts(cfg.model), &ad);
        let mut ema = generator.valid();
        let mut disc = Discriminator::new(cfg.model == ModelKind::Epsvae, 32, &ad);
        let adam = AdamConfig::new()
            .with_beta_1(BETA_1)
            .with_beta_2(0.999)
            .with_epsilon(1e-8);
        let mut optim_g = adam.init();
        let mut optim_d = adam.init();
        let mut state = RunState::default();
        if let Some(ck) = paths.latest() {
            let load = |n: &str| {
                ModuleRecord::load(ck.join(n)).map_err(|e| anyhow::anyhow!("loading {}: {e:?}", ck.join(n).display()))
            };
            generator = generator.load_record(load("generator.bpk")?);
            ema = ema.load_record(load("ema.bpk")?);
            disc = disc.load_record(load("disc.bpk")?);
            optim_g = load_optimizer(optim_g, &ck.join("optim_g.bin"))?;
            optim_d = load_optimizer(optim_d, &ck.join("optim_d.bin"))?;
            state = serde_json::from_slice(&std::fs::read(ck.join("state.json"))?)?;
        }
        let lpips = StLpips::load(lpips_path, &ad)?;
        Ok(Self {
            flow: Flow::new(&model_cfg.flow),
            cfg,
            model_cfg,
            state,
            generator,
            ema,
            disc,
            optim_g,
            optim_d,
            lpips,
            inner,
            ad,
            shards: vec![],
            paths,
            written: None,
        })
    }

    /// Starts a run that has no checkpoint yet from the weights of `path` (see
    /// `weights::transplant`); the EMA starts equal to them. Returns what was copied.
    pub fn init_from(&mut self, path: &Path) -> Result<weights::Transplant> {
        if self.state.step != 0 {
            bail!(
                "--init-from {}: the run is at step {}; only a run without a checkpoint can start from other weights",
                path.display(),
                self.state.step
            );
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (_, tensors) = weights::read(&bytes).with_context(|| format!("--init-from {}", path.display()))?;
        let fresh = Autoencoder::new(&self.model_cfg, &parts(self.cfg.model), &self.inner);
        let (model, report) = weights::transplant(fresh, &tensors, &self.inner);
        if report.copied + report.partial == 0 {
            bail!(
                "--init-from {}: none of its tensors has a name and rank of this {} model's",
                path.display(),
                self.model_cfg.preset
            );
        }
        self.generator = self.generator.clone().load_record(model.clone().into_record());
        self.ema = model;
        Ok(report)
    }

    /// Whether the next step has the adversarial term.
    pub fn adv_on(&self) -> bool {
        self.state.step >= self.cfg.adv_start && self.cfg.adv_weight > 0.0
    }

    fn lr(&self) -> f64 {
        self.cfg.lr_at(self.state.step)
    }

    /// Data-parallel training: every batch is split into `devices.len()` equal shards. The first
    /// shard runs on this trainer's device, each other one in its own thread on its device, with a
    /// fork of the generator (its own autodiff graph) and its copy of ST-LPIPS. Each shard's loss is
    /// scaled by 1 / shards, so the shards' gradients, summed on the first device, are the whole
    /// batch's; one optimiser step follows. Every term is a mean over images and a step's
    /// randomness is drawn for the whole batch and sliced, so the update is the unsharded step's up
    /// to the order of float sums (tested). `devices` may repeat one device: shards as threads on
    /// one CPU backend. Not with the adversarial term, whose discriminator step is not sharded.
    pub fn set_devices(&mut self, devices: Vec<Device>) -> Result<()> {
        let n = devices.len();
        if n == 0 || !self.cfg.batch.is_multiple_of(n) {
            bail!(
                "--devices {n}: expected a number of devices that divides the batch of {} (one shard of the batch each)",
                self.cfg.batch
            );
        }
        if n > 1 && self.cfg.adv_weight > 0.0 && self.cfg.adv_start < self.cfg.steps {
            bail!(
                "--devices {n}: the adversarial term (on from step {}) is not data-parallel; give --adv-start past --steps (the f8 recipe trains without it)",
                self.cfg.adv_start
            );
        }
        if devices[0] != self.inner {
            bail!("--devices: the first device must be the one the trainer was opened on");
        }
        self.shards = devices[1..]
            .iter()
            .map(|d| (d.clone(), self.lpips.clone().fork(&d.clone().autodiff())))
            .collect();
        Ok(())
    }

    /// The number of shards each batch is split into (1: none).
    pub fn shard_count(&self) -> usize {
        1 + self.shards.len()
    }

    /// This trainer's own networks and device (the first shard's), with the discriminator when
    /// `with_disc`.
    fn nets(&self, with_disc: bool) -> Nets<'_> {
        Nets {
            generator: &self.generator,
            lpips: &self.lpips,
            disc: with_disc.then_some(&self.disc),
            inner: &self.inner,
            ad: &self.ad,
        }
    }

    fn setup(&self) -> Setup<'_> {
        Setup {
            cfg: &self.cfg,
            model_cfg: &self.model_cfg,
            flow: &self.flow,
        }
    }

    /// The seed of every random draw of the next step.
    fn step_seed(&self) -> u64 {
        self.cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.state.step.wrapping_mul(0xD1B5_4A32_D192_ED03)
    }

    /// The generator's side of the next step on `x0` ([B, 3, S, S] host values): its gradients
    /// (summed over the shards), its losses, and, unsharded, what the discriminator's step takes.
    fn generator_pass(&self, x0: &[f32]) -> (GradientsParams, StepLosses, Option<Generated>) {
        let step_seed = self.step_seed();
        let adv_on = self.adv_on();
        let n = self.shard_count();
        let setup = self.setup();
        if n == 1 {
            let s = shard_loss(&setup, &self.nets(adv_on), x0, (0, 1), step_seed);
            let grads = GradientsParams::from_grads(s.loss.backward(), &self.generator);
            return (grads, s.losses, s.generated);
        }
        assert!(!adv_on, "set_devices refuses the adversarial term");
        let setup = &setup;
        let results: Vec<(GradientsParams, StepLosses)> = std::thread::scope(|scope| {
            let others: Vec<_> = self
                .shards
                .iter()
                .enumerate()
                .map(|(i, (inner, lpips))| {
                    let (inner, lpips) = (inner.clone(), lpips.clone());
                    let ad = inner.clone().autodiff();
                    let generator = self.generator.clone().fork(&ad);
                    let first = self.inner.clone();
                    scope.spawn(move || {
                        let nets = Nets {
                            generator: &generator,
                            lpips: &lpips,
                            disc: None,
                            inner: &inner,
                            ad: &ad,
                        };
                        let s = shard_loss(setup, &nets, x0, (i + 1, n), step_seed);
                        let grads = GradientsParams::from_grads(s.loss.backward(), &generator);
                        (grads.to_device(&first, &generator), s.losses)
                    })
                })
                .collect();
            let s = shard_loss(setup, &self.nets(false), x0, (0, n), step_seed);
            let mut results = vec![(
                GradientsParams::from_grads(s.loss.backward(), &self.generator),
                s.losses,
            )];
            results.extend(others.into_iter().map(|h| h.join().expect("a shard's thread panicked")));
            results
        });
        let mut acc = GradientsAccumulator::<Autoencoder>::new();
        let mut out = StepLosses::default();
        for (grads, l) in results {
            acc.accumulate(&self.generator, grads);
            out.add_share(&l, n);
        }
        (acc.grads(), out, None)
    }

    /// The generator's gradients of the next step on `x0` ([B, 3, S, S] host values), the sum over
    /// shards that [`Trainer::step`] hands the optimiser, without applying them: one host array
    /// per parameter, in the model's order (empty for a parameter without a gradient).
    pub fn generator_gradients(&self, x0: &[f32]) -> Vec<Vec<f32>> {
        struct Collect<'a> {
            grads: &'a GradientsParams,
            out: Vec<Vec<f32>>,
        }
        impl burn::module::ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
                let g = self
                    .grads
                    .get::<D>(p.id)
                    .map_or(vec![], |g| g.into_data().try_into_vec_as::<f32>().expect("f32"));
                self.out.push(g);
            }
        }
        let (grads, _, _) = self.generator_pass(x0);
        let mut c = Collect {
            grads: &grads,
            out: vec![],
        };
        self.generator.visit(&mut c);
        c.out
    }

    /// One optimisation step of generator and discriminator on `x0` ([B, 3, S, S] host values).
    pub fn step(&mut self, x0: Vec<f32>) -> StepLosses {
        let step_seed = self.step_seed();
        let adv_on = self.adv_on();
        let (grads, mut out, generated) = self.generator_pass(&x0);
        let lr = self.lr();
        self.generator = self.optim_g.step(lr, self.generator.clone(), grads);

        // Discriminator: real x0 against the detached estimate, same x_t, plus R1.
        if let Some(Generated { x0, x_hat, cond }) = generated.filter(|_| adv_on) {
            let (b, s) = (self.cfg.batch, self.cfg.crop as usize);
            let real = self.disc.forward(x0.clone(), cond.clone());
            let fake = self.disc.forward(x_hat.detach(), cond.clone());
            let sigma = 0.01;
            let delta = device_tensor(
                flow::gaussian_noise(step_seed ^ 3, b * 3 * s * s),
                [b, 3, s, s],
                &self.ad,
            );
            let shifted = self.disc.forward(x0 + delta * sigma, cond);
            out.d_margin = scalar((real.clone().mean() - fake.clone().mean()).detach());
            let gan = discriminator_loss(real.clone(), fake);
            out.d_loss = scalar(gan.clone().detach());
            let d_loss = gan + r1_penalty(real, shifted, sigma) * (self.cfg.r1_weight / 2.0);
            let grads = GradientsParams::from_grads(d_loss.backward(), &self.disc);
            self.disc = self.optim_d.step(lr * self.cfg.d_lr_scale, self.disc.clone(), grads);
        }
        // EMA with the usual warm-up (decay grows as (1 + step)/(10 + step) up to cfg.ema), so early
        // exports are not dominated by the random initial weights.
        let decay = self
            .cfg
            .ema
            .min((1.0 + self.state.step as f64) / (10.0 + self.state.step as f64));
        self.ema = ema_update(self.ema.clone(), &params_by_path(&self.generator.valid()), decay);
        self.state.step += 1;
        self.state.images_seen += self.cfg.batch as u64;
        out
    }

    /// The decode that `decode_weight` scores, of a batch `x0` ([B, 3, S, S] host values)
    /// without latent noise, from the current (not averaged) weights, on the autodiff device.
    pub fn decode_from_noise_of(&self, x0: Vec<f32>, seed: u64) -> Tensor<4> {
        let (b, s) = (self.cfg.batch, self.cfg.crop as usize);
        let z = self.generator.encode(device_tensor(x0, [b, 3, s, s], &self.ad));
        decode_from_noise(
            &self.setup(),
            &self.nets(false),
            z,
            flow::gaussian_noise(seed, b * 3 * s * s),
        )
    }

    /// One step on a batch drawn from `corpus`; the crops depend only on (seed, step), so a
    /// resumed run sees exactly the batches an uninterrupted one would.
    pub fn train_step(&mut self, corpus: &Corpus) -> StepLosses {
        let step_seed = self.cfg.seed ^ (self.state.step.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut rng = ChaCha8Rng::seed_from_u64(step_seed);
        let batch = corpus.batch(&mut rng, self.cfg.batch, self.cfg.crop);
        self.step(batch)
    }

    /// The EMA weights (what gets exported).
    pub fn ema(&self) -> &Autoencoder {
        &self.ema
    }

    /// Multiply-accumulates of one forward pass of every network in a step (for throughput), with
    /// or without the adversarial term (generator pass plus real, fake and R1-shifted passes).
    pub fn forward_macs(&self, adv_on: bool) -> u64 {
        let (b, s) = (self.cfg.batch, self.cfg.crop as usize);
        let inner = &self.inner;
        let generator = self.generator.valid();
        let lpips = self.lpips.valid();
        let disc = self.disc.valid();
        let x = Tensor::<4>::zeros([b, 3, s, s], inner);
        let t = Tensor::<1>::full([b], 0.5, inner);
        let (_, n) = macs::measure(|| {
            let z = generator.encode(x.clone());
            let x_hat = match self.cfg.model {
                ModelKind::Epsvae => self.flow.velocity(generator.decoder(), x.clone(), t.clone(), z),
                ModelKind::Vae => generator.baseline().forward(z),
            };
            lpips.forward(x_hat.clone(), x.clone()); // both images' features
            if adv_on {
                let cond = (self.cfg.model == ModelKind::Epsvae).then(|| (x.clone(), t.clone()));
                for _ in 0..4 {
                    disc.forward(x.clone(), cond.clone());
                }
            }
        });
        n
    }

    /// Writes the checkpoint `ckpt-<step>` (atomically: into ckpt.tmp, then renamed) and the EMA
    /// weights; removes the checkpoint this process wrote before.
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        let tmp = self.paths.dir.join("ckpt.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let save = |m: ModuleRecord, n: &str| m.save(tmp.join(n)).map_err(|e| anyhow::anyhow!("saving {n}: {e:?}"));
        save(self.generator.clone().into_record(), "generator.bpk")?;
        save(self.ema.clone().into_record(), "ema.bpk")?;
        save(self.disc.clone().into_record(), "disc.bpk")?;
        save_optimizer(&self.optim_g, &tmp.join("optim_g.bin"))?;
        save_optimizer(&self.optim_d, &tmp.join("optim_d.bin"))?;
        std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&self.state)?)?;
        let dst = self.paths.dir.join(format!("ckpt-{}", self.state.step));
        let _ = std::fs::remove_dir_all(&dst);
        std::fs::rename(&tmp, &dst)?;
        if let Some(old) = self.written.replace(dst.clone()).filter(|old| *old != dst) {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        let out = self.paths.dir.join("ema.safetensors");
        std::fs::write(
            &out,
            weights::write(&self.ema, &self.model_cfg, &self.provenance(), Storage::F32),
        )?;
        // The raw (non-averaged) weights too, to compare with the EMA early in a run.
        let mut raw = self.provenance();
        raw.note = raw.note.replacen(
            &format!("EMA {} weights", self.cfg.ema),
            "raw (not averaged) weights",
            1,
        );
        std::fs::write(
            self.paths.dir.join("raw.safetensors"),
            weights::write(&self.generator.valid(), &self.model_cfg, &raw, Storage::F32),
        )?;
        Ok(out)
    }

    pub fn provenance(&self) -> Provenance {
        Provenance {
            origin: "trained".into(),
            seed: Some(self.cfg.seed),
            training_steps: self.state.step,
            images_seen: self.state.images_seen,
            data: "Debian package photos (tools/corpus.py; manifest in weights/README.md), train split".into(),
            note: format!(
                "EMA {} weights; {:?} objective; {}px crops, batch {}",
                self.cfg.ema, self.cfg.model, self.cfg.crop, self.cfg.batch
            ),
        }
    }

    /// Validation on fixed crops of the validation photos with the EMA weights: PSNR and ST-LPIPS
    /// (ε-VAE decoded in 3 steps from a fixed seed).
    pub fn validate(&self, crops: &[Planar]) -> (f64, f64) {
        let inner = &self.inner;
        let lpips = self.lpips.valid();
        let (mut p, mut l) = (0.0, 0.0);
        for (i, img) in crops.iter().enumerate() {
            let latent = crate::pipeline::encode(&self.ema, &self.model_cfg, img, inner);
            let out = match self.cfg.model {
                ModelKind::Epsvae => crate::pipeline::decode(&self.ema, &self.model_cfg, &latent, 3, i as u64, |_| {}),
                ModelKind::Vae => crate::pipeline::decode_baseline(&self.ema, &latent),
            };
            l += scalar(lpips.forward(out.clone(), img.to_tensor(inner))) as f64;
            p += psnr(img, &Planar::from_tensor(out));
        }
        (p / crops.len() as f64, l / crops.len() as f64)
    }
}

/// Drops the rows of a run's `log.csv` for steps after `step`, the step its checkpoint holds.
/// A process that ends between checkpoints (killed, or its session over) has logged steps that its
/// resumption trains again; without this the log would hold those steps twice. A missing log is
/// left missing.
pub fn trim_log(path: &Path, step: u64) -> Result<TrimmedLog> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(TrimmedLog {
            header: None,
            dropped: 0,
        });
    };
    let mut lines = text.lines();
    let header = lines.next().map(str::to_string);
    let mut kept: Vec<&str> = header.as_deref().into_iter().collect();
    let mut dropped = 0;
    for line in lines {
        let first = line.split(',').next().unwrap_or("");
        let row_step: u64 = first
            .parse()
            .with_context(|| format!("{}: a row's step is {first:?}, expected a whole number", path.display()))?;
        if row_step <= step {
            kept.push(line);
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        let tmp = path.with_extension("csv.tmp");
        std::fs::write(&tmp, kept.iter().map(|l| format!("{l}\n")).collect::<String>())?;
        std::fs::rename(&tmp, path)?;
        eprintln!(
            "{}: dropped {dropped} of its rows, logged after step {step}, the checkpoint's step (they are trained again)",
            path.display()
        );
    }
    Ok(TrimmedLog { header, dropped })
}

/// What [`trim_log`] found: the log's header line (`None` when there is no log or it is empty) and
/// how many rows it dropped.
#[derive(Debug, PartialEq)]
pub struct TrimmedLog {
    pub header: Option<String>,
    pub dropped: usize,
}

/// Runs training until `cfg.steps`, Ctrl-C, or `max_seconds`; checkpoints on the way and at the end.
pub fn run(
    dir: &Path,
    cfg: TrainConfig,
    data: &Path,
    lpips_path: &Path,
    max_seconds: Option<u64>,
    devices: Vec<Device>,
) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
    }
    let t_load = Instant::now();
    let train = Corpus::load(data, "train")?;
    let val = Corpus::load(data, "val")?;
    let mut vrng = ChaCha8Rng::seed_from_u64(12345);
    let val_crops: Vec<Planar> = (0..16)
        .map(|_| {
            let v = val.batch(&mut vrng, 1, 128);
            Planar {
                width: 128,
                height: 128,
                data: v,
            }
        })
        .collect();
    let first = devices.first().context("no device to train on")?.clone();
    let mut tr = Trainer::open(dir, cfg.clone(), lpips_path, first)?;
    tr.set_devices(devices)?;
    if let (0, Some(from)) = (tr.state.step, &cfg.init_from) {
        let r = tr.init_from(Path::new(from))?;
        eprintln!(
            "started from {from}: {} tensors copied, {} in part (shared leading block), {} fresh",
            r.copied, r.partial, r.fresh
        );
    }
    eprintln!(
        "{} train / {} val photos loaded in {:.1} s; resuming at step {}{}",
        train.images.len(),
        val.images.len(),
        t_load.elapsed().as_secs_f64(),
        tr.state.step,
        match tr.shard_count() {
            1 => String::new(),
            n => format!("; each batch in {n} data-parallel shards of {}", cfg.batch / n),
        }
    );
    let fwd_plain = tr.forward_macs(false);
    let fwd_adv = tr.forward_macs(cfg.adv_weight > 0.0);
    let log_path = dir.join("log.csv");
    // Columns were added at the end over time; a log keeps the columns its header was begun with.
    const COLUMNS: &str = "step,images_seen,wall_s,lr,recon,lpips,g_adv,d_loss,img_per_s,val_psnr,val_lpips,x0_l1,decode_l1,decode_lpips,d_margin";
    let header = trim_log(&log_path, tr.state.step)?.header;
    let columns = header
        .as_deref()
        .map_or(COLUMNS.split(',').count(), |h| h.split(',').count());
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    if header.is_none() {
        writeln!(log, "{COLUMNS}")?;
    }
    let bar = indicatif::ProgressBar::new(cfg.steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}")
            .expect("template"),
    );
    bar.set_position(tr.state.step);
    let started = Instant::now();
    let mut last_ckpt = Instant::now();
    let mut window = (Instant::now(), 0u64);
    while tr.state.step < cfg.steps
        && !stop.load(Ordering::SeqCst)
        && max_seconds.is_none_or(|m| started.elapsed().as_secs() < m)
    {
        let t0 = Instant::now();
        let fwd = if tr.adv_on() { fwd_adv } else { fwd_plain };
        let l = tr.train_step(&train);
        tr.state.wall_s += t0.elapsed().as_secs_f64();
        window.1 += cfg.batch as u64;
        let ips = window.1 as f64 / window.0.elapsed().as_secs_f64();
        let gflops = ips / cfg.batch as f64 * fwd as f64 * 3.0 * 2.0 / 1e9;
        bar.set_position(tr.state.step);
        let mut extra = String::new();
        if tr.cfg.x0_l1_weight > 0.0 {
            extra += &format!(" x0-l1 {:.4}", l.x0_l1);
        }
        if tr.cfg.decode_weight > 0.0 {
            extra += &format!(" decode l1 {:.4} lpips {:.3}", l.decode_l1, l.decode_lpips);
        }
        bar.set_message(format!(
            "recon {:.4}{extra} lpips {:.3} adv {:.3} d {:.3} margin {:.3} | {:.2} img/s, {:.0} GFLOP/s",
            l.recon, l.lpips, l.g_adv, l.d_loss, l.d_margin, ips, gflops
        ));
        let (mut vp, mut vl) = (String::new(), String::new());
        if tr.state.step % cfg.val_every == 0 {
            let (p, lp) = tr.validate(&val_crops);
            (vp, vl) = (format!("{p:.3}"), format!("{lp:.4}"));
            bar.println(format!(
                "step {}: validation PSNR {p:.2} dB, ST-LPIPS {lp:.4}",
                tr.state.step
            ));
        }
        let row = [
            tr.state.step.to_string(),
            tr.state.images_seen.to_string(),
            format!("{:.1}", tr.state.wall_s),
            format!("{:.3e}", tr.lr()),
            l.recon.to_string(),
            l.lpips.to_string(),
            l.g_adv.to_string(),
            l.d_loss.to_string(),
            format!("{ips:.3}"),
            vp,
            vl,
            l.x0_l1.to_string(),
            l.decode_l1.to_string(),
            l.decode_lpips.to_string(),
            l.d_margin.to_string(),
        ];
        writeln!(log, "{}", row[..columns.min(row.len())].join(","))?;
        if window.1 >= 200 {
            window = (Instant::now(), 0);
        }
        if last_ckpt.elapsed().as_secs() >= cfg.checkpoint_every_s {
            tr.checkpoint()?;
            last_ckpt = Instant::now();
        }
    }
    let out = tr.checkpoint()?;
    bar.finish_with_message(format!(
        "stopped at step {}; checkpoint and {} written",
        tr.state.step,
        out.display()
    ));
    eprintln!(
        "forward pass of one batch: {:.2} GMAC without the adversarial term, {:.2} with it ({:.2} / {:.2} GFLOP per training image, counting backward as 2× forward)",
        fwd_plain as f64 / 1e9,
        fwd_adv as f64 / 1e9,
        fwd_plain as f64 * 6.0 / 1e9 / cfg.batch as f64,
        fwd_adv as f64 * 6.0 / 1e9 / cfg.batch as f64
    );
    Ok(())
}

/// Training throughput on one backend, measured by [`bench`].
#[derive(Clone, Debug, Serialize)]
pub struct Bench {
    pub backend: String,
    pub model: ModelKind,
    pub adversarial: bool,
    pub batch: usize,
    pub crop: u32,
    /// Seconds of each timed step (after the warm-up steps).
    pub step_s: Vec<f64>,
    /// Multiply-accumulates of one forward pass of the step's networks for the whole batch.
    pub forward_macs: u64,
}

impl Bench {
    /// Median seconds per step.
    pub fn median_s(&self) -> f64 {
        let mut v = self.step_s.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    pub fn images_per_s(&self) -> f64 {
        self.batch as f64 / self.median_s()
    }
    /// Training FLOP/s, counting a step as 3× its forward pass (backward ≈ 2× forward) and a MAC as 2 FLOP.
    pub fn gflops(&self) -> f64 {
        self.forward_macs as f64 * 6.0 / self.median_s() / 1e9
    }
}

/// Times `steps` training steps (after `warmup` untimed ones) of freshly initialised networks on
/// `device`, on random crops: throughput does not depend on the pixels. Uses a temporary run folder.
pub fn bench(
    mut cfg: TrainConfig,
    lpips_path: &Path,
    devices: Vec<Device>,
    backend: &str,
    adversarial: bool,
    warmup: usize,
    steps: usize,
) -> Result<Bench> {
    cfg.adv_start = if adversarial { 0 } else { u64::MAX };
    let dir = std::env::temp_dir().join(format!("epsvae-bench-{}-{backend}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = devices.first().context("no device to train on")?.clone();
    let mut tr = Trainer::open(&dir, cfg.clone(), lpips_path, first)?;
    tr.set_devices(devices)?;
    let forward_macs = tr.forward_macs(adversarial);
    let n = cfg.batch * 3 * (cfg.crop as usize).pow(2);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut step_s = vec![];
    for i in 0..warmup + steps {
        let x: Vec<f32> = (0..n).map(|_| uniform(&mut rng) as f32).collect();
        let t0 = Instant::now();
        tr.step(x);
        if i >= warmup {
            step_s.push(t0.elapsed().as_secs_f64());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Bench {
        backend: backend.into(),
        model: cfg.model,
        adversarial,
        batch: cfg.batch,
        crop: cfg.crop,
        step_s,
        forward_macs,
    })
}
