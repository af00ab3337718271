//! The browser API (wasm-bindgen): a thin, staged shim over the same model, flow and weight file
//! the CLI uses. `Session.create(backend)` → `pushWeights(slot, chunk)` as bytes stream in →
//! `encode(rgba, w, h)` → `begin(steps, seed)` → `step()` per animation frame → frames as RGBA.
//! Only asynchronous reads from the GPU (`into_data_async`). Errors become `JsError` here, in one
//! place, with the message the Rust error carries.

use burn::tensor::{Device, Tensor, TensorData};
use wasm_bindgen::prelude::*;

use crate::config::ModelConfig;
use crate::flow::{Flow, Sampler};
use crate::image::Planar;
use crate::latent::{self, LinkLatent};
use crate::model::{Autoencoder, Part};
use crate::pipeline::{self, Latent};
use crate::weights::{self, Event, WeightStream};

/// Plain JS objects (not Maps) for JSON-like values.
fn to_js<T: serde::Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(js)
}

fn js<E: std::fmt::Display>(e: E) -> JsError {
    JsError::new(&e.to_string())
}

async fn host(t: Tensor<4>) -> Result<TensorData, JsError> {
    t.into_data_async()
        .await
        .map_err(|e| JsError::new(&format!("reading a result back from the device failed: {e:?}")))
}

/// A weight file being streamed and the model it becomes.
#[derive(Default)]
struct Slot {
    stream: WeightStream,
    model: Option<Autoencoder>,
    cfg: Option<ModelConfig>,
    ready: Vec<Part>,
    sha256_tag: [u8; 4],
}

/// One decoded frame: the state x_t a step started from and its clean estimate x̂0, as RGBA.
#[wasm_bindgen(getter_with_clone)]
pub struct Frame {
    pub index: u32,
    pub steps: u32,
    pub t: f64,
    pub t_next: f64,
    pub width: u32,
    pub height: u32,
    pub x_t: Vec<u8>,
    pub x0_hat: Vec<u8>,
    pub done: bool,
}

/// The model of weight slot `slot` and its config, once its encoder and `part` have arrived.
fn ready(slots: &[Slot], slot: usize, part: Part) -> Option<(&Autoencoder, &ModelConfig)> {
    let s = slots.get(slot)?;
    (s.ready.contains(&part) && s.ready.contains(&Part::Encoder))
        .then(|| (s.model.as_ref().expect("ready"), s.cfg.as_ref().expect("ready")))
}

#[wasm_bindgen]
pub struct Session {
    device: Device,
    backend: String,
    slots: Vec<Slot>,
    latent: Option<Latent>,
    baseline_latent: Option<Latent>,
    sampler: Option<Sampler>,
}

#[wasm_bindgen]
impl Session {
    /// Opens a session on "webgpu" (burn-wgpu; the browser's WebGPU adapter) or "cpu" (burn's flex).
    pub async fn create(backend: String) -> Result<Session, JsError> {
        console_error_panic_hook::set_once();
        let device = match backend.as_str() {
            #[cfg(feature = "gpu")]
            "webgpu" => Device::wgpu_options()
                .init_async()
                .await
                .map_err(|e| JsError::new(&format!("WebGPU could not be initialised: {e}")))?,
            #[cfg(not(feature = "gpu"))]
            "webgpu" => {
                return Err(JsError::new(
                    "this is the CPU-only module (built without the gpu feature); load pkg/ for WebGPU",
                ));
            }
            #[cfg(feature = "cpu")]
            "cpu" => Device::flex(),
            #[cfg(not(feature = "cpu"))]
            "cpu" => {
                return Err(JsError::new(
                    "this is the WebGPU module (built without the cpu feature); load pkg-cpu/ for the CPU",
                ));
            }
            other => return Err(JsError::new(&format!("backend {other:?} is not one of webgpu, cpu"))),
        };
        Ok(Session {
            device,
            backend,
            slots: vec![Slot::default(), Slot::default()],
            latent: None,
            baseline_latent: None,
            sampler: None,
        })
    }

