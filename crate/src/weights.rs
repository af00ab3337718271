//! The weight file: one self-describing safetensors container per model.
//!
//! Layout: the standard safetensors header (read and validated by the `safetensors` crate, so any
//! Python user can open the file) whose `__metadata__` holds our header: `format` ("epsvae"),
//! `format_version`, the full `config`, `provenance`, the `storage` scheme and, per part (encoder,
//! ε-decoder, baseline), its byte range and SHA-256. Tensors are stored part by part in module
//! order, so a streaming reader completes the encoder first and a page can encode while the
//! decoder still downloads. Storage: f32, f16, or int8 with a per-output-channel symmetric scale
//! stored just before each quantised tensor as `NAME.scale` (f32). 1-D tensors (biases, norms)
//! stay f32 in every scheme.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ModelConfig;
use crate::model::{Autoencoder, Part};

pub const FORMAT: &str = "epsvae";
pub const FORMAT_VERSION: u32 = 1;
/// Largest header accepted; real headers are tens of kilobytes.
const MAX_HEADER: u64 = 16 << 20;
const SCALE_SUFFIX: &str = ".scale";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    F32,
    F16,
    Int8,
}

impl std::str::FromStr for Storage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Storage::F32),
            "f16" => Ok(Storage::F16),
            "int8" => Ok(Storage::Int8),
            _ => Err(format!("storage {s:?} is not one of f32, f16, int8")),
        }
    }
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
            Storage::Int8 => "int8",
        })
    }
}

/// Where the weights came from, stored in the file for people and model cards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// "initialised" (fixed-seed random weights) or "trained".
    pub origin: String,
    pub seed: Option<u64>,
    pub training_steps: u64,
    pub images_seen: u64,
    /// The training data, in words (or the manifest it was read from).
    pub data: String,
    pub note: String,
}

/// One part's byte range in the data section and the SHA-256 of those bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartInfo {
    pub part: Part,
    pub begin: usize,
    pub end: usize,
    pub sha256: String,
}

/// Our header, stored in the safetensors `__metadata__`.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub format_version: u32,
    pub config: ModelConfig,
    pub provenance: Provenance,
    pub storage: Storage,
    pub parts: Vec<PartInfo>,
}

impl Header {
    pub fn part_list(&self) -> Vec<Part> {
        self.parts.iter().map(|p| p.part).collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightError {
    #[error("weight file ends after {got} bytes; {expected} bytes were expected (truncated download?)")]
    Truncated { got: usize, expected: usize },
    #[error("weight file has {extra} bytes after its last tensor; expected exactly {expected} bytes")]
    TrailingBytes { extra: usize, expected: usize },
    #[error("not an epsvae weight file: {0}")]
    NotOurs(String),
    #[error("weight file format version {found}, this build reads version {expected}\n---> HINT: {hint}")]
    Version { found: String, expected: u32, hint: String },
    #[error("weight file header is invalid: {0}")]
    BadHeader(String),
    #[error("tensor {name}: {what}")]
    BadTensor { name: String, what: String },
    #[error("weight file is missing tensors the config needs: {0}")]
    Missing(String),
    #[error("weight file has tensors the config does not know: {0}")]
    Unknown(String),
    #[error("{part} bytes are corrupted: SHA-256 {found}, the header says {expected}")]
    Corrupt {
        part: String,
        found: String,
        expected: String,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------------------------
// Module <-> named host tensors

/// Calls `f(path, shape, value)` for every float parameter of `m` in module order, with its dotted
/// path and shape; `value()` reads it flattened (only then is a lazy parameter initialised).
pub fn visit_params<M: Module>(m: &M, f: impl FnMut(&str, &[usize], &dyn Fn() -> Tensor<1>)) {
    struct V<F> {
        path: Vec<String>,
        f: F,
    }
    impl<F: FnMut(&str, &[usize], &dyn Fn() -> Tensor<1>)> ModuleVisitor for V<F> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let shape = p.lazy_shape().to_vec();
            let n = shape.iter().product::<usize>();
            (self.f)(&self.path.join("."), &shape, &|| p.val().reshape([n]));
        }
    }
    m.visit(&mut V { path: vec![], f });
}

/// Rebuilds `m`'s float parameters: `f(path, shape)` returns `None` to keep a parameter, or a
/// function from its flattened value to the new flattened value.
pub fn map_params<M: Module, G: FnOnce(Tensor<1>) -> Tensor<1>>(m: M, f: impl FnMut(&str, &[usize]) -> Option<G>) -> M {
    struct P<F> {
        path: Vec<String>,
        f: F,
    }
    impl<G: FnOnce(Tensor<1>) -> Tensor<1>, F: FnMut(&str, &[usize]) -> Option<G>> ModuleMapper for P<F> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let shape = p.lazy_shape().to_vec();
            let Some(g) = (self.f)(&self.path.join("."), &shape) else {
                return p;
            };
            p.map(|old| {
                let dims = old.shape();
                g(old.reshape([dims.num_elements()])).reshape(dims)
            })
        }
    }
    m.map(&mut P { path: vec![], f })
}

