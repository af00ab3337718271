//! The rectified-flow convention of the decoder, written once (Zhao et al. §3.2; PAPER.md):
//!   t ∈ [0, 1], t = 1 is pure noise;   x_t = (1 − t)·γ·x0 + t·ε;   v = dx_t/dt = ε − γ·x0
//!   x̂0 = (x_t − t·v̂) / γ;   Euler: x ← x + (t_next − t)·v̂;   the network sees x_t / s(t).
//! Noise is always an argument: it comes from [`gaussian_noise`], a seeded host RNG that gives the
//! same numbers natively, in the browser and on every backend.

use burn::tensor::{Device, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::config::FlowConfig;
use crate::model::Decoder;

#[derive(Clone, Debug)]
pub struct Flow {
    pub gamma: f64,
    pub sigma_data: f64,
    pub time_scale: f64,
    /// v̂ = c_skip·x_t + c_out·G instead of v̂ = G (see [`FlowConfig::precondition`]).
    pub precondition: bool,
    /// n of the reversed-log sampling grid (see [`FlowConfig::grid_base`]).
    pub grid_base: f64,
    /// m of the notch on x̂0 and the image, 0 = off (see [`FlowConfig::output_notch`]).
    pub output_notch: usize,
}

impl Flow {
    pub fn new(cfg: &FlowConfig) -> Self {
        Self {
            gamma: cfg.gamma,
            sigma_data: cfg.sigma_data,
            time_scale: cfg.time_scale,
            precondition: cfg.precondition == Some(true),
            grid_base: cfg.grid_base(),
            output_notch: cfg.output_notch(),
        }
    }

    /// The preconditioning scales (c_skip, c_out) at time t. With y = γ·x0 of variance (γσ)²,
    /// x_t = (1 − t)·y + t·ε and v = ε − y: c_skip = Cov(v, x_t) / s² = (t − (1 − t)·(γσ)²) / s²,
    /// c_out² = Var(v) − c_skip²·s² = 1 + (γσ)² − (t − (1 − t)·(γσ)²)² / s².
    /// At t = 1: (1, γσ); at t = 0: (−1, 1).
    pub fn precondition_scales(&self, t: f64) -> (f64, f64) {
        let g2 = (self.gamma * self.sigma_data).powi(2);
        let s2 = ((1.0 - t) * self.gamma * self.sigma_data).powi(2) + t * t;
        let cov = t - (1.0 - t) * g2;
        (cov / s2, (1.0 + g2 - cov * cov / s2).max(0.0).sqrt())
    }

    /// x_t = (1 − t)·γ·x0 + t·ε, with t: [B].
    pub fn noisy(&self, x0: Tensor<4>, eps: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let t = per_sample(t);
        x0 * (t.clone().neg() + 1.0) * self.gamma + eps * t
    }

    /// The regression target v = ε − γ·x0.
    pub fn target(&self, x0: Tensor<4>, eps: Tensor<4>) -> Tensor<4> {
        eps - x0 * self.gamma
    }

    /// The analytic standard deviation of x_t, s(t) = sqrt(((1 − t)·γ·σ_data)² + t²) *(choice)*.
    pub fn input_scale(&self, t: Tensor<1>) -> Tensor<1> {
        let a = (t.clone().neg() + 1.0) * (self.gamma * self.sigma_data);
        (a.powi_scalar(2) + t.powi_scalar(2)).sqrt()
    }

    /// Scale that shows x_t as a picture: x_t · 0.5 / s(t) has the spread of an image in [-1, 1]
    /// (pure noise at t = 1 shown at half amplitude; at t = 0, x_t = γ·x0 is shown as x0 when
    /// σ_data = 0.5).
    pub fn display_scale(&self, t: f64) -> f64 {
        let a = (1.0 - t) * self.gamma * self.sigma_data;
        0.5 / (a * a + t * t).sqrt()
    }

    /// v̂ = G(x_t / s(t), time_scale·t, z), or c_skip·x_t + c_out·G(…) when preconditioned; t: [B].
    pub fn velocity(&self, decoder: &Decoder, x_t: Tensor<4>, t: Tensor<1>, z: Tensor<4>) -> Tensor<4> {
        let scale = self.input_scale(t.clone());
        let g = decoder.forward(x_t.clone() / per_sample(scale.clone()), t.clone() * self.time_scale, z);
        if !self.precondition {
            return g;
        }
        // The same formulas as `precondition_scales`, on the per-sample times.
        let g2 = (self.gamma * self.sigma_data).powi(2);
        let s2 = scale.powi_scalar(2);
        let cov = t.clone() - (t.neg() + 1.0) * g2;
        let c_skip = cov.clone() / s2.clone();
        let c_out = (cov.powi_scalar(2).neg() / s2 + (1.0 + g2)).clamp_min(0.0).sqrt();
        x_t * per_sample(c_skip) + g * per_sample(c_out)
    }

    /// An image (x̂0 or the decode) through the output notch of order [`Flow::output_notch`];
    /// unchanged when it is 0.
    pub fn notch(&self, x: Tensor<4>) -> Tensor<4> {
        if self.output_notch == 0 {
            x
        } else {
            crate::model::blocks::nyquist_notch_order(x, self.output_notch)
        }
    }

    /// The one-step estimate of the clean image x̂0 = (x_t − t·v̂) / γ, with t: [B], through the
    /// output notch ([`Flow::notch`]): every x̂0 the sampler shows and the trainer scores is this one.
    pub fn x0_hat(&self, x_t: Tensor<4>, t: Tensor<1>, v: Tensor<4>) -> Tensor<4> {
        self.notch((x_t - v * per_sample(t)) / self.gamma)
    }
}

/// [B] → [B, 1, 1, 1], to broadcast a per-sample time over an image batch.
fn per_sample(t: Tensor<1>) -> Tensor<4> {
    let b = t.dims()[0];
    t.reshape([b, 1, 1, 1])
}

/// The "reversed log" time grid of the paper (m = 1, n = 100): t_i = ln(100 − 99·i/N) / ln(100),
/// i = 0..N, running from 1 to 0 with small steps at high noise and one large final jump.
pub fn time_grid(steps: usize) -> Vec<f64> {
    reversed_log_grid(steps, crate::config::PAPER_GRID_BASE)
}

/// The reversed-log grid with base n (m = 1): t_i = ln(n − (n − 1)·i/N) / ln(n), i = 0..N. The
/// larger n, the smaller the steps at high noise and the larger the final jump; n → 1 tends to the
/// uniform grid t_i = 1 − i/N, which n = 1 gives exactly.
pub fn reversed_log_grid(steps: usize, base: f64) -> Vec<f64> {
    assert!(steps >= 1, "a sampling grid needs at least one step");
    assert!(
        crate::config::is_grid_base(base),
        "grid base {base} must be a finite number ≥ 1"
    );
    (0..=steps)
        .map(|i| {
            let u = i as f64 / steps as f64;
            if i == steps {
                0.0 // exactly, whatever ln's last bit says
            } else if base == 1.0 {
                1.0 - u
            } else {
                (base - (base - 1.0) * u).ln() / base.ln()
            }
        })
        .collect()
}

/// One Euler step of dx/dt = v from t to t_next.
pub fn euler_step(x: Tensor<4>, t: f64, t_next: f64, v: Tensor<4>) -> Tensor<4> {
    x + v * (t_next - t)
}

/// What the sampler shows after each step: the state it started from, the clean-image estimate
/// made at that state, and the state it moved to.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Step index, 0-based.
    pub index: usize,
    pub t: f64,
    pub t_next: f64,
    /// The noisy state x_t this step started from, [B, 3, H, W].
    pub x_t: Tensor<4>,
    /// x̂0 estimated from x_t, [B, 3, H, W], nominally in [-1, 1] (not clamped).
    pub x0_hat: Tensor<4>,
    /// The state after the step, x_{t_next}.
    pub x_next: Tensor<4>,
}

