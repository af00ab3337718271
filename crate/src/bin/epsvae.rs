//! `epsvae`: reconstruct images with ε-VAE, inspect and quantise weight files, initialise weights.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Parser, Subcommand};

use epsvae::backend::{self, Backend};
use epsvae::image::{Planar, psnr, ssim};
use epsvae::model::macs;
use epsvae::weights::{self, Provenance, Storage};
use epsvae::{Autoencoder, ModelConfig, Part, pipeline};

const DEFAULT_WEIGHTS: &str = "weights/epsvae-small.safetensors";
const DEFAULT_BASELINE: &str = "weights/vae-small.safetensors";

#[derive(Parser)]
#[command(
    name = "epsvae",
    version,
    about = "ε-VAE: an image autoencoder whose decoder denoises noise into the image in 1–3 steps"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// `train`'s many options make its variant the largest; the value is parsed once per process, so
// its size costs nothing and boxing it would only add indirection to every match.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Encode an image to the latent and decode it back by denoising, printing timings per stage.
    Reconstruct {
        /// Input image: any format the `image` crate reads (PNG, JPEG, WebP, GIF, BMP).
        input: PathBuf,
        /// Output image; the format follows the extension (PNG recommended).
        output: PathBuf,
        /// Euler steps of the decoder (the paper uses 1–3).
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// Seed of the starting noise: the same seed gives the same image on every backend.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Resize the input to WIDTHxHEIGHT first (Lanczos3). Without it the image keeps its size;
        /// sizes that are not multiples of f (16) are mirror-padded for the model and cropped back.
        #[arg(long, value_parser = parse_size)]
        size: Option<(usize, usize)>,
        /// flex (CPU) or wgpu (GPU; lavapipe when there is no GPU).
        #[arg(long, default_value = "flex")]
        backend: Backend,
        /// Weight file (safetensors with an epsvae header).
        #[arg(long, default_value = DEFAULT_WEIGHTS)]
        weights: PathBuf,
        /// Write every step's noisy state x_t and clean estimate x̂0 as PNGs into this folder.
        #[arg(long)]
        frames: Option<PathBuf>,
        /// Also decode with the VAE baseline into this file: the --weights file's own baseline
        /// decoder if it has one, else the --baseline-weights file (its own encoder and decoder).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// The VAE baseline's weight file, for --baseline when --weights holds no baseline.
        #[arg(long, default_value = DEFAULT_BASELINE)]
        baseline_weights: PathBuf,
        /// Base n of the reversed-log time grid, instead of the weight file's (the paper's is 100;
        /// 1 is the uniform grid).
        #[arg(long)]
        grid_base: Option<f64>,
        /// Temperature τ of the starting noise (x_1 = τ·ε), instead of the weight file's: 1 is the
        /// paper's sampler; lower gives less invented detail and a result nearer the average.
        #[arg(long)]
        temperature: Option<f64>,
        /// m of the notch on the decoded image (0 = off, up to 8: 2m + 1 taps, no 2-pixel grain),
        /// instead of the weight file's.
        #[arg(long)]
        output_notch: Option<usize>,
    },
    /// Print a weight file's config, parameter counts, cost per step, storage, size and SHA-256.
    Inspect {
        weights: PathBuf,
        /// Image side at which multiply-accumulates are counted.
        #[arg(long, default_value_t = 256)]
        size: usize,
    },
    /// Re-store a weight file as int8 (per-output-channel symmetric) or f16.
    Quantize {
        input: PathBuf,
        output: PathBuf,
        /// Target storage: int8 or f16 (or f32).
        #[arg(long)]
        to: Storage,
        /// Write this sampling temperature into the output's header as its default (1 is the
        /// paper's sampler); without it the input's is kept.
        #[arg(long)]
        temperature: Option<f64>,
        /// Turn the VAE baseline's output notch (`anti_alias` in the header: no 2-pixel grid) on or
        /// off in the output; without it the input's setting is kept.
        #[arg(long)]
        anti_alias: Option<bool>,
        /// Write this ε-decoder output notch m into the output's header (0 = off, up to 8; see
        /// `flow.output_notch`); without it the input's is kept.
        #[arg(long)]
        output_notch: Option<usize>,
    },
    /// Train the ε-VAE or its VAE baseline on the corpus (resumes the run folder's checkpoint).
    #[cfg(feature = "train")]
    Train {
        /// Run folder: checkpoint, log.csv, train.json, ema.safetensors.
        #[arg(long)]
        run: PathBuf,
        #[arg(long, default_value = "small")]
        preset: String,
        /// epsvae (encoder + ε-decoder) or vae (encoder + one-pass baseline decoder).
        #[arg(long, default_value = "epsvae")]
        model: epsvae::train::trainer::ModelKind,
        /// Corpus folder written by tools/corpus.py.
        #[arg(long, default_value = "data/corpus")]
        data: PathBuf,
        /// ST-LPIPS weights from the stlpips-pytorch wheel.
        #[arg(long, default_value = "data/lpips/alex_shift_tolerant.pth")]
        lpips: PathBuf,
        /// Total steps to reach.
        #[arg(long, default_value_t = 200_000)]
        steps: u64,
        /// Batch size [default: 8, or the run's train.json when resuming].
        #[arg(long)]
        batch: Option<usize>,
        /// Square crop side in pixels [default: 64, or the run's].
        #[arg(long)]
        crop: Option<u32>,
        /// Stop after this many seconds (a checkpoint is written on the way out).
        #[arg(long)]
        max_seconds: Option<u64>,
        /// [default: 0, or the run's; a run cannot change its seed]
        #[arg(long)]
        seed: Option<u64>,
        /// Steps between validations [default: 500, or the run's].
        #[arg(long)]
        val_every: Option<u64>,
        /// Step from which the adversarial loss is on [default: 3000, or the run's].
        #[arg(long)]
        adv_start: Option<u64>,
        /// Peak learning rate of the generator [default: 2e-4, or the run's].
        #[arg(long)]
        lr: Option<f64>,
        /// The discriminator's learning rate as a multiple of the generator's, on the same
        /// schedule [default: 1, or the run's].
        #[arg(long)]
        d_lr_scale: Option<f64>,
        /// Weight of the discriminator's R1 penalty (per patch; see disc::r1_penalty) [default:
        /// 0.01, or the run's].
        #[arg(long)]
        r1: Option<f64>,
        /// Steps of the learning rate's linear warm-up from 0, counted from step 0 [default: 500,
        /// or the run's].
        #[arg(long)]
        warmup: Option<u64>,
        /// ε-VAE only: weight of a pixel L1 on the one-step estimate x̂0, added to the paper's
        /// losses (0 is the paper's objective) [default: 0, or the run's].
        #[arg(long, allow_hyphen_values = true)]
        x0_l1: Option<f64>,
        /// ε-VAE only: weight of L1 + ST-LPIPS on the actual decode from noise (the sampler's
        /// last step backpropagated), added to the paper's losses (0 is the paper's objective)
        /// [default: 0, or the run's].
        #[arg(long, allow_hyphen_values = true)]
        decode_loss: Option<f64>,
        /// Weight of the pixel L1 inside --decode-loss; 0 scores the decode by ST-LPIPS alone
        /// [default: 1, or the run's].
        #[arg(long, allow_hyphen_values = true)]
        decode_l1: Option<f64>,
        /// Euler steps of the decode that --decode-loss scores, 1 to 8 [default: 3, or the run's].
        #[arg(long)]
        decode_steps: Option<usize>,
        /// EMA decay of the generator's weights, in (0, 1) [default: 0.999, or the run's].
        #[arg(long)]
        ema: Option<f64>,
        /// Seconds between checkpoints [default: 600, or the run's].
        #[arg(long)]
        checkpoint_every: Option<u64>,
        /// Learning-rate decay, START:END: constant until step START, then linear to 0 at step
        /// END; `none` for a constant rate [default: none, or the run's].
        #[arg(long, value_parser = parse_decay)]
        decay: Option<(u64, u64)>,
        /// A second warm-up, START:END: the rate ramps linearly from 0 at step START to its
        /// scheduled value at END (for a run resumed on a new recipe); `none` for none
        /// [default: none, or the run's].
        #[arg(long, value_parser = parse_rewarm)]
        rewarm: Option<(u64, u64)>,
        /// flex (burn's CPU backend), tch (PyTorch's kernels; builds with `--features tch`) or
        /// wgpu (a GPU through Vulkan/Metal/DX12). A run may resume on another backend.
        #[arg(long, default_value = "flex")]
        backend: Backend,
        /// Data-parallel training: each batch splits into N equal shards whose gradients are
        /// computed at once, each in its own thread, and summed before one optimiser step: the
        /// same update as one shard. Not with the adversarial term. A run may resume with another N.
        #[arg(long, default_value_t = 1)]
        devices: usize,
        /// A new run starts from this weight file's tensors where names match (equal shapes
        /// copied, others' shared leading block), e.g. small-f8 from the shipped small files.
        #[arg(long)]
        init_from: Option<PathBuf>,
    },
    /// Training throughput (images/s, GFLOP/s and share of the CPU's f32 peak) on fresh weights.
    #[cfg(feature = "train")]
    BenchTrain {
        /// Backends to compare in this one run: flex, tch (with `--features tch`).
        #[arg(long, value_delimiter = ',', default_value = "flex")]
        backend: Vec<Backend>,
        #[arg(long, default_value = "small")]
        preset: String,
        /// epsvae, vae, or both.
        #[arg(long, value_delimiter = ',', default_value = "epsvae,vae")]
        model: Vec<epsvae::train::trainer::ModelKind>,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 64)]
        crop: u32,
        /// Also time steps with the adversarial term (discriminator and R1) on.
        #[arg(long)]
        adversarial: bool,
        /// Untimed steps first (allocator and kernel warm-up).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Timed steps; the median is reported.
        #[arg(long, default_value_t = 8)]
        steps: usize,
        /// Data-parallel shard counts to compare (`train --devices`), e.g. 1,2; not with
        /// --adversarial.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        devices: Vec<usize>,
        /// The machine's f32 peak in GFLOP/s (2 Zen 4 cores: 2 × 2.6 GHz × 32 FLOP/cycle ≈ 166).
        #[arg(long, default_value_t = 166.0)]
        peak_gflops: f64,
        #[arg(long, default_value = "data/lpips/alex_shift_tolerant.pth")]
        lpips: PathBuf,
    },
    /// PSNR, SSIM and ST-LPIPS of the VAE baseline and of ε-VAE at each step count.
    #[cfg(feature = "train")]
    Eval {
        /// Folder of images (PNG, JPEG, WebP), each centre-cropped to --size.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Euler step counts of ε-VAE to evaluate.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        steps: Vec<usize>,
        /// Noise seeds per image (ε-VAE decoding is stochastic). With more than one, each step
        /// count also gets a row scoring the per-pixel mean of the seeds' images.
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        #[arg(long, default_value = DEFAULT_WEIGHTS)]
        weights: PathBuf,
        /// The VAE baseline's weight file.
        #[arg(long)]
        baseline: Option<PathBuf>,
        #[arg(long, default_value = "data/lpips/alex_shift_tolerant.pth")]
        lpips: PathBuf,
        /// Also write the rows as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Sample ε-VAE on the reversed-log grid of each base n (comma-separated; the paper's is
        /// 100, 1 is the uniform grid) instead of the weight file's.
        #[arg(long, value_delimiter = ',')]
        grid_base: Vec<f64>,
        /// Sample ε-VAE from noise of each temperature τ (comma-separated; 1 is the paper's
        /// sampler) instead of the weight file's.
        #[arg(long, value_delimiter = ',')]
        temperature: Vec<f64>,
        /// Decode ε-VAE with each output notch m (comma-separated; 0 = off, up to 8) instead of
        /// the weight file's.
        #[arg(long, value_delimiter = ',')]
        output_notch: Vec<usize>,
        /// flex (burn's CPU backend) or tch (PyTorch's kernels, about 3× faster here; builds with
        /// `--features tch`).
        #[arg(long, default_value = "flex")]
        backend: Backend,
    },
    /// Serve a folder (the site built by tools/site.sh) on 127.0.0.1.
    Serve {
        #[arg(default_value = "target/site")]
        dir: PathBuf,
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Write the SHA-256 manifest (manifest.json) of the weight files in a folder.
    Manifest {
        #[arg(default_value = "weights")]
        dir: PathBuf,
    },
    /// Write freshly initialised (untrained) weights for a preset, from a fixed seed.
    Init {
        output: PathBuf,
        /// Preset: lite, small or tiny.
        #[arg(long, default_value = "small")]
        preset: String,
        /// Parts to include besides the encoder: decoder, baseline or both.
        #[arg(long, value_delimiter = ',', default_value = "decoder,baseline")]
        parts: Vec<String>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "f32")]
        storage: Storage,
    },
}