/// Shapes of every parameter of `model`, by dotted path, in module order. Does not initialise
/// lazy parameters.
pub fn param_shapes(model: &Autoencoder) -> Vec<(String, Vec<usize>)> {
    let mut out = vec![];
    visit_params(model, |path, shape, _| out.push((path.to_string(), shape.to_vec())));
    out
}

/// Reads every parameter back to the host (native only: a synchronous read).
#[cfg(not(target_arch = "wasm32"))]
pub fn collect_params(model: &Autoencoder) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = vec![];
    visit_params(model, |path, shape, value| {
        let data = value().into_data().convert::<f32>();
        out.push((
            path.to_string(),
            shape.to_vec(),
            data.try_to_vec::<f32>().expect("f32 data"),
        ));
    });
    out
}

/// Host tensors by name: shape and f32 values.
pub type HostTensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Replaces the parameters named in `tensors` (others keep their values). Returns how many were
/// applied. Shapes were checked against the config when the header was read.
pub fn apply_params(model: Autoencoder, tensors: &HostTensors, device: &Device) -> (Autoencoder, usize) {
    let mut applied = 0;
    let model = map_params(model, |path, shape| {
        let (s, values) = tensors.get(path)?;
        assert_eq!(s.as_slice(), shape, "shape checked when the header was read");
        applied += 1;
        let t = Tensor::<1>::from_data(TensorData::new(values.clone(), [values.len()]), device);
        Some(move |_| t)
    });
    (model, applied)
}

/// What [`transplant`] did with the target's parameters.
#[derive(Debug, Default, PartialEq)]
pub struct Transplant {
    /// Same name and shape in the source: copied whole.
    pub copied: usize,
    /// Same name and rank, another shape: the overlapping leading block copied, the rest kept.
    pub partial: usize,
    /// No counterpart of the same rank: kept as initialised.
    pub fresh: usize,
}

/// Starts `model` from another model's weights (`source`, by parameter name): a parameter of the
/// same shape is copied; one of the same rank but another shape gets the leading block the two
/// share along every axis (e.g. the first 4 of 8 latent channels of a convolution), keeping its
/// own initial values elsewhere; the others keep their initial values. Used to start the f = 8
/// models from the f = 16 ones.
#[cfg(not(target_arch = "wasm32"))]
pub fn transplant(model: Autoencoder, source: &HostTensors, device: &Device) -> (Autoencoder, Transplant) {
    let mut report = Transplant::default();
    let model = map_params(model, |path, shape| {
        let Some((src_shape, src)) = source.get(path).filter(|(s, _)| s.len() == shape.len()) else {
            report.fresh += 1;
            return None;
        };
        let (src_shape, src, shape) = (src_shape.clone(), src.clone(), shape.to_vec());
        if src_shape == shape {
            report.copied += 1;
        } else {
            report.partial += 1;
        }
        let device = device.clone();
        Some(move |old: Tensor<1>| {
            if src_shape == shape {
                return Tensor::<1>::from_data(TensorData::new(src, [shape.iter().product::<usize>()]), &device);
            }
            let mut dst = old
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 parameter");
            let common: Vec<usize> = shape.iter().zip(&src_shape).map(|(a, b)| *a.min(b)).collect();
            let strides = |s: &[usize]| -> Vec<usize> {
                let mut st = vec![1; s.len()];
                for i in (0..s.len().saturating_sub(1)).rev() {
                    st[i] = st[i + 1] * s[i + 1];
                }
                st
            };
            let (sd, ss) = (strides(&shape), strides(&src_shape));
            for flat in 0..common.iter().product::<usize>() {
                let (mut rem, mut di, mut si) = (flat, 0, 0);
                for axis in (0..common.len()).rev() {
                    let i = rem % common[axis];
                    rem /= common[axis];
                    di += i * sd[axis];
                    si += i * ss[axis];
                }
                dst[di] = src[si];
            }
            let n = dst.len();
            Tensor::<1>::from_data(TensorData::new(dst, [n]), &device)
        })
    });
    (model, report)
}