/// A staged Euler sampler: the browser calls [`Sampler::step`] once per animation frame; the CLI
/// and tests run [`sample`], which is the same loop.
pub struct Sampler {
    flow: Flow,
    grid: Vec<f64>,
    index: usize,
    x: Tensor<4>,
}

impl Sampler {
    /// Starts at t = 1 from `noise` ([B, 3, H, W], standard normal).
    pub fn new(flow: Flow, noise: Tensor<4>, steps: usize) -> Self {
        let grid = reversed_log_grid(steps, flow.grid_base);
        Self {
            flow,
            grid,
            index: 0,
            x: noise,
        }
    }

    pub fn steps(&self) -> usize {
        self.grid.len() - 1
    }

    pub fn grid(&self) -> &[f64] {
        &self.grid
    }

    pub fn is_done(&self) -> bool {
        self.index == self.steps()
    }

    /// Runs the next Euler step; `None` once the grid is exhausted.
    pub fn step(&mut self, decoder: &Decoder, z: &Tensor<4>) -> Option<Frame> {
        let w = self.grid.get(self.index..self.index + 2)?;
        let (t, t_next) = (w[0], w[1]);
        let b = self.x.dims()[0];
        let tt = Tensor::<1>::full([b], t, &self.x.device());
        let v = self.flow.velocity(decoder, self.x.clone(), tt.clone(), z.clone());
        let x0_hat = self.flow.x0_hat(self.x.clone(), tt, v.clone());
        let x_next = euler_step(self.x.clone(), t, t_next, v);
        let frame = Frame {
            index: self.index,
            t,
            t_next,
            x_t: self.x.clone(),
            x0_hat,
            x_next: x_next.clone(),
        };
        self.x = x_next;
        self.index += 1;
        Some(frame)
    }

