//! The model config a weight-file header carries (JSON). Whatever the text, parsing and
//! validation return a value or a named error; a config that validates builds a model whose
//! weight file round-trips (written as f32 and int8, read back with the same config), and a small
//! one runs: encode, one Euler step of the ε-decoder and the VAE baseline on an image of the
//! config's alignment. So every field a network divides, shifts, indexes or reshapes by is either
//! refused by `validate` or works.
#![no_main]

use epsvae::backend::{Backend, device};
use epsvae::config::ModelConfig;
use epsvae::image::Planar;
use epsvae::model::{Autoencoder, Part};
use epsvae::pipeline;
use epsvae::weights::{self, Provenance, Storage};
use libfuzzer_sys::fuzz_target;

/// Larger valid configs are only parsed and validated: building and running them would take
/// seconds per input.
const MAX_PARAMS: usize = 200_000;

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = serde_json::from_slice::<ModelConfig>(data) else {
        return;
    };
    if cfg.validate().is_err() {
        return;
    }
    let (f, align) = (cfg.downsample_factor(), cfg.alignment());
    assert!(
        f >= 1 && align >= f && align.is_multiple_of(f),
        "f {f}, alignment {align}"
    );
    let dev = device(Backend::Flex).expect("flex is built in");
    let parts = [Part::Encoder, Part::Decoder, Part::Baseline];
    // Parameters are lazy: only their shapes are read here.
    let shapes = weights::param_shapes(&Autoencoder::new(&cfg, &parts, &dev));
    let count: usize = shapes.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    if count > MAX_PARAMS || align > 64 {
        return;
    }
    let params: Vec<(String, Vec<usize>, Vec<f32>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product::<usize>();
            let v = (0..n).map(|i| ((i * 7919 % 200) as f32 - 100.0) * 1e-3).collect();
            (name, shape, v)
        })
        .collect();
    let [f32_file, int8_file] =
        [Storage::F32, Storage::Int8].map(|storage| weights::encode(&params, &cfg, &Provenance::default(), storage));
    for file in [&f32_file, &int8_file] {
        let (header, _) = weights::read(file).expect("a file written from a valid config reads");
        assert_eq!(header.config, cfg, "the config round-trips");
    }
    let (_, model) = weights::load(&f32_file, &dev).expect("and loads");
    let side = align;
    let rgba: Vec<u8> = (0..side * side * 4).map(|i| (i * 37 % 256) as u8).collect();
    let img = Planar::from_rgba(&rgba, side, side).expect("a valid image");
    let latent = pipeline::encode(&model, &cfg, &img, &dev);
    let out = pipeline::to_image(pipeline::decode(&model, &cfg, &latent, 1, 0, |_| {}), &latent);
    assert_eq!((out.width, out.height), (side, side));
    let base = pipeline::to_image(pipeline::decode_baseline(&model, &latent), &latent);
    assert_eq!((base.width, base.height), (side, side));
});