// ---------------------------------------------------------------------------------------------
// Quantisation

/// Per-output-channel symmetric int8: scale_c = max|w_c| / 127, q = round(w / scale_c).
/// The reconstruction error of every value is at most scale_c / 2.
pub fn quantize_int8(shape: &[usize], values: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let rows = shape[0];
    let cols = values.len() / rows;
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(rows);
    for row in values.chunks(cols) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(scale);
        q.extend(row.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
    }
    (q, scales)
}

pub fn dequantize_int8(q: &[i8], scales: &[f32]) -> Vec<f32> {
    let cols = q.len() / scales.len().max(1);
    q.chunks(cols.max(1))
        .zip(scales)
        .flat_map(|(row, s)| row.iter().map(move |v| *v as f32 * s))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Serialises `model` with its config and provenance in the given storage scheme.
#[cfg(not(target_arch = "wasm32"))]
pub fn write(model: &Autoencoder, config: &ModelConfig, provenance: &Provenance, storage: Storage) -> Vec<u8> {
    let params = collect_params(model);
    encode(&params, config, provenance, storage)
}

/// Serialises named host tensors (in part order) into a weight file.
pub fn encode(
    params: &[(String, Vec<usize>, Vec<f32>)],
    config: &ModelConfig,
    provenance: &Provenance,
    storage: Storage,
) -> Vec<u8> {
    let mut infos: Vec<(String, TensorInfo)> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut parts: Vec<PartInfo> = Vec::new();
    let mut push = |name: String, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>, data: &mut Vec<u8>| {
        let begin = data.len();
        data.extend_from_slice(&bytes);
        infos.push((
            name,
            TensorInfo {
                dtype,
                shape,
                data_offsets: (begin, data.len()),
            },
        ));
    };
    for (name, shape, values) in params {
        let part = Part::of_tensor(name).unwrap_or_else(|| panic!("parameter {name} belongs to no part"));
        match parts.last_mut() {
            Some(p) if p.part == part => {}
            Some(p) if p.part > part => panic!("parameters are not in part order at {name}"),
            _ => parts.push(PartInfo {
                part,
                begin: data.len(),
                end: 0,
                sha256: String::new(),
            }),
        }
        match (storage, shape.len()) {
            (Storage::F32, _) | (_, 0 | 1) => {
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                push(name.clone(), Dtype::F32, shape.clone(), bytes, &mut data);
            }
            (Storage::F16, _) => {
                let bytes = values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect();
                push(name.clone(), Dtype::F16, shape.clone(), bytes, &mut data);
            }
            (Storage::Int8, _) => {
                let (q, scales) = quantize_int8(shape, values);
                let sb = scales.iter().flat_map(|v| v.to_le_bytes()).collect();
                push(
                    format!("{name}{SCALE_SUFFIX}"),
                    Dtype::F32,
                    vec![shape[0]],
                    sb,
                    &mut data,
                );
                push(
                    name.clone(),
                    Dtype::I8,
                    shape.clone(),
                    q.iter().map(|v| *v as u8).collect(),
                    &mut data,
                );
            }
        }
        parts.last_mut().expect("a part was pushed").end = data.len();
    }
    for p in &mut parts {
        p.sha256 = sha256_hex(&data[p.begin..p.end]);
    }
    let meta: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("format_version", FORMAT_VERSION.to_string()),
        ("config", serde_json::to_string(config).expect("config serialises")),
        (
            "provenance",
            serde_json::to_string(provenance).expect("provenance serialises"),
        ),
        ("storage", storage.to_string()),
        ("parts", serde_json::to_string(&parts).expect("parts serialise")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let metadata = Metadata::new(Some(meta), infos).expect("offsets are contiguous by construction");
    let mut header = serde_json::to_vec(&metadata).expect("metadata serialises");
    // The safetensors spec pads the header with spaces to a multiple of 8 bytes.
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    out
}

// ---------------------------------------------------------------------------------------------
// Reading: a streaming reader that takes chunks of any size

/// What the streaming reader reports as bytes arrive.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The header is complete and valid; `total` is the file size in bytes.
    Header { total: usize },
    /// A tensor's bytes are all here.
    Tensor(String),
    /// All of a part's bytes are here and match their SHA-256: its tensors can be applied.
    PartComplete(Part),
}

struct Entry {
    name: String,
    info: TensorInfo,
}

struct Parsed {
    header: Header,
    data_start: usize,
    entries: Vec<Entry>,
    expected: HashMap<String, Vec<usize>>,
}

/// Streaming reader: [`WeightStream::push`] takes any chunk (1 byte up to the whole file) and
/// returns what became available; [`WeightStream::take_part`] hands over a completed part's
/// tensors; [`WeightStream::finish`] checks the file ended where its header said.
#[derive(Default)]
pub struct WeightStream {
    buf: Vec<u8>,
    parsed: Option<Parsed>,
    next_entry: usize,
    next_part: usize,
    tensors: HostTensors,
    /// Int8 scales waiting for their tensor.
    scales: HashMap<String, Vec<f32>>,
}

impl WeightStream {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn header(&self) -> Option<&Header> {
        self.parsed.as_ref().map(|p| &p.header)
    }

    /// Bytes received so far.
    pub fn received(&self) -> usize {
        self.buf.len()
    }

    /// File size from the header, once it is known.
    pub fn total(&self) -> Option<usize> {
        self.parsed
            .as_ref()
            .map(|p| p.data_start + p.entries.last().map_or(0, |e| e.info.data_offsets.1))
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, WeightError> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        if self.parsed.is_none() {
            let Some(parsed) = parse_header(&self.buf)? else {
                return Ok(events);
            };
            self.parsed = Some(parsed);
            events.push(Event::Header {
                total: self.total().expect("parsed"),
            });
        }
        let p = self.parsed.as_ref().expect("parsed above");
        let avail = self.buf.len() - p.data_start;
        if let Some(total) = self.total()
            && self.buf.len() > total
        {
            return Err(WeightError::TrailingBytes {
                extra: self.buf.len() - total,
                expected: total,
            });
        }
        while let Some(e) = p.entries.get(self.next_entry) {
            let (b, end) = e.info.data_offsets;
            if end > avail {
                break;
            }
            let bytes = &self.buf[p.data_start + b..p.data_start + end];
            decode_entry(e, bytes, &p.expected, &mut self.scales, &mut self.tensors)?;
            if !e.name.ends_with(SCALE_SUFFIX) {
                events.push(Event::Tensor(e.name.clone()));
            }
            self.next_entry += 1;
        }
        while let Some(part) = p.header.parts.get(self.next_part) {
            if part.end > avail {
                break;
            }
            let found = sha256_hex(&self.buf[p.data_start + part.begin..p.data_start + part.end]);
            if found != part.sha256 {
                return Err(WeightError::Corrupt {
                    part: part.part.name().into(),
                    found,
                    expected: part.sha256.clone(),
                });
            }
            events.push(Event::PartComplete(part.part));
            self.next_part += 1;
        }
        Ok(events)
    }

    /// Removes and returns the tensors of a completed part.
    pub fn take_part(&mut self, part: Part) -> HostTensors {
        let names: Vec<String> = self
            .tensors
            .keys()
            .filter(|n| Part::of_tensor(n) == Some(part))
            .cloned()
            .collect();
        names
            .into_iter()
            .filter_map(|n| self.tensors.remove_entry(&n))
            .collect()
    }

    /// Checks that the whole file arrived; returns the header and every tensor not yet taken.
    pub fn finish(self) -> Result<(Header, HostTensors), WeightError> {
        let total = self.total();
        let Some(p) = self.parsed else {
            let expected = header_len(&self.buf).map_or(8, |n| n as usize + 8);
            return Err(WeightError::Truncated {
                got: self.buf.len(),
                expected,
            });
        };
        let total = total.expect("parsed");
        if self.buf.len() < total || self.next_part < p.header.parts.len() {
            return Err(WeightError::Truncated {
                got: self.buf.len(),
                expected: total,
            });
        }
        Ok((p.header, self.tensors))
    }
}

/// Reads a whole file at once (the streaming reader with one chunk).
pub fn read(bytes: &[u8]) -> Result<(Header, HostTensors), WeightError> {
    let mut s = WeightStream::new();
    s.push(bytes)?;
    s.finish()
}

/// Reads a whole file and builds the model it describes on `device`.
pub fn load(bytes: &[u8], device: &Device) -> Result<(Header, Autoencoder), WeightError> {
    let (header, tensors) = read(bytes)?;
    let model = Autoencoder::new(&header.config, &header.part_list(), device);
    let (model, _) = apply_params(model, &tensors, device);
    Ok((header, model))
}

/// Reads and loads a weight file: the header, the model, and the file's size in bytes.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_file(path: &std::path::Path, device: &Device) -> anyhow::Result<(Header, Autoencoder, usize)> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading weights {}\n---> HINT: run `epsvae init {}` for untrained weights, or pass --weights",
            path.display(),
            path.display()
        )
    })?;
    let (header, model) = load(&bytes, device).with_context(|| format!("loading weights {}", path.display()))?;
    Ok((header, model, bytes.len()))
}