fn parse_size(s: &str) -> std::result::Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size {s:?} is not WIDTHxHEIGHT, e.g. 256x256"))?;
    let p = |v: &str| v.parse::<usize>().ok().filter(|n| (1..=8192).contains(n));
    match (p(w), p(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!("size {s:?}: width and height must be integers in 1..=8192")),
    }
}

fn parse_decay(s: &str) -> std::result::Result<(u64, u64), String> {
    parse_span("decay", s, "11000:13000")
}

fn parse_rewarm(s: &str) -> std::result::Result<(u64, u64), String> {
    parse_span("rewarm", s, "12000:12100")
}

/// START:END with integer steps START < END, or `none` (both `u64::MAX`).
fn parse_span(what: &str, s: &str, example: &str) -> std::result::Result<(u64, u64), String> {
    if s == "none" {
        return Ok((u64::MAX, u64::MAX));
    }
    let parsed = s
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    match parsed {
        Some((a, b)) if a < b => Ok((a, b)),
        _ => Err(format!(
            "{what} {s:?} is not START:END with integer steps START < END (e.g. {example}), nor none"
        )),
    }
}

fn ms(t: Instant) -> String {
    format!("{:.1} ms", t.elapsed().as_secs_f64() * 1e3)
}

/// Loads a weight file, printing its size, preset, storage and the time taken.
fn load_timed(path: &Path, device: &Device) -> Result<(weights::Header, Autoencoder)> {
    let t = Instant::now();
    let (header, model, nbytes) = weights::load_file(path, device)?;
    eprintln!(
        "load {} ({nbytes} bytes, {}, {}): {}",
        path.display(),
        header.config.preset,
        header.storage,
        ms(t)
    );
    Ok((header, model))
}