    /// The decoded image x_0 / γ through the flow's output notch, clamped to [-1, 1]. Meaningful
    /// once [`Sampler::is_done`]; then it equals the last frame's x̂0, clamped.
    pub fn image(&self) -> Tensor<4> {
        self.flow.notch(self.x.clone() / self.flow.gamma).clamp(-1.0, 1.0)
    }
}

/// Decodes z by Euler sampling over the flow's reversed-log grid from `noise`, calling `hook` after every
/// step with that step's frame. Returns the clamped image in [-1, 1].
pub fn sample(
    flow: &Flow,
    decoder: &Decoder,
    z: &Tensor<4>,
    noise: Tensor<4>,
    steps: usize,
    mut hook: impl FnMut(&Frame),
) -> Tensor<4> {
    let mut s = Sampler::new(flow.clone(), noise, steps);
    while let Some(frame) = s.step(decoder, z) {
        hook(&frame);
    }
    s.image()
}

/// `n` standard-normal numbers from `seed`: ChaCha8 and Box–Muller with `libm`'s log, sqrt and
/// cos, so every platform (x86, wasm) and backend gets the same bits for the same seed.
pub fn gaussian_noise(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // Two uniforms in (0, 1]: 53 random bits each.
        let u1 = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let u2 = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let r = libm::sqrt(-2.0 * libm::log(u1));
        let a = 2.0 * std::f64::consts::PI * u2;
        out.push((r * libm::cos(a)) as f32);
        out.push((r * libm::sin(a)) as f32);
    }
    out.truncate(n);
    out
}

/// The decoder's starting noise for an image batch, [B, 3, H, W], drawn by [`gaussian_noise`].
pub fn noise_tensor(seed: u64, shape: [usize; 4], device: &Device) -> Tensor<4> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(gaussian_noise(seed, n), shape), device)
}

/// Training times from the logit-normal distribution: t = sigmoid(u), u ~ N(0, 1) (paper §3.2,
/// after Esser et al. 2024).
pub fn logit_normal_times(seed: u64, n: usize) -> Vec<f32> {
    gaussian_noise(seed, n)
        .into_iter()
        .map(|u| 1.0 / (1.0 + (-u).exp()))
        .collect()
}