fn header_len(buf: &[u8]) -> Option<u64> {
    buf.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn meta_field<'a>(meta: &'a HashMap<String, String>, key: &str) -> Result<&'a str, WeightError> {
    meta.get(key)
        .map(String::as_str)
        .ok_or_else(|| WeightError::BadHeader(format!("metadata has no {key:?} entry")))
}

/// Parses and validates the header once all its bytes are in `buf`; `Ok(None)` until then.
fn parse_header(buf: &[u8]) -> Result<Option<Parsed>, WeightError> {
    let Some(n) = header_len(buf) else { return Ok(None) };
    if !(2..=MAX_HEADER).contains(&n) {
        return Err(WeightError::NotOurs(format!(
            "the first 8 bytes give a header of {n} bytes, expected 2..{MAX_HEADER} (is this a safetensors file?)"
        )));
    }
    let data_start = 8 + n as usize;
    let Some(header_bytes) = buf.get(8..data_start) else {
        return Ok(None);
    };
    let metadata: Metadata = serde_json::from_slice(header_bytes)
        .map_err(|e| WeightError::NotOurs(format!("header is not safetensors JSON: {e}")))?;
    let meta = metadata
        .metadata()
        .as_ref()
        .ok_or_else(|| WeightError::NotOurs("the safetensors header has no __metadata__".into()))?;
    let format = meta_field(meta, "format").map_err(|_| {
        WeightError::NotOurs("the safetensors metadata has no \"format\" entry (expected \"epsvae\")".into())
    })?;
    if format != FORMAT {
        return Err(WeightError::NotOurs(format!(
            "format is {format:?}, expected {FORMAT:?}"
        )));
    }
    let version = meta_field(meta, "format_version")?;
    if version != FORMAT_VERSION.to_string() {
        return Err(WeightError::Version {
            found: version.to_string(),
            expected: FORMAT_VERSION,
            hint: "use weights and code from the same release, or re-export the weights with this build's \
                   `epsvae quantize`"
                .into(),
        });
    }
    let config: ModelConfig = serde_json::from_str(meta_field(meta, "config")?)
        .map_err(|e| WeightError::BadHeader(format!("config: {e}")))?;
    config
        .validate()
        .map_err(|e| WeightError::BadHeader(format!("config: {e}")))?;
    let provenance: Provenance = serde_json::from_str(meta_field(meta, "provenance")?)
        .map_err(|e| WeightError::BadHeader(format!("provenance: {e}")))?;
    let storage: Storage = meta_field(meta, "storage")?.parse().map_err(WeightError::BadHeader)?;
    let parts: Vec<PartInfo> =
        serde_json::from_str(meta_field(meta, "parts")?).map_err(|e| WeightError::BadHeader(format!("parts: {e}")))?;
    let header = Header {
        format_version: FORMAT_VERSION,
        config,
        provenance,
        storage,
        parts,
    };

    let part_list = header.part_list();
    if part_list.first() != Some(&Part::Encoder) || part_list.windows(2).any(|w| w[0] >= w[1]) {
        return Err(WeightError::BadHeader(format!(
            "parts are {part_list:?}; expected the encoder first, then decoder and/or baseline"
        )));
    }
    // The tensors the config implies, from the module itself (parameters are lazy: only their
    // shapes are read, nothing is allocated). Any device serves; the WebGPU module has no flex.
    #[cfg(feature = "cpu")]
    let device = Device::flex();
    #[cfg(not(feature = "cpu"))]
    let device = Device::default();
    let model = Autoencoder::new(&header.config, &part_list, &device);
    let expected: HashMap<String, Vec<usize>> = param_shapes(&model).into_iter().collect();

    let mut names = metadata.offset_keys();
    names.sort_by_key(|n| metadata.info(n).expect("listed").data_offsets);
    let entries: Vec<Entry> = names
        .into_iter()
        .map(|name| Entry {
            info: metadata.info(&name).expect("listed").clone(),
            name,
        })
        .collect();
    let stored: Vec<&str> = entries
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| !n.ends_with(SCALE_SUFFIX))
        .collect();
    let mut unknown: Vec<&str> = stored.iter().copied().filter(|n| !expected.contains_key(*n)).collect();
    let mut missing: Vec<&str> = expected
        .keys()
        .map(String::as_str)
        .filter(|n| !stored.contains(n))
        .collect();
    unknown.sort();
    missing.sort();
    if !missing.is_empty() {
        return Err(WeightError::Missing(list(&missing)));
    }
    if !unknown.is_empty() {
        return Err(WeightError::Unknown(list(&unknown)));
    }
    for e in &entries {
        let (shape, dtypes): (Vec<usize>, &[Dtype]) = match e.name.strip_suffix(SCALE_SUFFIX) {
            Some(base) => match expected.get(base) {
                Some(s) if storage == Storage::Int8 => (vec![s[0]], &[Dtype::F32]),
                _ => return Err(WeightError::Unknown(e.name.clone())),
            },
            None => {
                let s = expected[&e.name].clone();
                let d: &[Dtype] = match (storage, s.len()) {
                    (Storage::F32, _) | (_, 0 | 1) => &[Dtype::F32],
                    (Storage::F16, _) => &[Dtype::F16],
                    (Storage::Int8, _) => &[Dtype::I8],
                };
                (s, d)
            }
        };
        if e.info.shape != shape {
            return Err(WeightError::BadTensor {
                name: e.name.clone(),
                what: format!("shape {:?}, the config expects {:?}", e.info.shape, shape),
            });
        }
        if !dtypes.contains(&e.info.dtype) {
            return Err(WeightError::BadTensor {
                name: e.name.clone(),
                what: format!("dtype {:?}, {storage} storage expects {:?}", e.info.dtype, dtypes[0]),
            });
        }
    }
    // Each part's byte range must cover exactly its tensors, in order.
    let mut cursor = 0;
    for pi in &header.parts {
        if pi.sha256.len() != 64 || !pi.sha256.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(WeightError::BadHeader(format!(
                "part {} has sha256 {:?}, expected 64 lower-case hex digits",
                pi.part.name(),
                pi.sha256
            )));
        }
        let in_part: Vec<&Entry> = entries
            .iter()
            .filter(|e| Part::of_tensor(&e.name) == Some(pi.part))
            .collect();
        let (b, e) = (
            in_part.first().map(|e| e.info.data_offsets.0),
            in_part.last().map(|e| e.info.data_offsets.1),
        );
        if pi.begin != cursor || b != Some(pi.begin) || e != Some(pi.end) {
            return Err(WeightError::BadHeader(format!(
                "part {} claims bytes {}..{}, its tensors span {:?}..{:?}",
                pi.part.name(),
                pi.begin,
                pi.end,
                b,
                e
            )));
        }
        cursor = pi.end;
    }
    Ok(Some(Parsed {
        header,
        data_start,
        entries,
        expected,
    }))
}