fn save(p: &Planar, path: &Path) -> Result<()> {
    p.to_rgba_image()
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Reconstruct {
            input,
            output,
            steps,
            seed,
            size,
            backend,
            weights,
            frames,
            baseline,
            baseline_weights,
            grid_base,
            temperature,
            output_notch,
        } => {
            if !(1..=100).contains(&steps) {
                bail!("--steps {steps}: expected 1..=100 (the paper uses 1–3)");
            }
            if let Some(n) = grid_base.filter(|n| !epsvae::config::is_grid_base(*n)) {
                bail!("--grid-base {n}: expected a number ≥ 1 (the paper's is 100; 1 is the uniform grid)");
            }
            if let Some(e) = epsvae::config::temperature_error(temperature) {
                bail!("--temperature {e}");
            }
            if let Some(e) = epsvae::config::output_notch_error(output_notch) {
                bail!("--output-notch {e}");
            }
            let t0 = Instant::now();
            let device = backend::device(backend).map_err(anyhow::Error::msg)?;
            eprintln!("device ({backend}): {}", ms(t0));
            let (mut header, model) = load_timed(&weights, &device)?;
            if grid_base.is_some() {
                header.config.flow.grid_base = grid_base;
            }
            if temperature.is_some() {
                header.config.flow.temperature = temperature;
            }
            if output_notch.is_some() {
                header.config.flow.output_notch = output_notch;
            }
            let cfg = &header.config;
            if header.provenance.origin != "trained" {
                eprintln!(
                    "note: these weights are {} (not trained); the output will not resemble the input",
                    header.provenance.origin
                );
            }
            // The baseline's own file, loaded before any decoding so that a bad one fails first.
            let vae = match &baseline {
                Some(_) if model.baseline.is_none() => {
                    let (h, m) = load_timed(&baseline_weights, &device).with_context(|| {
                        format!(
                            "{} has no baseline decoder, so --baseline needs --baseline-weights",
                            weights.display()
                        )
                    })?;
                    if m.baseline.is_none() {
                        bail!(
                            "--baseline-weights {} has no baseline decoder; parts are {:?}",
                            baseline_weights.display(),
                            h.part_list()
                        );
                    }
                    Some((h, m))
                }
                _ => None,
            };
            // A VAE file given as --weights: its one-pass decoder writes OUTPUT (nothing to denoise).
            let vae_only = model.decoder.is_none();
            if vae_only && (baseline.is_some() || frames.is_some()) {
                bail!(
                    "{} holds the VAE baseline only (parts {:?}): it has no denoising frames, and it is already the \
                     baseline; drop --frames and --baseline, or give an ε-VAE file as --weights",
                    weights.display(),
                    header.part_list()
                );
            }
            let bytes = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let mut img = Planar::decode(&bytes).with_context(|| format!("decoding {}", input.display()))?;
            if let Some((w, h)) = size {
                img = img.resize(w, h);
            }
            let t = Instant::now();
            let latent = pipeline::encode(&model, cfg, &img, &device);
            if vae_only {
                let rec = pipeline::to_image(pipeline::decode_baseline(&model, &latent), &latent);
                save(&rec, &output)?;
                eprintln!(
                    "{} has no ε-decoder: decoded with its VAE baseline in one pass, {} -> {} (PSNR {:.2} dB, SSIM {:.4})",
                    weights.display(),
                    ms(t),
                    output.display(),
                    psnr(&img, &rec),
                    ssim(&img, &rec)
                );
                return Ok(());
            }
            let [_, nz, lh, lw] = latent.z.dims();
            let _ = latent.z.clone().into_data(); // wait for the work, so the timing is honest
            eprintln!(
                "encode {}x{} -> latent {nz}x{lh}x{lw}: {}",
                img.width,
                img.height,
                ms(t)
            );
            if let Some(dir) = &frames {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut last = Instant::now();
            let mut err = None;
            let out = pipeline::decode(&model, cfg, &latent, steps, seed, |f| {
                let x0 = Planar::from_tensor(f.x0_hat.clone()).crop(img.width, img.height);
                eprintln!(
                    "step {}/{steps} t {:.4} -> {:.4}: {}",
                    f.index + 1,
                    f.t,
                    f.t_next,
                    ms(last)
                );
                if let Some(dir) = &frames {
                    let shown = f.x_t.clone() * epsvae::flow::Flow::new(&cfg.flow).display_scale(f.t);
                    let xt = Planar::from_tensor(shown).crop(img.width, img.height);
                    for (name, p) in [("xt", &xt), ("x0hat", &x0)] {
                        if let Err(e) = save(p, &dir.join(format!("step{}_{name}.png", f.index + 1))) {
                            err.get_or_insert(e);
                        }
                    }
                }
                last = Instant::now();
            });
            if let Some(e) = err {
                return Err(e);
            }
            let rec = pipeline::to_image(out, &latent);
            save(&rec, &output)?;
            eprintln!(
                "wrote {} (PSNR {:.2} dB, SSIM {:.4} against the input)",
                output.display(),
                psnr(&img, &rec),
                ssim(&img, &rec)
            );
            if let Some(path) = baseline {
                let t = Instant::now();
                let b = match &vae {
                    None => pipeline::to_image(pipeline::decode_baseline(&model, &latent), &latent),
                    Some((h, m)) => {
                        let l = pipeline::encode(m, &h.config, &img, &device);
                        pipeline::to_image(pipeline::decode_baseline(m, &l), &l)
                    }
                };
                save(&b, &path)?;
                let how = if vae.is_some() {
                    " (encode with its own encoder, decode)"
                } else {
                    ""
                };
                eprintln!(
                    "baseline decode{how}: {} -> {} (PSNR {:.2} dB, SSIM {:.4})",
                    ms(t),
                    path.display(),
                    psnr(&img, &b),
                    ssim(&img, &b)
                );
            }
            eprintln!("total: {}", ms(t0));
        }
        Cmd::Inspect { weights: path, size } => {
            let device = Device::flex();
            let (header, model, nbytes) = weights::load_file(&path, &device)?;
            let bytes = std::fs::read(&path)?;
            let cfg = &header.config;
            let a = cfg.alignment();
            if size == 0 || !size.is_multiple_of(a) || size > 4096 {
                bail!(
                    "--size {size}: the side at which costs are counted must be a multiple of {a} (this model's alignment) in {a}..=4096"
                );
            }
            println!("file        {}", path.display());
            for (k, v) in weights::describe(&header) {
                println!("{k:<11} {v}");
            }
            println!("bytes       {nbytes}");
            println!("sha256      {}", weights::sha256_hex(&bytes));
            println!(
                "f, n_z      {}, {} (compression {}:1 of 8-bit RGB to f32 latent values)",
                cfg.downsample_factor(),
                cfg.encoder.latent_channels,
                3 * cfg.downsample_factor().pow(2) / cfg.encoder.latent_channels
            );
            print_costs(&model, cfg, size, &device);
            println!("config      {}", serde_json::to_string(cfg)?);
            println!("provenance  {}", serde_json::to_string(&header.provenance)?);
        }
        Cmd::Quantize {
            input,
            output,
            to,
            temperature,
            anti_alias,
            output_notch,
        } => {
            if let Some(e) = epsvae::config::temperature_error(temperature) {
                bail!("--temperature {e}");
            }
            if let Some(e) = epsvae::config::output_notch_error(output_notch) {
                bail!("--output-notch {e}");
            }
            let bytes = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let (mut header, tensors) =
                weights::read(&bytes).with_context(|| format!("reading {}", input.display()))?;
            if temperature.is_some() {
                header.config.flow.temperature = temperature;
            }
            if anti_alias.is_some() {
                header.config.baseline.anti_alias = anti_alias;
            }
            if output_notch.is_some() {
                header.config.flow.output_notch = output_notch;
            }
            if header.storage != Storage::F32 && !(header.storage == Storage::Int8 && to == Storage::Int8) {
                eprintln!(
                    "note: {} is already {}; re-quantising compounds the error",
                    input.display(),
                    header.storage
                );
            }
            let model = Autoencoder::new(&header.config, &header.part_list(), &Device::flex());
            let params: Vec<_> = weights::param_shapes(&model)
                .into_iter()
                .map(|(name, shape)| {
                    let (_, v) = tensors[&name].clone();
                    (name, shape, v)
                })
                .collect();
            let out = weights::encode(&params, &header.config, &header.provenance, to);
            std::fs::write(&output, &out).with_context(|| format!("writing {}", output.display()))?;
            println!(
                "{} ({} bytes, {}) -> {} ({} bytes, {to})",
                input.display(),
                bytes.len(),
                header.storage,
                output.display(),
                out.len()
            );
        }
        #[cfg(feature = "train")]
        Cmd::Train {
            run,
            preset,
            model,
            data,
            lpips,
            steps,
            batch,
            crop,
            max_seconds,
            seed,
            val_every,
            adv_start,
            lr,
            d_lr_scale,
            r1,
            warmup,
            x0_l1,
            decode_loss,
            decode_l1,
            decode_steps,
            ema,
            checkpoint_every,
            decay,
            rewarm,
            backend,
            devices,
            init_from,
        } => {
            // A resumed run keeps the recipe in its train.json; flags given here override it.
            let saved = run.join("train.json");
            let mut cfg = if saved.exists() {
                let mut c: epsvae::train::trainer::TrainConfig = serde_json::from_slice(&std::fs::read(&saved)?)
                    .with_context(|| format!("reading {}", saved.display()))?;
                (c.preset, c.model) = (preset, model); // checked against the run by Trainer::open
                c
            } else {
                epsvae::train::trainer::TrainConfig::new(&preset, model)
            };
            cfg.steps = steps;
            cfg.batch = batch.unwrap_or(cfg.batch);
            cfg.crop = crop.unwrap_or(cfg.crop);
            cfg.seed = seed.unwrap_or(cfg.seed);
            cfg.val_every = val_every.unwrap_or(cfg.val_every);
            cfg.adv_start = adv_start.unwrap_or(cfg.adv_start);
            cfg.warmup = warmup.unwrap_or(cfg.warmup);
            for (flag, v, field) in [
                ("--lr", lr, &mut cfg.lr),
                ("--d-lr-scale", d_lr_scale, &mut cfg.d_lr_scale),
            ] {
                if let Some(v) = v {
                    if !(v.is_finite() && v > 0.0 && v <= 1.0e3) {
                        bail!(
                            "{flag} {v}: expected a positive finite number, such as 2e-4 for --lr or 4 for --d-lr-scale"
                        );
                    }
                    *field = v;
                }
            }
            if let Some(w) = r1 {
                if !(w.is_finite() && w >= 0.0) {
                    bail!("--r1 {w}: expected a finite weight of 0 or more, such as 0.01");
                }
                cfg.r1_weight = w;
            }
            // The ε-VAE's optional extra losses: a weight of 0 or more, and only on the epsvae model.
            let eps_only = |flag: &str, w: Option<f64>, why: &str| -> Result<Option<f64>> {
                match w {
                    Some(w) if !(w.is_finite() && w >= 0.0) => {
                        bail!("{flag} {w}: expected a finite weight of 0 or more")
                    }
                    Some(w) if w > 0.0 && cfg.model != epsvae::train::trainer::ModelKind::Epsvae => {
                        bail!("{flag} {w}: {why}")
                    }
                    w => Ok(w),
                }
            };
            let x0_l1 = eps_only(
                "--x0-l1",
                x0_l1,
                "only the epsvae model has a one-step estimate x̂0 (the vae's L1 has weight 1)",
            )?;
            let decode_loss = eps_only(
                "--decode-loss",
                decode_loss,
                "only the epsvae model decodes from noise (the vae decodes in one pass, scored by its L1 and ST-LPIPS)",
            )?;
            cfg.x0_l1_weight = x0_l1.unwrap_or(cfg.x0_l1_weight);
            cfg.decode_weight = decode_loss.unwrap_or(cfg.decode_weight);
            cfg.decode_l1_weight = eps_only(
                "--decode-l1",
                decode_l1,
                "only the epsvae model decodes from noise (--decode-l1 weighs the L1 of --decode-loss)",
            )?
            .unwrap_or(cfg.decode_l1_weight);
            if let Some(n) = decode_steps {
                if !(1..=8).contains(&n) {
                    bail!("--decode-steps {n}: expected 1 to 8 Euler steps");
                }
                cfg.decode_steps = n;
            }
            if let Some(d) = ema {
                if !(d > 0.0 && d < 1.0) {
                    bail!("--ema {d}: expected a decay between 0 and 1, such as 0.999");
                }
                cfg.ema = d;
            }
            cfg.checkpoint_every_s = checkpoint_every.unwrap_or(cfg.checkpoint_every_s);
            (cfg.decay_start, cfg.decay_end) = decay.unwrap_or((cfg.decay_start, cfg.decay_end));
            (cfg.rewarm_start, cfg.rewarm_end) = rewarm.unwrap_or((cfg.rewarm_start, cfg.rewarm_end));
            if cfg.steps > cfg.decay_end {
                bail!(
                    "--steps {} goes past the end of the run's learning-rate decay (rate 0 from step {}): give --decay START:END with a later END, or --decay none",
                    cfg.steps,
                    cfg.decay_end
                );
            }
            if let Some(p) = init_from {
                if !p.is_file() {
                    bail!(
                        "--init-from {}: no such file (expected a weight file such as weights/epsvae-small.safetensors)",
                        p.display()
                    );
                }
                cfg.init_from = Some(p.display().to_string());
            }
            let devices = backend::devices(backend, devices).map_err(anyhow::Error::msg)?;
            epsvae::train::trainer::run(&run, cfg, &data, &lpips, max_seconds, devices)?;
        }
        #[cfg(feature = "train")]
        Cmd::BenchTrain {
            backend,
            preset,
            model,
            batch,
            crop,
            adversarial,
            warmup,
            steps,
            devices,
            peak_gflops,
            lpips,
        } => {
            use epsvae::train::trainer::{TrainConfig, bench};
            if steps == 0 {
                bail!("--steps 0: expected at least one timed step");
            }
            if adversarial && devices.iter().any(|&n| n > 1) {
                bail!("--devices with --adversarial: the adversarial term is not data-parallel");
            }
            println!(
                "| backend | devices | model | adversarial | batch × crop | s/step (median) | images/s | GFLOP/s | share of {peak_gflops:.0} GFLOP/s peak |"
            );
            println!("|---|---|---|---|---|---|---|---|---|");
            for &m in &model {
                for adv in [false, true] {
                    if adv && !adversarial {
                        continue;
                    }
                    for &b in &backend {
                        for &n in &devices {
                            let mut cfg = TrainConfig::new(&preset, m);
                            cfg.batch = batch;
                            cfg.crop = crop;
                            let on = backend::devices(b, n).map_err(anyhow::Error::msg)?;
                            let r = bench(cfg, &lpips, on, &b.to_string(), adv, warmup, steps)?;
                            println!(
                                "| {b} | {n} | {m:?} | {} | {batch} × {crop}² | {:.3} | {:.2} | {:.1} | {:.0}% |",
                                if adv { "on" } else { "off" },
                                r.median_s(),
                                r.images_per_s(),
                                r.gflops(),
                                100.0 * r.gflops() / peak_gflops
                            );
                        }
                    }
                }
            }
        }
        #[cfg(feature = "train")]
        Cmd::Eval {
            data,
            size,
            steps,
            seeds,
            weights,
            baseline,
            lpips,
            json,
            grid_base,
            temperature,
            output_notch,
            backend,
        } => {
            use epsvae::train::eval;
            if !(16..=4096).contains(&size) {
                bail!("--size {size}: the crop side must lie in 16..=4096");
            }
            if steps.iter().any(|s| !(1..=100).contains(s)) || seeds == 0 {
                bail!("--steps must lie in 1..=100 and --seeds be at least 1");
            }
            let device = backend::device(backend).map_err(anyhow::Error::msg)?;
            let rows = eval::evaluate(
                &data,
                size,
                &weights,
                baseline.as_deref(),
                &steps,
                seeds,
                &grid_base,
                &temperature,
                &output_notch,
                &lpips,
                device,
            )?;
            print!("{}", eval::markdown(&rows, size));
            if let Some(j) = json {
                std::fs::write(&j, serde_json::to_string_pretty(&rows)?)?;
            }
        }
        Cmd::Serve { dir, port } => {
            if !dir.join("index.html").is_file() {
                bail!(
                    "{} has no index.html\n---> HINT: build the site first with `bash tools/site.sh`",
                    dir.display()
                );
            }
            epsvae::serve::serve(&dir, port).with_context(|| format!("serving on 127.0.0.1:{port}"))?;
        }
        Cmd::Manifest { dir } => {
            let m = weights::manifest(&dir).map_err(anyhow::Error::msg)?;
            let path = dir.join("manifest.json");
            std::fs::write(&path, serde_json::to_string_pretty(&m)? + "\n")?;
            for e in &m {
                println!("{}  {:>9} bytes  {}", e.sha256, e.bytes, e.file);
            }
            println!("wrote {}", path.display());
        }
        Cmd::Init {
            output,
            preset,
            parts,
            seed,
            storage,
        } => {
            let cfg = ModelConfig::preset(&preset)
                .with_context(|| format!("preset {preset:?} is not one of {:?}", ModelConfig::PRESETS))?;
            let mut list = vec![Part::Encoder];
            for p in &parts {
                list.push(match p.as_str() {
                    "decoder" => Part::Decoder,
                    "baseline" => Part::Baseline,
                    _ => bail!("part {p:?} is not one of decoder, baseline"),
                });
            }
            list.sort();
            list.dedup();
            let device = Device::flex();
            device.seed(seed);
            let model = Autoencoder::new(&cfg, &list, &device);
            let prov = Provenance {
                origin: "initialised".into(),
                seed: Some(seed),
                note: "random initial weights from a fixed seed; not trained".into(),
                ..Default::default()
            };
            let out = weights::write(&model, &cfg, &prov, storage);
            std::fs::write(&output, &out).with_context(|| format!("writing {}", output.display()))?;
            println!(
                "wrote {} ({} bytes, preset {preset}, seed {seed}, {storage})",
                output.display(),
                out.len()
            );
        }
    }
    Ok(())
}

