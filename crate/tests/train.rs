//! Training units: ST-LPIPS parity with the original implementation, the corpus crops, the losses.
#![cfg(feature = "train")]

use std::path::{Path, PathBuf};

/// burn's device RNG is global: a test that seeds it and then draws from it (initialisation, which
/// loading a weight file also runs first, and `Tensor::random`) would see other tests' draws when
/// they run in parallel, so its numbers would depend on the schedule (the discriminator test once
/// ended at 1.125 instead of 0.838 that way). Every test here takes this lock first.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

use burn::tensor::{Device, Tensor};
use epsvae::image::Planar;
use epsvae::train::lpips::StLpips;

fn lpips_path() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/lpips/alex_shift_tolerant.pth");
    assert!(
        p.exists(),
        "{} is missing: tools/setup.sh fetches it from the stlpips-pytorch wheel",
        p.display()
    );
    p
}

fn png(path: &Path) -> Tensor<4> {
    Planar::decode(&std::fs::read(path).unwrap())
        .unwrap()
        .to_tensor(&Device::flex())
}

#[test]
fn st_lpips_matches_the_reference_implementation_within_1e_3() {
    let _rng = serial();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lpips");
    let reference: std::collections::BTreeMap<String, f64> =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let net = StLpips::load(&lpips_path(), &Device::flex()).unwrap();
    assert!(reference.len() >= 5);
    for (name, want) in reference {
        let a = png(&dir.join(format!("{name}_a.png")));
        let b = png(&dir.join(format!("{name}_b.png")));
        let got = net
            .forward(a, b)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()[0] as f64;
        eprintln!("{name}: ST-LPIPS {got:.6}, reference {want:.6}");
        assert!((got - want).abs() < 1e-3, "{name}: ST-LPIPS {got}, reference {want}");
    }
}

#[test]
fn lpips_loader_rejects_a_file_that_is_not_a_checkpoint() {
    let _rng = serial();
    let p = std::env::temp_dir().join(format!("not-a-pth-{}", std::process::id()));
    std::fs::write(&p, b"hello").unwrap();
    assert!(StLpips::load(&p, &Device::flex()).is_err());
}

/// A corpus of a few synthetic photos in a temporary folder, in the layout tools/corpus.py writes.
fn synthetic_corpus(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("epsvae-corpus-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("train")).unwrap();
    std::fs::create_dir_all(dir.join("val")).unwrap();
    let mut records = Vec::new();
    for i in 0..4u32 {
        let split = if i == 3 { "val" } else { "train" };
        let img = image::RgbImage::from_fn(90 + 10 * i, 70, |x, y| {
            image::Rgb([(x * 3 + i * 40) as u8, (y * 3) as u8, ((x ^ y) * 5) as u8])
        });
        let file = format!("{split}/p{i}.png");
        img.save(dir.join(&file)).unwrap();
        records.push(serde_json::json!({"file": file, "split": split}));
    }
    // A near copy that tools/corpus.py dropped: listed, with no file.
    records.push(serde_json::json!({"file": null, "split": "dropped", "duplicate_of": "p0"}));
    std::fs::write(dir.join("manifest.json"), serde_json::to_string(&records).unwrap()).unwrap();
    dir
}

#[test]
fn corpus_crops_are_in_range_and_depend_only_on_the_seed() {
    let _rng = serial();
    use epsvae::train::data::Corpus;
    use rand_chacha::rand_core::SeedableRng;
    let dir = synthetic_corpus("crops");
    let c = Corpus::load(&dir, "train").unwrap();
    assert_eq!(c.images.len(), 3, "the validation photo is not in the training split");
    let a = c.batch(&mut rand_chacha::ChaCha8Rng::seed_from_u64(5), 4, 32);
    let b = c.batch(&mut rand_chacha::ChaCha8Rng::seed_from_u64(5), 4, 32);
    assert_eq!(a.len(), 4 * 3 * 32 * 32);
    assert_eq!(a, b);
    assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert_ne!(a, c.batch(&mut rand_chacha::ChaCha8Rng::seed_from_u64(6), 4, 32));
    let err = Corpus::load(&dir.join("nowhere"), "train")
        .err()
        .expect("a missing corpus is an error");
    assert!(format!("{err:#}").contains("tools/corpus.py"), "{err:#}");
}

#[test]
fn learning_rate_warms_up_holds_then_decays_to_zero() {
    let _rng = serial();
    use epsvae::train::trainer::{ModelKind, TrainConfig};
    let mut cfg = TrainConfig::new("small", ModelKind::Epsvae);
    (cfg.lr, cfg.warmup) = (2e-4, 100);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(cfg.lr_at(0), 2e-6) && close(cfg.lr_at(49), 1e-4) && close(cfg.lr_at(99), 2e-4));
    assert!(close(cfg.lr_at(1_000_000), 2e-4), "no decay unless asked");
    (cfg.decay_start, cfg.decay_end) = (1000, 1400);
    assert!(close(cfg.lr_at(999), 2e-4) && close(cfg.lr_at(1000), 2e-4));
    assert!(close(cfg.lr_at(1100), 1.5e-4) && close(cfg.lr_at(1300), 0.5e-4));
    assert!(close(cfg.lr_at(1400), 0.0) && close(cfg.lr_at(5000), 0.0));
    // A run resumed at step 2000 on a new schedule: re-warm over 2000..2100 then decay to 0 at 2400.
    (cfg.rewarm_start, cfg.rewarm_end, cfg.decay_start, cfg.decay_end) = (2000, 2100, 2000, 2400);
    assert!(
        close(cfg.lr_at(1999), 2e-4),
        "the ramp starts at rewarm_start, not before"
    );
    assert!(close(cfg.lr_at(2000), 2e-4 * 0.01 * 1.0) && close(cfg.lr_at(2049), 2e-4 * 0.5 * 0.8775));
    assert!(close(cfg.lr_at(2099), 2e-4 * 0.7525) && close(cfg.lr_at(2200), 1e-4) && close(cfg.lr_at(2400), 0.0));
    // A train.json written before the decay and the re-warm-up existed still reads, as a constant rate.
    let mut old = serde_json::to_value(TrainConfig::new("small", ModelKind::Vae)).unwrap();
    old.as_object_mut()
        .unwrap()
        .retain(|k, _| !k.starts_with("decay") && !k.starts_with("rewarm"));
    let old: TrainConfig = serde_json::from_value(old).unwrap();
    assert!(close(old.lr_at(10_000_000), old.lr));
}