fn list(names: &[&str]) -> String {
    const SHOWN: usize = 6;
    let mut s = names.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

fn decode_entry(
    e: &Entry,
    bytes: &[u8],
    expected: &HashMap<String, Vec<usize>>,
    scales: &mut HashMap<String, Vec<f32>>,
    out: &mut HostTensors,
) -> Result<(), WeightError> {
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect()
    };
    let values = match e.info.dtype {
        Dtype::F32 => f32s(bytes),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes(c.try_into().expect("2")).to_f32())
            .collect(),
        Dtype::I8 => {
            let s = scales.remove(&e.name).ok_or_else(|| WeightError::BadTensor {
                name: e.name.clone(),
                what: format!("int8 tensor stored before its scales {}{SCALE_SUFFIX}", e.name),
            })?;
            let q: Vec<i8> = bytes.iter().map(|b| *b as i8).collect();
            dequantize_int8(&q, &s)
        }
        d => unreachable!("dtype {d:?} was rejected when the header was read"),
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(WeightError::BadTensor {
            name: e.name.clone(),
            what: format!("value {i} is {}, expected a finite number", values[i]),
        });
    }
    if let Some(base) = e.name.strip_suffix(SCALE_SUFFIX) {
        scales.insert(base.to_string(), values);
    } else {
        out.insert(e.name.clone(), (expected[&e.name].clone(), values));
    }
    Ok(())
}