    /// Whether this module was built with WebGPU support ("gpu" feature).
    #[wasm_bindgen(js_name = hasWebGpu)]
    pub fn has_webgpu() -> bool {
        cfg!(feature = "gpu")
    }

    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Feeds the next bytes of weight file `slot` (0: ε-VAE, 1: VAE baseline). Returns
    /// `{received, total, parts: [names completed by this chunk], header?}`.
    #[wasm_bindgen(js_name = pushWeights)]
    pub fn push_weights(&mut self, slot: usize, chunk: &[u8]) -> Result<JsValue, JsError> {
        let device = self.device.clone();
        let s = self
            .slots
            .get_mut(slot)
            .ok_or_else(|| JsError::new(&format!("weight slot {slot}: expected 0 or 1")))?;
        let events = s.stream.push(chunk).map_err(js)?;
        let mut done = Vec::new();
        let mut header = None;
        for e in events {
            match e {
                Event::Header { .. } => {
                    let h = s.stream.header().expect("header event").clone();
                    s.model = Some(Autoencoder::new(&h.config, &h.part_list(), &device));
                    s.cfg = Some(h.config.clone());
                    s.sha256_tag = h.parts[0].sha256.as_bytes()[..4].try_into().expect("hex digest");
                    header = Some(serde_json::json!({
                        "preset": h.config.preset, "storage": h.storage.to_string(),
                        "parts": h.part_list(), "provenance": h.provenance,
                        "f": h.config.downsample_factor(), "latent_channels": h.config.encoder.latent_channels,
                        "gamma": h.config.flow.gamma, "temperature": h.config.flow.temperature(),
                        "sigma_data": h.config.flow.sigma_data,
                        "precondition": h.config.flow.precondition == Some(true),
                        "output_notch": h.config.flow.output_notch(),
                    }));
                }
                Event::PartComplete(p) => {
                    let tensors = s.stream.take_part(p);
                    let model = s.model.take().expect("the header came first");
                    s.model = Some(weights::apply_params(model, &tensors, &device).0);
                    s.ready.push(p);
                    done.push(p.name());
                }
                Event::Tensor(_) => {}
            }
        }
        let out = serde_json::json!({ "received": s.stream.received(), "total": s.stream.total(), "parts": done, "header": header });
        to_js(&out)
    }

    /// Checks that weight file `slot` arrived whole (call after the last chunk).
    #[wasm_bindgen(js_name = finishWeights)]
    pub fn finish_weights(&mut self, slot: usize) -> Result<(), JsError> {
        let s = self
            .slots
            .get_mut(slot)
            .ok_or_else(|| JsError::new("weight slot: expected 0 or 1"))?;
        let stream = std::mem::take(&mut s.stream);
        stream.finish().map_err(js)?;
        Ok(())
    }

    fn ready(&self, slot: usize, part: Part) -> Option<(&Autoencoder, &ModelConfig)> {
        ready(&self.slots, slot, part)
    }

    /// Encodes an RGBA image; returns `{width, height, channels, latent_height, latent_width}`.
    pub async fn encode(&mut self, rgba: &[u8], width: usize, height: usize) -> Result<JsValue, JsError> {
        let img = Planar::from_rgba(rgba, width, height).map_err(js)?;
        let (model, cfg) = self
            .ready(0, Part::Encoder)
            .ok_or_else(|| JsError::new("the encoder weights have not arrived yet"))?;
        let lat = pipeline::encode(model, cfg, &img, &self.device);
        host(lat.z.clone()).await?; // finish the work now, so the caller's timing is the encoder's
        let [_, c, lh, lw] = lat.z.dims();
        self.latent = Some(lat);
        self.baseline_latent = None;
        self.sampler = None;
        if let Some((m, cfg)) = self.ready(1, Part::Baseline) {
            self.baseline_latent = Some(pipeline::encode(m, cfg, &img, &self.device));
        }
        to_js(
            &serde_json::json!({"width": width, "height": height, "channels": c, "latent_height": lh, "latent_width": lw}),
        )
    }