#[test]
fn a_resumed_run_matches_an_uninterrupted_one() {
    let _rng = serial();
    use epsvae::train::data::Corpus;
    use epsvae::train::trainer::{ModelKind, TrainConfig, Trainer};
    let corpus = Corpus::load(&synthetic_corpus("resume"), "train").unwrap();
    for kind in [ModelKind::Epsvae, ModelKind::Vae] {
        let mut cfg = TrainConfig::new("tiny", kind);
        (cfg.batch, cfg.crop, cfg.adv_start, cfg.warmup) = (2, 32, 1, 2);
        let run = |name: &str| std::env::temp_dir().join(format!("epsvae-run-{name}-{kind:?}-{}", std::process::id()));
        let (straight, resumed) = (run("straight"), run("resumed"));
        let _ = std::fs::remove_dir_all(&straight);
        let _ = std::fs::remove_dir_all(&resumed);
        let mut a = Trainer::open(&straight, cfg.clone(), &lpips_path(), Device::flex()).unwrap();
        for _ in 0..4 {
            a.train_step(&corpus);
        }
        let mut b = Trainer::open(&resumed, cfg.clone(), &lpips_path(), Device::flex()).unwrap();
        for _ in 0..2 {
            b.train_step(&corpus);
        }
        b.checkpoint().unwrap();
        drop(b);
        // The run folder holds the numbered checkpoint and no empty legacy `ckpt` folder beside it.
        assert!(resumed.join("ckpt-2/state.json").exists());
        assert!(
            !resumed.join("ckpt").exists(),
            "{kind:?}: opening a run created an empty ckpt folder"
        );
        // The optimiser file keeps Adam's second moment only (β1 = 0: the first is never read).
        let optim = burn_pack::Reader::from_file(resumed.join("ckpt-2/optim_g.bin"))
            .unwrap()
            .into_tensors()
            .unwrap();
        assert!(optim.iter().any(|t| t.name.ends_with(".moment_2")));
        assert!(
            !optim.iter().any(|t| t.name.ends_with(".moment_1")),
            "{kind:?}: the first moment was stored"
        );
        let mut b = Trainer::open(&resumed, cfg.clone(), &lpips_path(), Device::flex()).unwrap();
        assert_eq!(b.state.step, 2);
        for _ in 0..2 {
            b.train_step(&corpus);
        }
        let wa = epsvae::weights::collect_params(a.ema());
        let wb = epsvae::weights::collect_params(b.ema());
        assert_eq!(wa.len(), wb.len());
        for ((n, _, x), (_, _, y)) in wa.iter().zip(&wb) {
            let d = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
            assert!(d < 1e-6, "{kind:?} {n} differs by {d} after resuming");
        }
        // And training moved the weights at all.
        let init = Trainer::open(&run("fresh"), cfg.clone(), &lpips_path(), Device::flex()).unwrap();
        let w0 = epsvae::weights::collect_params(init.ema());
        assert!(
            w0.iter().zip(&wa).any(|((_, _, x), (_, _, y))| x != y),
            "{kind:?}: four steps changed nothing"
        );
    }
}