/// Parameter counts and measured multiply-accumulates per part at `size`×`size`.
fn print_costs(model: &Autoencoder, cfg: &ModelConfig, size: usize, device: &Device) {
    let count = |prefix: &str| -> usize {
        weights::param_shapes(model)
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    };
    let x = burn::tensor::Tensor::<4>::zeros([1, 3, size, size], device);
    let (z, enc) = macs::measure(|| model.encode(x.clone()));
    println!(
        "encoder     {:>9} params, {:.3} GMAC at {size}x{size}",
        count("encoder."),
        enc as f64 / 1e9
    );
    if let Some(d) = &model.decoder {
        let flow = epsvae::flow::Flow::new(&cfg.flow);
        let t = burn::tensor::Tensor::<1>::full([1], 0.5, device);
        let (_, dec) = macs::measure(|| flow.velocity(d, x.clone(), t, z.clone()));
        println!(
            "decoder     {:>9} params, {:.3} GMAC per step at {size}x{size}",
            count("decoder."),
            dec as f64 / 1e9
        );
    }
    if let Some(b) = &model.baseline {
        let (_, base) = macs::measure(|| b.forward(z.clone()));
        println!(
            "baseline    {:>9} params, {:.3} GMAC at {size}x{size}",
            count("baseline."),
            base as f64 / 1e9
        );
    }
}