    /// Starts denoising the current latent in `steps` Euler steps from the noise of `seed` times
    /// `temperature` (absent: the weight file's); returns the time grid t_0 = 1 > … > t_N = 0 the
    /// sampler will run on (the weight file's).
    pub fn begin(&mut self, steps: usize, seed: u32, temperature: Option<f64>) -> Result<Vec<f64>, JsError> {
        if !(1..=100).contains(&steps) {
            return Err(JsError::new(&format!("steps = {steps}: expected 1..=100")));
        }
        if let Some(e) = crate::config::temperature_error(temperature) {
            return Err(JsError::new(&format!("temperature = {e}")));
        }
        let (_, cfg) = self
            .ready(0, Part::Decoder)
            .ok_or_else(|| JsError::new("the ε-decoder weights have not arrived yet"))?;
        let lat = self
            .latent
            .as_ref()
            .ok_or_else(|| JsError::new("encode an image (or open a link) first"))?;
        let mut cfg = cfg.clone();
        if temperature.is_some() {
            cfg.flow.temperature = temperature;
        }
        let noise = pipeline::noise(&cfg, lat, seed as u64, &self.device);
        let sampler = Sampler::new(Flow::new(&cfg.flow), noise, steps);
        let grid = sampler.grid().to_vec();
        self.sampler = Some(sampler);
        Ok(grid)
    }

    /// Runs the next Euler step and returns its frame.
    pub async fn step(&mut self) -> Result<Frame, JsError> {
        let (model, cfg) = ready(&self.slots, 0, Part::Decoder)
            .ok_or_else(|| JsError::new("the ε-decoder weights have not arrived yet"))?;
        let flow = Flow::new(&cfg.flow);
        let lat = self
            .latent
            .as_ref()
            .ok_or_else(|| JsError::new("encode an image first"))?;
        let sampler = self
            .sampler
            .as_mut()
            .ok_or_else(|| JsError::new("call begin(steps, seed, temperature) first"))?;
        let steps = sampler.steps() as u32;
        let f = sampler
            .step(model.decoder(), &lat.z)
            .ok_or_else(|| JsError::new("all steps are done; call begin again"))?;
        let xt = host(f.x_t * flow.display_scale(f.t)).await?;
        let x0 = host(f.x0_hat).await?;
        let (w, h) = (lat.width, lat.height);
        let crop = |d: &TensorData| Planar::from_data(d, 0).crop(w, h).to_rgba();
        Ok(Frame {
            index: f.index as u32,
            steps,
            t: f.t,
            t_next: f.t_next,
            width: w as u32,
            height: h as u32,
            x_t: crop(&xt),
            x0_hat: crop(&x0),
            done: sampler.is_done(),
        })
    }

    /// The VAE baseline's one-pass decoding of the same image, RGBA.
    pub async fn baseline(&mut self) -> Result<Vec<u8>, JsError> {
        let (m, _) = self
            .ready(1, Part::Baseline)
            .or_else(|| self.ready(0, Part::Baseline))
            .ok_or_else(|| JsError::new("no VAE baseline weights are loaded"))?;
        let lat = self
            .baseline_latent
            .as_ref()
            .or(self.latent.as_ref())
            .ok_or_else(|| JsError::new("encode an image first"))?;
        let d = host(pipeline::decode_baseline(m, lat)).await?;
        Ok(Planar::from_data(&d, 0).crop(lat.width, lat.height).to_rgba())
    }