#[test]
fn resuming_drops_the_log_rows_of_steps_after_the_checkpoint() {
    let _rng = serial();
    use epsvae::train::trainer::{TrimmedLog, trim_log};
    let header = || Some("step,images_seen,recon,val_psnr,val_lpips".to_string());
    let dir = std::env::temp_dir().join(format!("epsvae-trim-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log.csv");
    let _ = std::fs::remove_file(&log);
    // No log yet (a fresh run): nothing to do, and none is created.
    assert_eq!(
        trim_log(&log, 3).unwrap(),
        TrimmedLog {
            header: None,
            dropped: 0
        }
    );
    assert!(!log.exists());
    // A process killed at step 5 whose last checkpoint holds step 3: steps 4 and 5 are trained again.
    let rows: String = (1..=5).map(|s| format!("{s},{},0.5,,\n", 2 * s)).collect();
    std::fs::write(&log, format!("step,images_seen,recon,val_psnr,val_lpips\n{rows}")).unwrap();
    assert_eq!(
        trim_log(&log, 3).unwrap(),
        TrimmedLog {
            header: header(),
            dropped: 2
        }
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "step,images_seen,recon,val_psnr,val_lpips\n1,2,0.5,,\n2,4,0.5,,\n3,6,0.5,,\n"
    );
    // Resuming at or after the last row changes nothing.
    assert_eq!(
        trim_log(&log, 3).unwrap(),
        TrimmedLog {
            header: header(),
            dropped: 0
        }
    );
    assert_eq!(
        trim_log(&log, 9).unwrap(),
        TrimmedLog {
            header: header(),
            dropped: 0
        }
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 4);
    // A row whose step is not a number is refused, naming it, and the file is left as it was.
    std::fs::write(&log, "step,recon\n1,0.5\nx7,0.4\n").unwrap();
    let e = format!("{:#}", trim_log(&log, 0).unwrap_err());
    assert!(e.contains("\"x7\"") && e.contains("whole number"), "{e}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "step,recon\n1,0.5\nx7,0.4\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Data-parallel training (`train --devices`): a batch of 4 in 2 shards, the second on its own
/// thread with a fork of the generator, gives the gradients of the unsharded batch, for both
/// models and with both optional ε-VAE terms on (so every random draw of a step is sliced per
/// shard); three steps later the weights still agree. A shard that drew its own noise, a dropped
/// shard or a missing 1/2 on each shard's loss fails the gradient check by far more than its
/// bound. Adversarial runs and batches that do not split are refused by name.
#[test]
fn two_data_parallel_shards_give_the_gradients_and_update_of_one_device() {
    let _rng = serial();
    use epsvae::train::data::Corpus;
    use epsvae::train::trainer::{ModelKind, TrainConfig, Trainer};
    use rand_chacha::rand_core::SeedableRng;
    let corpus = Corpus::load(&synthetic_corpus("shards"), "train").unwrap();
    let dir = |name: &str| {
        let d = std::env::temp_dir().join(format!("epsvae-shards-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    };
    for kind in [ModelKind::Epsvae, ModelKind::Vae] {
        let mut cfg = TrainConfig::new("tiny", kind);
        (cfg.batch, cfg.crop, cfg.adv_start, cfg.warmup) = (4, 32, u64::MAX, 2);
        if kind == ModelKind::Epsvae {
            (cfg.x0_l1_weight, cfg.decode_weight, cfg.decode_steps) = (0.5, 0.5, 2);
        }
        let mut one = Trainer::open(&dir("one"), cfg.clone(), &lpips_path(), Device::flex()).unwrap();
        let mut two = Trainer::open(&dir("two"), cfg.clone(), &lpips_path(), Device::flex()).unwrap();
        two.set_devices(vec![Device::flex(); 2]).unwrap();
        assert_eq!((one.shard_count(), two.shard_count()), (1, 2));
        let x = corpus.batch(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3), 4, 32);
        let (ga, gb) = (one.generator_gradients(&x), two.generator_gradients(&x));
        assert_eq!(ga.len(), gb.len());
        let (mut worst, mut nonzero) = (0f32, 0);
        for (a, b) in ga.iter().zip(&gb) {
            assert_eq!(a.len(), b.len());
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            if scale > 0.0 {
                nonzero += 1;
                let d = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                worst = worst.max(d / scale);
            }
        }
        eprintln!(
            "{kind:?}: {nonzero} of {} gradients non-zero; sharded vs one device: worst {worst:.2e} of a parameter's largest",
            ga.len()
        );
        assert!(
            nonzero > ga.len() / 2,
            "{kind:?}: only {nonzero} of {} parameters got a gradient",
            ga.len()
        );
        assert!(
            worst < 1e-3,
            "{kind:?}: the sharded gradients differ by {worst} of a parameter's largest"
        );
        for step in 0..3 {
            let (la, lb) = (one.train_step(&corpus), two.train_step(&corpus));
            assert!(
                (la.recon - lb.recon).abs() <= 1e-4 * la.recon.abs()
                    && (la.lpips - lb.lpips).abs() <= 1e-4 * la.lpips.abs(),
                "{kind:?} step {step}: losses {la:?} vs {lb:?}"
            );
        }
        let (wa, wb) = (
            epsvae::weights::collect_params(one.ema()),
            epsvae::weights::collect_params(two.ema()),
        );
        let d = wa
            .iter()
            .zip(&wb)
            .flat_map(|((_, _, x), (_, _, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
            .fold(0f32, f32::max);
        eprintln!("{kind:?}: weights after 3 steps differ by at most {d:.2e}");
        assert!(d < 2e-5, "{kind:?}: after 3 steps the weights differ by {d}");
    }
    let mut cfg = TrainConfig::new("tiny", ModelKind::Epsvae);
    (cfg.batch, cfg.crop, cfg.adv_start) = (4, 32, 0);
    let mut adv = Trainer::open(&dir("adv"), cfg.clone(), &lpips_path(), Device::flex()).unwrap();
    let err = adv.set_devices(vec![Device::flex(); 2]).unwrap_err().to_string();
    assert!(err.contains("adversarial term") && err.contains("--adv-start"), "{err}");
    let err = adv.set_devices(vec![Device::flex(); 3]).unwrap_err().to_string();
    assert!(err.contains("--devices 3") && err.contains("batch of 4"), "{err}");
    assert!(
        adv.set_devices(vec![Device::flex()]).is_ok(),
        "one device is always fine"
    );
    for name in ["one", "two", "adv"] {
        let _ = std::fs::remove_dir_all(dir(name));
    }
}

/// One training step from fresh weights of the tiny ε-VAE on `corpus`, for each configuration
/// in `configs` makes of the base one: the step's losses and the EMA weights after it.
/// Every parameter of a model: name, shape, values.
type Params = Vec<(String, Vec<usize>, Vec<f32>)>;

fn one_step_each(
    corpus: &epsvae::train::data::Corpus,
    name: &str,
    configs: &[&dyn Fn(&mut epsvae::train::trainer::TrainConfig)],
) -> Vec<(epsvae::train::trainer::StepLosses, Params)> {
    use epsvae::train::trainer::{ModelKind, TrainConfig, Trainer};
    let mut cfg = TrainConfig::new("tiny", ModelKind::Epsvae);
    (cfg.batch, cfg.crop, cfg.adv_start, cfg.warmup) = (2, 32, 0, 2);
    configs
        .iter()
        .enumerate()
        .map(|(i, set)| {
            let dir = std::env::temp_dir().join(format!("epsvae-{name}-{i}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let mut c = cfg.clone();
            set(&mut c);
            let mut tr = Trainer::open(&dir, c, &lpips_path(), Device::flex()).unwrap();
            let l = tr.train_step(corpus);
            let out = (l, epsvae::weights::collect_params(tr.ema()));
            let _ = std::fs::remove_dir_all(&dir);
            out
        })
        .collect()
}

/// Whether any parameter differs between two weight lists.
fn any_differs(a: &[(String, Vec<usize>, Vec<f32>)], b: &[(String, Vec<usize>, Vec<f32>)]) -> bool {
    a.iter()
        .zip(b)
        .any(|((_, _, x), (_, _, y))| x.iter().zip(y).any(|(p, q)| p != q))
}

/// The ε-VAE's optional L1 on x̂0 (`x0_l1_weight`, 0 = the paper's objective): off, it is not
/// computed and the step is the paper's; on, the same forward pass (same score and ST-LPIPS) gets
/// an L1 that obeys |x̂0 − x0| = t·|v̂ − v|/γ ≤ |v̂ − v|/γ, and it changes the update.
#[test]
fn x0_l1_term_is_the_estimates_pixel_error_and_changes_the_update() {
    let _rng = serial();
    let corpus = epsvae::train::data::Corpus::load(&synthetic_corpus("x0l1"), "train").unwrap();
    let trained = one_step_each(&corpus, "x0l1", &[&|c| c.x0_l1_weight = 0.0, &|c| c.x0_l1_weight = 1.0]);
    let ((off, w_off), (on, w_on)) = (&trained[0], &trained[1]);
    eprintln!("off: {off:?}\non:  {on:?}");
    assert_eq!(off.x0_l1, 0.0, "weight 0 must leave the term out");
    assert!(
        (off.recon - on.recon).abs() <= 1e-6 * off.recon && (off.lpips - on.lpips).abs() <= 1e-6 * off.lpips,
        "the forward pass must not change"
    );
    let gamma = epsvae::config::ModelConfig::preset("tiny").unwrap().flow.gamma as f32;
    assert!(
        on.x0_l1 > 0.0 && on.x0_l1 <= on.recon.sqrt() / gamma * 1.0001,
        "L1 {} against the bound sqrt(score {})/γ",
        on.x0_l1,
        on.recon
    );
    assert!(any_differs(w_off, w_on), "the L1 term did not change the update");
}

/// The loss on the decode from noise (`decode_weight`, 0 = the paper's objective) scores what
/// `epsvae eval` scores: before any update (EMA = weights), the trainer's decode (frozen steps,
/// then the last one with gradients) is the sampler's output on the same latent and noise; off,
/// the term is not computed; on, the step's other losses are the same and the update differs, and
/// differs again without the term's L1 (`decode_l1_weight` 0).
#[test]
fn decode_loss_scores_the_samplers_output_and_changes_the_update() {
    let _rng = serial();
    use epsvae::flow::{self, Flow};
    use epsvae::train::data::Corpus;
    use epsvae::train::trainer::{ModelKind, TrainConfig, Trainer};
    use rand_chacha::rand_core::SeedableRng;
    let corpus = Corpus::load(&synthetic_corpus("decode"), "train").unwrap();
    let mut cfg = TrainConfig::new("tiny", ModelKind::Epsvae);
    (cfg.batch, cfg.crop, cfg.adv_start, cfg.warmup) = (2, 32, 0, 2);
    let run = |name: &str| std::env::temp_dir().join(format!("epsvae-decode-{name}-{}", std::process::id()));

    let dir = run("sampler");
    let _ = std::fs::remove_dir_all(&dir);
    let device = Device::flex();
    let tr = Trainer::open(&dir, cfg.clone(), &lpips_path(), device.clone()).unwrap();
    let x0 = corpus.batch(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3), 2, 32);
    let shape = [2, 3, 32, 32];
    let values = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let ours = values(tr.decode_from_noise_of(x0.clone(), 9).clamp(-1.0, 1.0));
    let ema = tr.ema();
    let z = ema.encode(Tensor::from_data(burn::tensor::TensorData::new(x0, shape), &device));
    let noise = flow::noise_tensor(9, shape, &device) * tr.model_cfg.flow.temperature();
    let reference = values(flow::sample(
        &Flow::new(&tr.model_cfg.flow),
        ema.decoder(),
        &z,
        noise,
        3,
        |_| {},
    ));
    let worst = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-4,
        "the trained decode differs from the sampler's by up to {worst}"
    );
    drop(tr);
    let _ = std::fs::remove_dir_all(&dir);

    let trained = one_step_each(
        &corpus,
        "decode",
        &[&|c| c.decode_weight = 0.0, &|c| c.decode_weight = 1.0, &|c| {
            (c.decode_weight, c.decode_l1_weight) = (1.0, 0.0)
        }],
    );
    let ((off, w_off), (on, w_on), (lpips_only, w_lpips_only)) = (&trained[0], &trained[1], &trained[2]);
    eprintln!("off: {off:?}\non:  {on:?}");
    assert_eq!(
        (off.decode_l1, off.decode_lpips),
        (0.0, 0.0),
        "weight 0 must leave the term out"
    );
    assert!(
        (off.recon - on.recon).abs() <= 1e-6 * off.recon && (off.lpips - on.lpips).abs() <= 1e-6 * off.lpips,
        "the paper's losses must not change"
    );
    assert!(on.decode_l1 > 0.0 && on.decode_lpips > 0.0, "{on:?}");
    assert!(any_differs(w_off, w_on), "the decode loss did not change the update");
    // Without its L1 (FlowMo's perceptual-only loss) the same decode is scored, by ST-LPIPS alone.
    assert_eq!(
        (lpips_only.decode_l1, lpips_only.decode_lpips),
        (on.decode_l1, on.decode_lpips),
        "the decode must not change"
    );
    assert!(
        any_differs(w_on, w_lpips_only) && any_differs(w_off, w_lpips_only),
        "the decode's L1 weight did not change the update"
    );
}

/// The libtorch backend (the `tch` feature, PyTorch's CPU kernels) trains the same Rust model as
/// flex: from one checkpoint, two steps with every loss on (score or L1, ST-LPIPS, adversarial with
/// R1) give the same losses and the same EMA weights. Only in builds with `tch`, which CI lacks (it
/// needs a PyTorch install); the README's "Training" section gives the command.
#[cfg(feature = "tch")]
#[test]
#[allow(deprecated)] // burn 0.22 marks its tch backend deprecated
fn two_training_steps_on_libtorch_match_flex() {
    let _rng = serial();
    use epsvae::train::data::Corpus;
    use epsvae::train::trainer::{ModelKind, TrainConfig, Trainer};
    let corpus = Corpus::load(&synthetic_corpus("tch"), "train").unwrap();
    for kind in [ModelKind::Epsvae, ModelKind::Vae] {
        let mut cfg = TrainConfig::new("tiny", kind);
        (cfg.batch, cfg.crop, cfg.adv_start, cfg.warmup) = (2, 32, 0, 2);
        let run = |name: &str| std::env::temp_dir().join(format!("epsvae-tch-{name}-{kind:?}-{}", std::process::id()));
        let (on_flex, on_tch) = (run("flex"), run("tch"));
        for d in [&on_flex, &on_tch] {
            let _ = std::fs::remove_dir_all(d);
        }
        // Both start from the weights flex initialised (the backends' random generators differ).
        Trainer::open(&on_flex, cfg.clone(), &lpips_path(), Device::flex())
            .unwrap()
            .checkpoint()
            .unwrap();
        std::fs::create_dir_all(on_tch.join("ckpt-0")).unwrap();
        for f in ["train.json", "model.json"] {
            std::fs::copy(on_flex.join(f), on_tch.join(f)).unwrap();
        }
        for f in std::fs::read_dir(on_flex.join("ckpt-0")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, on_tch.join("ckpt-0").join(f.file_name().unwrap())).unwrap();
        }
        let mut a = Trainer::open(&on_flex, cfg.clone(), &lpips_path(), Device::flex()).unwrap();
        let mut b = Trainer::open(&on_tch, cfg.clone(), &lpips_path(), Device::libtorch()).unwrap();
        for step in 0..2 {
            let (la, lb) = (a.train_step(&corpus), b.train_step(&corpus));
            eprintln!("{kind:?} step {step}: flex {la:?}\n{kind:?} step {step}: tch  {lb:?}");
            for (name, x, y, tol) in [
                ("recon", la.recon, lb.recon, 1e-4),
                ("lpips", la.lpips, lb.lpips, 1e-4),
                ("g_adv", la.g_adv, lb.g_adv, 1e-3),
                ("d_loss", la.d_loss, lb.d_loss, 1e-2),
            ] {
                assert!(
                    (x - y).abs() <= tol * x.abs().max(1e-3),
                    "{kind:?} step {step}: {name} {x} on flex, {y} on tch"
                );
            }
        }
        // Adam moves a weight by about lr per step whatever its gradient's size, so a weight whose
        // gradient is near zero may step either way on two backends: count those, bound the rest.
        let lr = cfg.lr * 2.0 / cfg.warmup as f64;
        let (wa, wb) = (
            epsvae::weights::collect_params(a.ema()),
            epsvae::weights::collect_params(b.ema()),
        );
        let (mut n, mut off, mut max) = (0usize, 0usize, 0f32);
        for ((name, _, x), (_, _, y)) in wa.iter().zip(&wb) {
            for (p, q) in x.iter().zip(y) {
                let d = (p - q).abs();
                assert!(d <= (4.0 * lr) as f32, "{kind:?} {name}: flex {p}, tch {q}");
                off += (d > (0.1 * lr) as f32) as usize;
                (n, max) = (n + 1, max.max(d));
            }
        }
        eprintln!("{kind:?}: {off} of {n} EMA weights differ by more than 0.1·lr; largest difference {max:e}");
        assert!(
            off * 1000 <= n,
            "{kind:?}: {off} of {n} weights differ by more than 0.1·lr"
        );
        for d in [&on_flex, &on_tch] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[cfg(feature = "tch")]
#[test]
#[allow(deprecated)] // burn 0.22 marks its tch backend deprecated
fn eval_on_libtorch_matches_flex() {
    let _rng = serial();
    // The shipped weights on two sample photos: the noise comes from the seed on the CPU, so the
    // two backends decode the same samples and their scores differ only by float rounding.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let photos = std::env::temp_dir().join(format!("epsvae-eval-tch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&photos);
    std::fs::create_dir_all(&photos).unwrap();
    for name in ["storm.jpg", "citrus.jpg"] {
        std::fs::copy(root.join("www/samples").join(name), photos.join(name)).unwrap();
    }
    let (eps, vae) = (
        root.join("weights/epsvae-small.safetensors"),
        root.join("weights/vae-small.safetensors"),
    );
    let run = |device: Device| {
        epsvae::train::eval::evaluate(
            &photos,
            64,
            &eps,
            Some(&vae),
            &[1, 3],
            1,
            &[],
            &[],
            &[],
            &lpips_path(),
            device,
        )
        .unwrap()
    };
    let (a, b) = (run(Device::flex()), run(Device::libtorch()));
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        eprintln!(
            "{}: flex {:.4} dB {:.5} {:.5}, tch {:.4} dB {:.5} {:.5}",
            x.decoder, x.psnr, x.ssim, x.st_lpips, y.psnr, y.ssim, y.st_lpips
        );
        assert_eq!(x.decoder, y.decoder);
        assert!(
            (x.psnr - y.psnr).abs() < 0.01 && (x.ssim - y.ssim).abs() < 1e-3 && (x.st_lpips - y.st_lpips).abs() < 1e-3,
            "{x:?} vs {y:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&photos);
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[0]
}

/// Textured crops in [-1, 1] (sums of random oriented stripes of 2-8 px period plus noise) and
/// their 3×3 box blur: the blur removes exactly the fine detail a decoder's fakes lack.
fn textured_and_blurred(seed: u64, b: usize, s: usize) -> (Vec<f32>, Vec<f32>) {
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use std::f32::consts::TAU;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut u = move || (rng.next_u32() as f64 / u32::MAX as f64) as f32;
    let mut real = vec![0f32; b * 3 * s * s];
    for img in 0..b {
        let waves: Vec<[f32; 5]> = (0..6)
            .map(|_| [u() * TAU, 0.8 + u() * 2.4, u() * TAU, u(), u()])
            .collect();
        for c in 0..3 {
            for y in 0..s {
                for x in 0..s {
                    let mut v = 0.0;
                    for [angle, freq, phase, amp, tint] in &waves {
                        let p = (x as f32 * angle.cos() + y as f32 * angle.sin()) * freq + phase;
                        v += amp * p.sin() * if c == 0 { 1.0 } else { *tint };
                    }
                    real[((img * 3 + c) * s + y) * s + x] = (v / 3.0 + (u() - 0.5) * 0.3).clamp(-1.0, 1.0);
                }
            }
        }
    }
    let mut blurred = vec![0f32; real.len()];
    for plane in 0..b * 3 {
        for y in 0..s {
            for x in 0..s {
                let (mut sum, mut n) = (0.0, 0.0);
                for dy in -1i64..=1 {
                    for dx in -1i64..=1 {
                        let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                        if (0..s as i64).contains(&yy) && (0..s as i64).contains(&xx) {
                            sum += real[(plane * s + yy as usize) * s + xx as usize];
                            n += 1.0;
                        }
                    }
                }
                blurred[(plane * s + y) * s + x] = sum / n;
            }
        }
    }
    (real, blurred)
}

/// Trains a fresh discriminator (paired: trajectory matching, conditioned on x_t and t; else an
/// unpaired image D) for 60 steps at rate 1e-3 on textured crops (real) against their blur (fake),
/// with R1 at the trainer's weight, and returns its GAN loss at the first step, then the GAN loss and
/// D(real) − D(fake) on held-out crops. When paired, real and fake share x_t = (1 − t)·γ·x0 + t·ε
/// built from the real crop, with t uniform in (0, 1), as in the trainer.
fn train_discriminator_on_blur(paired: bool) -> (f32, f32, f32) {
    use burn::module::Module;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::TensorData;
    use epsvae::train::disc::{Discriminator, discriminator_loss, r1_penalty};
    let dev = Device::flex().autodiff();
    dev.seed(7);
    // The trainer's own R1 weight and finite-difference step.
    let r1_weight = epsvae::train::trainer::TrainConfig::new("small", epsvae::train::trainer::ModelKind::Vae).r1_weight;
    let (b, s, sigma, gamma) = (4, 64, 0.01, 0.6);
    let tensor = |v: Vec<f32>, d: &Device| Tensor::<4>::from_data(TensorData::new(v, [b, 3, s, s]), d);
    let cond = |real: &Tensor<4>, seed: u64, d: &Device| {
        paired.then(|| {
            let t: Vec<f32> = (0..b)
                .map(|i| ((seed * 7 + i as u64) % 97) as f32 / 97.0 + 0.005)
                .collect();
            let tt = Tensor::<1>::from_data(TensorData::new(t, [b]), d);
            let eps = Tensor::<4>::random([b, 3, s, s], burn::tensor::Distribution::Normal(0.0, 1.0), d);
            let t4 = tt.clone().reshape([b, 1, 1, 1]);
            let x_t = real.clone() * (t4.clone().neg() + 1.0) * gamma + eps * t4;
            (x_t, tt * 1000.0)
        })
    };
    let mut d = Discriminator::new(paired, 8, &dev);
    let mut opt = AdamConfig::new().with_beta_1(0.0).with_beta_2(0.99).init();
    let mut first = None;
    for step in 0..60u64 {
        let (real, fake) = textured_and_blurred(step, b, s);
        let (real, fake) = (tensor(real, &dev), tensor(fake, &dev));
        let c = cond(&real, step, &dev);
        let noise = Tensor::<4>::random([b, 3, s, s], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let (dr, df) = (d.forward(real.clone(), c.clone()), d.forward(fake, c.clone()));
        let shifted = d.forward(real + noise * sigma, c);
        let gan = discriminator_loss(dr.clone(), df);
        first.get_or_insert_with(|| scalar(gan.clone()));
        let loss = gan + r1_penalty(dr, shifted, sigma) * (r1_weight / 2.0);
        let grads = GradientsParams::from_grads(loss.backward(), &d);
        d = opt.step(1e-3, d, grads);
    }
    let d = d.valid();
    let host = Device::flex();
    let (real, fake) = textured_and_blurred(1000, b, s);
    let real = tensor(real, &host);
    let c = cond(&real, 1000, &host);
    let (dr, df) = (d.forward(real, c.clone()), d.forward(tensor(fake, &host), c));
    let margin = scalar(dr.clone().mean() - df.clone().mean());
    (first.unwrap(), scalar(discriminator_loss(dr, df)), margin)
}

/// The adversarial term can only help when D learns: a fresh discriminator trained 60 steps on
/// textured crops (real) against their blur (fake), with R1 at the trainer's weight, must separate
/// held-out crops. Run with the penalties R1 had before (weight 10 on each image's sum of patch
/// logits, or on their mean) it stays at chance and this test fails.
#[test]
fn discriminator_learns_to_separate_real_from_blurred_crops() {
    let _rng = serial();
    let (first, gan, margin) = train_discriminator_on_blur(false);
    eprintln!("GAN loss {first:.3} at the first step, {gan:.3} on held-out crops; margin {margin:.3}");
    assert!(gan < 1.0, "held-out GAN loss {gan} is near chance (2 ln 2 = 1.386)");
    assert!(margin > 1.0, "D(real) − D(fake) = {margin} on held-out crops");
}

/// The same for the ε-VAE's trajectory-matching discriminator, which sees (x̂0, x_t, t): given the
/// noisy state built from the real crop, it must still tell the crop from its blur. With its x_t
/// inputs at random weights (before `disc.rs` zeroed them) it stayed at chance here (held-out GAN
/// loss 1.399, margin 0.008) as it did in training (d_loss 1.386, margin 0.003 after 320 steps).
#[test]
fn trajectory_matching_discriminator_learns_to_separate_real_from_blurred_crops() {
    let _rng = serial();
    let (first, gan, margin) = train_discriminator_on_blur(true);
    eprintln!("GAN loss {first:.3} at the first step, {gan:.3} on held-out crops; margin {margin:.3}");
    assert!(gan < 1.2, "held-out GAN loss {gan} is near chance (2 ln 2 = 1.386)");
    assert!(margin > 0.5, "D(real) − D(fake) = {margin} on held-out crops");
}

/// R1 is the mean over patches of each patch logit's squared gradient, as the GAN loss is a mean
/// over patches: the same per-patch change gives the same penalty whatever the number of patches
/// (a penalty on the sum of the logits grew with the square of their number).
#[test]
fn r1_penalty_does_not_grow_with_the_patch_count() {
    let _rng = serial();
    use epsvae::train::disc::r1_penalty;
    let dev = Device::flex();
    let pen = |p: usize| {
        let real = Tensor::<4>::zeros([2, 1, p, p], &dev);
        let shifted = Tensor::<4>::full([2, 1, p, p], 0.003, &dev);
        scalar(r1_penalty(real, shifted, 0.01))
    };
    let (small, large) = (pen(4), pen(32));
    assert!(
        (small - 0.09).abs() < 1e-4,
        "penalty {small}, expected (0.003 / 0.01)² = 0.09"
    );
    assert!(
        (large - small).abs() < 1e-5,
        "4×4 patches: {small}, 32×32 patches: {large}"
    );
}

/// Quality regression on the shipped files: three 256² crops of test-split photos
/// (`tests/data/quality`, credits beside them) decoded natively as `epsvae eval` does (3 steps,
/// seed 0, each file's own temperature). Mean PSNR must stay within 0.3 dB and mean ST-LPIPS
/// within 5% of the figures measured when the files shipped (both 2026-12-07, with their output
/// notch), so a change to the flow, the model, the weight reader or the weights that breaks
/// decoding fails CI.
/// The figures of `shipped_weights_keep_their_quality_on_three_test_crops` when the files shipped:
/// [ε-VAE PSNR, ε-VAE ST-LPIPS, VAE PSNR, VAE ST-LPIPS].
const QUALITY_F16: [f64; 4] = [19.210, 0.0739, 19.662, 0.1546];
const QUALITY_F8: [f64; 4] = [20.907, 0.0365, 21.751, 0.0482];

#[test]
fn shipped_weights_keep_their_quality_on_three_test_crops() {
    let _rng = serial();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/data/quality");
    // (ε-VAE file, VAE file, [ε-VAE PSNR, ε-VAE ST-LPIPS, VAE PSNR, VAE ST-LPIPS]).
    let shipped: [(&str, &str, [f64; 4]); 2] = [
        ("epsvae-small", "vae-small", QUALITY_F16),
        ("epsvae-small-f8", "vae-small-f8", QUALITY_F8),
    ];
    for (eps, vae, want) in shipped {
        let w = |n: &str| root.join(format!("../weights/{n}.safetensors"));
        let rows = epsvae::train::eval::evaluate(
            &dir,
            256,
            &w(eps),
            Some(&w(vae)),
            &[3],
            1,
            &[],
            &[],
            &[],
            &lpips_path(),
            Device::flex(),
        )
        .unwrap();
        let (v, e) = (&rows[0], &rows[1]);
        assert_eq!((v.steps, e.steps, e.images), (None, Some(3), 3));
        let got = [e.psnr, e.st_lpips, v.psnr, v.st_lpips];
        eprintln!(
            "{eps} / {vae}: ε-VAE {:.3} dB, ST-LPIPS {:.4}; VAE {:.3} dB, {:.4}",
            got[0], got[1], got[2], got[3]
        );
        for (i, what) in ["ε-VAE PSNR", "ε-VAE ST-LPIPS", "VAE PSNR", "VAE ST-LPIPS"]
            .iter()
            .enumerate()
        {
            let ok = if i % 2 == 0 {
                (got[i] - want[i]).abs() <= 0.3
            } else {
                (got[i] / want[i] - 1.0).abs() <= 0.05
            };
            assert!(ok, "{eps}/{vae}: {what} {:.4}, shipped at {:.4}", got[i], want[i]);
        }
    }
}
