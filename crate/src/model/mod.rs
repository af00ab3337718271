//! The networks. One definition, used by the CLI, training, the tests and the browser.

pub mod baseline;
pub mod blocks;
pub mod decoder;
pub mod encoder;
pub mod macs;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub use baseline::BaselineDecoder;
pub use decoder::Decoder;
pub use encoder::Encoder;

use crate::config::ModelConfig;

/// The three parts a weight file can hold. A file holds the encoder and one or both decoders;
/// in the file, parts are stored in this order so a streaming reader completes the encoder first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Encoder,
    Decoder,
    Baseline,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Encoder, Part::Decoder, Part::Baseline];

    /// Prefix of this part's tensor names in a weight file.
    pub fn name(self) -> &'static str {
        match self {
            Part::Encoder => "encoder",
            Part::Decoder => "decoder",
            Part::Baseline => "baseline",
        }
    }

    pub fn of_tensor(name: &str) -> Option<Part> {
        let prefix = name.split('.').next()?;
        Part::ALL.into_iter().find(|p| p.name() == prefix)
    }
}

/// Encoder plus the ε-decoder and/or the VAE baseline decoder.
#[derive(Module, Debug)]
pub struct Autoencoder {
    pub encoder: Encoder,
    pub decoder: Option<Decoder>,
    pub baseline: Option<BaselineDecoder>,
}

impl Autoencoder {
    /// Builds the parts listed (the encoder always) with fresh initial weights.
    pub fn new(cfg: &ModelConfig, parts: &[Part], device: &Device) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("invalid model config: {e}");
        }
        Self {
            encoder: Encoder::new(&cfg.encoder, device),
            decoder: parts
                .contains(&Part::Decoder)
                .then(|| Decoder::new(&cfg.decoder, device)),
            baseline: parts
                .contains(&Part::Baseline)
                .then(|| BaselineDecoder::new(&cfg.baseline, device)),
        }
    }

    /// The parts this model holds, in file order.
    pub fn parts(&self) -> Vec<Part> {
        let mut p = vec![Part::Encoder];
        if self.decoder.is_some() {
            p.push(Part::Decoder);
        }
        if self.baseline.is_some() {
            p.push(Part::Baseline);
        }
        p
    }

    pub fn encode(&self, x: Tensor<4>) -> Tensor<4> {
        self.encoder.forward(x)
    }

    pub fn decoder(&self) -> &Decoder {
        self.decoder
            .as_ref()
            .expect("this model has no ε-decoder (a VAE baseline file?)")
    }

    pub fn baseline(&self) -> &BaselineDecoder {
        self.baseline
            .as_ref()
            .expect("this model has no baseline decoder (an ε-VAE file?)")
    }
}