    /// The current latent as link text (quantised, compressed, base64url).
    #[wasm_bindgen(js_name = exportLatent)]
    pub async fn export_latent(&self) -> Result<String, JsError> {
        let (_, cfg) = self.ready(0, Part::Encoder).ok_or_else(|| JsError::new("no encoder"))?;
        let lat = self
            .latent
            .as_ref()
            .ok_or_else(|| JsError::new("encode an image first"))?;
        let [_, c, h, w] = lat.z.dims();
        let values = host(lat.z.clone())
            .await?
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| JsError::new(&format!("{e:?}")))?;
        let l = LinkLatent {
            channels: c,
            height: h,
            width: w,
            image_width: lat.width,
            image_height: lat.height,
            weights_tag: self.slots[0].sha256_tag,
            values,
        };
        Ok(latent::encode(&l, cfg.latent.link_bits))
    }

    /// Replaces the current latent by one from a link; returns `{width, height, weights_match}`.
    #[wasm_bindgen(js_name = importLatent)]
    pub fn import_latent(&mut self, text: &str) -> Result<JsValue, JsError> {
        let (_, cfg) = self
            .ready(0, Part::Encoder)
            .ok_or_else(|| JsError::new("the weights have not arrived yet"))?;
        // Checked against this model and the page's largest side before the values are inflated.
        let fit = latent::Fit {
            channels: cfg.encoder.latent_channels,
            factor: cfg.downsample_factor(),
            alignment: cfg.alignment(),
            max_side: latent::MAX_IMAGE_SIDE,
        };
        let l = latent::decode_for(text, &fit).map_err(js)?;
        let z = Tensor::<4>::from_data(
            TensorData::new(l.values, [1, l.channels, l.height, l.width]),
            &self.device,
        );
        self.latent = Some(Latent {
            z,
            width: l.image_width,
            height: l.image_height,
        });
        self.baseline_latent = None;
        self.sampler = None;
        let matches = l.weights_tag == self.slots[0].sha256_tag;
        to_js(&serde_json::json!({
            "width": l.image_width, "height": l.image_height, "weights_match": matches,
            "channels": l.channels, "latent_height": l.height, "latent_width": l.width,
        }))
    }
}

/// PSNR (dB) and SSIM of two RGBA images of the same size, as the CLI computes them.
#[wasm_bindgen]
pub fn metrics(a: &[u8], b: &[u8], width: usize, height: usize) -> Result<Vec<f64>, JsError> {
    let a = Planar::from_rgba(a, width, height).map_err(js)?;
    let b = Planar::from_rgba(b, width, height).map_err(js)?;
    Ok(vec![crate::image::psnr(&a, &b), crate::image::ssim(&a, &b)])
}

#[wasm_bindgen]
impl Session {
    /// The latent's channels tiled 4 per row as a grey-scale RGBA image (−1 black, +1 white):
    /// `{width, height, rgba}` in the frame's fields `width`, `height`, `x0_hat`.
    #[wasm_bindgen(js_name = latentImage)]
    pub async fn latent_image(&self) -> Result<Frame, JsError> {
        let lat = self
            .latent
            .as_ref()
            .ok_or_else(|| JsError::new("encode an image first"))?;
        let [_, c, h, w] = lat.z.dims();
        let v = host(lat.z.clone())
            .await?
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| JsError::new(&format!("{e:?}")))?;
        let cols = c.min(4);
        let rows = c.div_ceil(cols);
        let (tw, th) = (cols * (w + 1) - 1, rows * (h + 1) - 1);
        let mut rgba = vec![0u8; tw * th * 4];
        for px in rgba.chunks_exact_mut(4) {
            px.copy_from_slice(&[40, 40, 48, 255]);
        }
        for ch in 0..c {
            let (ox, oy) = ((ch % cols) * (w + 1), (ch / cols) * (h + 1));
            for y in 0..h {
                for x in 0..w {
                    let g = crate::image::to_byte(v[(ch * h + y) * w + x]);
                    let i = ((oy + y) * tw + ox + x) * 4;
                    rgba[i..i + 4].copy_from_slice(&[g, g, g, 255]);
                }
            }
        }
        Ok(Frame {
            index: 0,
            steps: 0,
            t: 0.0,
            t_next: 0.0,
            width: tw as u32,
            height: th as u32,
            x_t: Vec::new(),
            x0_hat: rgba,
            done: true,
        })
    }
}