/// Summary lines of a header, for `epsvae inspect` and the page.
pub fn describe(header: &Header) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("format", format!("{FORMAT} v{}", header.format_version));
    m.insert("preset", header.config.preset.clone());
    m.insert("storage", header.storage.to_string());
    m.insert("origin", header.provenance.origin.clone());
    m.insert("training steps", header.provenance.training_steps.to_string());
    m.insert("images seen", header.provenance.images_seen.to_string());
    m.insert(
        "parts",
        header
            .parts
            .iter()
            .map(|p| p.part.name())
            .collect::<Vec<_>>()
            .join(", "),
    );
    m
}

/// One line of `weights/manifest.json`: what the page needs to fetch, verify and cache a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub file: String,
    pub bytes: usize,
    pub sha256: String,
    pub preset: String,
    pub storage: Storage,
    pub parts: Vec<Part>,
    pub origin: String,
}

/// Reads every `*.safetensors` in `dir` (each must be a valid weight file) and lists it.
#[cfg(not(target_arch = "wasm32"))]
pub fn manifest(dir: &std::path::Path) -> Result<Vec<ManifestEntry>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
            let (header, _) = read(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(ManifestEntry {
                file: p.file_name().expect("a file").to_string_lossy().into_owned(),
                bytes: bytes.len(),
                sha256: sha256_hex(&bytes),
                preset: header.config.preset.clone(),
                storage: header.storage,
                parts: header.part_list(),
                origin: header.provenance.origin.clone(),
            })
        })
        .collect()
}
