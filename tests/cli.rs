//! End-to-end checks of the `epsvae` command-line tool, run as a person would run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../crate/tests/support/catalogue.rs"]
mod catalogue;

fn epsvae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_epsvae"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("epsvae-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/samples/storm.jpg")
}

#[test]
fn reconstruct_writes_the_image_every_frame_and_timings() {
    let d = scratch("rec");
    let w = d.join("tiny.safetensors");
    let o = epsvae(&["init", w.to_str().unwrap(), "--preset", "tiny", "--seed", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = d.join("out.png");
    let base = d.join("vae.png");
    let frames = d.join("frames");
    let o = epsvae(&[
        "reconstruct",
        sample().to_str().unwrap(),
        out.to_str().unwrap(),
        "--steps",
        "2",
        "--size",
        "70x45",
        "--weights",
        w.to_str().unwrap(),
        "--frames",
        frames.to_str().unwrap(),
        "--baseline",
        base.to_str().unwrap(),
    ]);
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    for stage in [
        "load ",
        "encode 70x45",
        "step 1/2",
        "step 2/2",
        "baseline decode",
        "total",
    ] {
        assert!(log.contains(stage), "missing timing {stage:?} in:\n{log}");
    }
    // Sizes that are not multiples of f come back at their own size.
    for p in [out, base, frames.join("step1_xt.png"), frames.join("step2_x0hat.png")] {
        let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!((img.width(), img.height()), (70, 45), "{}", p.display());
    }
}

#[test]
fn inspect_reports_counts_costs_and_hash() {
    let o = epsvae(&[
        "inspect",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../weights/epsvae-small.safetensors")
            .to_str()
            .unwrap(),
    ]);
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    for key in [
        "preset      small",
        "storage     int8",
        "sha256",
        "GMAC per step at 256x256",
        "f, n_z      16, 8",
    ] {
        assert!(log.contains(key), "missing {key:?} in:\n{log}");
    }
}

#[test]
fn quantize_makes_smaller_valid_files() {
    let d = scratch("quant");
    let w = d.join("f32.safetensors");
    assert!(
        epsvae(&["init", w.to_str().unwrap(), "--preset", "tiny"])
            .status
            .success()
    );
    let mut sizes = vec![std::fs::metadata(&w).unwrap().len()];
    for to in ["f16", "int8"] {
        let q = d.join(format!("{to}.safetensors"));
        let o = epsvae(&["quantize", w.to_str().unwrap(), q.to_str().unwrap(), "--to", to]);
        assert!(o.status.success(), "{}", text(&o));
        let o = epsvae(&["inspect", q.to_str().unwrap()]);
        assert!(text(&o).contains(&format!("storage     {to}")), "{}", text(&o));
        sizes.push(std::fs::metadata(&q).unwrap().len());
    }
    assert!(sizes[0] > sizes[1] && sizes[1] > sizes[2], "{sizes:?}");

    // int8 to int8 with the baseline's output notch turned on: the header says so, and every
    // tensor is the same (per-channel symmetric int8 maps its own values back onto themselves).
    let (a, b) = (d.join("int8.safetensors"), d.join("int8-aa.safetensors"));
    let o = epsvae(&[
        "quantize",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--to",
        "int8",
        "--anti-alias",
        "true",
    ]);
    assert!(o.status.success() && !text(&o).contains("compounds"), "{}", text(&o));
    let (ha, ta) = epsvae::weights::read(&std::fs::read(&a).unwrap()).unwrap();
    let (hb, tb) = epsvae::weights::read(&std::fs::read(&b).unwrap()).unwrap();
    assert_eq!(
        (ha.config.baseline.anti_alias, hb.config.baseline.anti_alias),
        (None, Some(true))
    );
    assert_eq!(ta.len(), tb.len());
    for (name, (shape, v)) in &ta {
        let (shape_b, w) = &tb[name];
        assert_eq!(shape, shape_b);
        let worst = v
            .iter()
            .zip(w)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1e-6))
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{name}: relative change {worst}");
    }
}

#[test]
fn temperature_from_the_flag_or_the_file_header_gives_the_same_decode() {
    let d = scratch("temp");
    let w = d.join("f32.safetensors");
    assert!(
        epsvae(&["init", w.to_str().unwrap(), "--preset", "tiny", "--seed", "4"])
            .status
            .success()
    );
    // A copy whose header makes τ = 0.5 its default.
    let cool = d.join("cool.safetensors");
    let o = epsvae(&[
        "quantize",
        w.to_str().unwrap(),
        cool.to_str().unwrap(),
        "--to",
        "f32",
        "--temperature",
        "0.5",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let decode = |weights: &Path, extra: &[&str], name: &str| {
        let out = d.join(name);
        let input = sample();
        let mut args = vec![
            "reconstruct",
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "--size",
            "48x32",
            "--weights",
            weights.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = epsvae(&args);
        assert!(o.status.success(), "{}", text(&o));
        image::open(&out).unwrap().to_rgb8().into_raw()
    };
    let paper = decode(&w, &[], "paper.png");
    let flag = decode(&w, &["--temperature", "0.5"], "flag.png");
    let file = decode(&cool, &[], "file.png");
    assert_eq!(
        flag, file,
        "--temperature 0.5 and a file whose default is 0.5 decode alike"
    );
    assert_ne!(paper, flag, "τ = 0.5 decodes differently from τ = 1");
    assert_eq!(
        decode(&cool, &["--temperature", "1"], "back.png"),
        paper,
        "the flag overrides the file's default"
    );
    for bad in [
        [
            "quantize",
            w.to_str().unwrap(),
            d.join("x.safetensors").to_str().unwrap(),
            "--to",
            "f32",
            "--temperature",
            "3",
        ]
        .as_slice(),
        [
            "reconstruct",
            sample().to_str().unwrap(),
            d.join("x.png").to_str().unwrap(),
            "--weights",
            w.to_str().unwrap(),
            "--temperature",
            "3",
        ]
        .as_slice(),
    ] {
        let o = epsvae(bad);
        assert!(
            !o.status.success() && text(&o).contains("--temperature 3: expected a number in [0, 2]"),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn reconstruct_decodes_the_baseline_from_its_own_file() {
    // The shipped ε-VAE file has no baseline decoder: --baseline takes the VAE's file (its own
    // encoder and decoder). The shipped VAE reconstructs this crop at 23.7 dB; 18 dB leaves room
    // for retrained weights.
    let d = scratch("rec-vae");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (eps, vae) = (
        root.join("weights/epsvae-small.safetensors"),
        root.join("weights/vae-small.safetensors"),
    );
    let (out, base) = (d.join("out.png"), d.join("vae.png"));
    let o = epsvae(&[
        "reconstruct",
        sample().to_str().unwrap(),
        out.to_str().unwrap(),
        "--size",
        "96x64",
        "--steps",
        "1",
        "--weights",
        eps.to_str().unwrap(),
        "--baseline",
        base.to_str().unwrap(),
        "--baseline-weights",
        vae.to_str().unwrap(),
    ]);
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.starts_with("baseline decode"))
        .unwrap_or_else(|| panic!("no baseline line in:\n{log}"));
    let db: f64 = line
        .split("PSNR ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(db > 18.0, "the VAE baseline reconstructs at only {db} dB: {line}");
    assert_eq!(image::open(&base).unwrap().width(), 96);

    // A baseline file without a baseline decoder fails before anything is decoded or written.
    let out2 = d.join("out2.png");
    let o = epsvae(&[
        "reconstruct",
        sample().to_str().unwrap(),
        out2.to_str().unwrap(),
        "--size",
        "96x64",
        "--weights",
        eps.to_str().unwrap(),
        "--baseline",
        base.to_str().unwrap(),
        "--baseline-weights",
        eps.to_str().unwrap(),
    ]);
    let log = text(&o);
    assert!(
        !o.status.success() && log.contains("--baseline-weights") && log.contains("has no baseline decoder"),
        "{log}"
    );
    assert!(!out2.exists() && !log.contains("step 1/"), "{log}");

    // The VAE's own file as --weights: its one-pass decoder writes OUTPUT, the same image as
    // --baseline gave above (it once panicked: "this model has no ε-decoder").
    let out3 = d.join("out3.png");
    let input = sample();
    let args = [
        input.to_str().unwrap(),
        out3.to_str().unwrap(),
        "--size",
        "96x64",
        "--weights",
    ];
    let o = epsvae(&[&["reconstruct"], &args[..], &[vae.to_str().unwrap()]].concat());
    let log = text(&o);
    assert!(
        o.status.success() && log.contains("has no ε-decoder: decoded with its VAE baseline"),
        "{log}"
    );
    assert_eq!(
        image::open(&out3).unwrap().to_rgba8(),
        image::open(&base).unwrap().to_rgba8()
    );
    let o = epsvae(
        &[
            &["reconstruct"],
            &args[..],
            &[vae.to_str().unwrap(), "--frames", "/tmp/f"],
        ]
        .concat(),
    );
    assert!(
        !o.status.success() && text(&o).contains("holds the VAE baseline only"),
        "{}",
        text(&o)
    );
}

#[test]
fn bad_inputs_fail_with_a_clear_message() {
    let d = scratch("bad");
    let not_image = d.join("notes.png");
    std::fs::write(&not_image, b"these are notes, not pixels").unwrap();
    let w = d.join("tiny.safetensors");
    assert!(
        epsvae(&["init", w.to_str().unwrap(), "--preset", "tiny"])
            .status
            .success()
    );
    let o = epsvae(&[
        "reconstruct",
        not_image.to_str().unwrap(),
        d.join("o.png").to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("could not decode the image"), "{}", text(&o));

    let bytes = std::fs::read(&w).unwrap();
    let cut = d.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = epsvae(&[
        "reconstruct",
        sample().to_str().unwrap(),
        d.join("o.png").to_str().unwrap(),
        "--weights",
        cut.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("truncated"), "{}", text(&o));

    let o = epsvae(&["reconstruct", sample().to_str().unwrap(), "o.png", "--size", "0x10"]);
    assert!(
        !o.status.success() && text(&o).contains("width and height must be integers in 1..=8192"),
        "{}",
        text(&o)
    );
    let o = epsvae(&[
        "reconstruct",
        sample().to_str().unwrap(),
        "o.png",
        "--weights",
        "/nonexistent.safetensors",
    ]);
    assert!(!o.status.success() && text(&o).contains("HINT"), "{}", text(&o));

    // A cost side the model cannot take (tiny pads to multiples of its alignment): named, no panic.
    let o = epsvae(&["inspect", w.to_str().unwrap(), "--size", "102"]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("--size 102") && t.contains("multiple of"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}

#[cfg(feature = "train")]
#[test]
fn train_rejects_a_bad_or_exhausted_learning_rate_schedule() {
    let run = scratch("decay").join("run");
    let run = run.to_str().unwrap();
    let o = epsvae(&["train", "--run", run, "--steps", "10", "--decay", "5:3"]);
    assert!(
        !o.status.success() && text(&o).contains("decay \"5:3\" is not START:END"),
        "{}",
        text(&o)
    );
    let o = epsvae(&["train", "--run", run, "--steps", "10", "--rewarm", "7"]);
    assert!(
        !o.status.success() && text(&o).contains("rewarm \"7\" is not START:END"),
        "{}",
        text(&o)
    );
    // Training past the decay's end would run at rate 0: refused before any data is read.
    let o = epsvae(&["train", "--run", run, "--steps", "10", "--decay", "2:5"]);
    assert!(
        !o.status.success()
            && text(&o).contains("--steps 10 goes past the end of the run's learning-rate decay (rate 0 from step 5)"),
        "{}",
        text(&o)
    );
}

#[cfg(feature = "train")]
#[test]
fn train_rejects_bad_loss_weights_and_ema_decays() {
    let run = scratch("x0l1").join("run");
    let run = run.to_str().unwrap();
    for (args, want) in [
        (
            &["--x0-l1", "-0.5"][..],
            "--x0-l1 -0.5: expected a finite weight of 0 or more",
        ),
        (
            &["--x0-l1", "NaN"][..],
            "--x0-l1 NaN: expected a finite weight of 0 or more",
        ),
        (
            &["--x0-l1", "0.5", "--model", "vae"][..],
            "--x0-l1 0.5: only the epsvae model has a one-step estimate",
        ),
        (
            &["--decode-loss", "-1"][..],
            "--decode-loss -1: expected a finite weight of 0 or more",
        ),
        (
            &["--decode-loss", "inf"][..],
            "--decode-loss inf: expected a finite weight of 0 or more",
        ),
        (
            &["--decode-loss", "1", "--model", "vae"][..],
            "--decode-loss 1: only the epsvae model decodes from noise",
        ),
        (
            &["--decode-l1", "-1"][..],
            "--decode-l1 -1: expected a finite weight of 0 or more",
        ),
        (
            &["--decode-l1", "0.5", "--model", "vae"][..],
            "--decode-l1 0.5: only the epsvae model decodes from noise",
        ),
        (
            &["--decode-steps", "0"][..],
            "--decode-steps 0: expected 1 to 8 Euler steps",
        ),
        (&["--ema", "1"][..], "--ema 1: expected a decay between 0 and 1"),
        (&["--ema", "0"][..], "--ema 0: expected a decay between 0 and 1"),
    ] {
        let o = epsvae(&[&["train", "--run", run, "--steps", "10"][..], args].concat());
        assert!(!o.status.success() && text(&o).contains(want), "{args:?}: {}", text(&o));
    }
    assert!(
        !std::path::Path::new(run).exists(),
        "a refused run must not create its folder"
    );
}

#[cfg(feature = "train")]
#[test]
fn eval_scores_both_decoders_per_grid_and_the_mean_of_seeds() {
    let d = scratch("eval");
    let w = d.join("tiny.safetensors");
    assert!(
        epsvae(&["init", w.to_str().unwrap(), "--preset", "tiny", "--seed", "5"])
            .status
            .success()
    );
    let photos = d.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in ["storm.jpg", "citrus.jpg"] {
        std::fs::copy(sample().with_file_name(name), photos.join(name)).unwrap();
    }
    std::fs::write(photos.join("notes.txt"), b"not an image: skipped by extension").unwrap();
    let lpips = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/lpips/alex_shift_tolerant.pth");
    let json = d.join("rows.json");
    let (w, p, l, j) = (
        w.to_str().unwrap(),
        photos.to_str().unwrap(),
        lpips.to_str().unwrap(),
        json.to_str().unwrap(),
    );
    let o = epsvae(&[
        "eval",
        "--data",
        p,
        "--size",
        "32",
        "--steps",
        "1,2",
        "--seeds",
        "2",
        "--grid-base",
        "1,100",
        "--weights",
        w,
        "--baseline",
        w,
        "--lpips",
        l,
        "--json",
        j,
    ]);
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    for row in [
        "| VAE |",
        "| ε-VAE 2 steps, grid n = 1 |",
        "| ε-VAE 2 steps, grid n = 100, mean image of 2 seeds |",
    ] {
        assert!(log.contains(row), "missing {row:?} in:\n{log}");
    }
    let rows: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The VAE, then per grid and step count a row and its mean-of-seeds row.
    assert_eq!(rows.len(), 1 + 2 * 2 * 2, "{rows:#?}");
    for r in &rows {
        assert_eq!(r["images"], 2, "{r}");
        let (psnr, ssim, lp) = (
            r["psnr"].as_f64().unwrap(),
            r["ssim"].as_f64().unwrap(),
            r["st_lpips"].as_f64().unwrap(),
        );
        assert!(
            psnr.is_finite() && psnr > 0.0 && (-1.0..=1.0).contains(&ssim) && lp >= 0.0,
            "{r}"
        );
    }
    let find = |name: &str| {
        rows.iter()
            .find(|r| r["decoder"] == name)
            .unwrap_or_else(|| panic!("no row {name:?}"))
    };
    // One step runs from t = 1 to 0 whatever the base; two steps do not.
    assert_eq!(
        find("ε-VAE 1 step, grid n = 1")["psnr"],
        find("ε-VAE 1 step, grid n = 100")["psnr"]
    );
    assert_ne!(
        find("ε-VAE 2 steps, grid n = 1")["psnr"],
        find("ε-VAE 2 steps, grid n = 100")["psnr"]
    );
    assert_eq!(
        find("ε-VAE 2 steps, grid n = 1, mean image of 2 seeds")["seed_mean"],
        true
    );

    let o = epsvae(&[
        "eval",
        "--data",
        p,
        "--size",
        "32",
        "--weights",
        w,
        "--lpips",
        l,
        "--grid-base",
        "0.5",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("grid base 0.5: expected a number ≥ 1"),
        "{}",
        text(&o)
    );
    let o = epsvae(&["eval", "--data", p, "--size", "0", "--weights", w, "--lpips", l]);
    assert!(
        !o.status.success() && text(&o).contains("--size 0: the crop side must lie in 16..=4096"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_server_serves_only_the_site_with_browser_mime_types() {
    use epsvae::serve::{mime, resolve};
    let root = scratch("site");
    std::fs::write(root.join("index.html"), "<!doctype html>").unwrap();
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::write(root.join("pkg/m.wasm"), [0, 97, 115, 109]).unwrap();
    std::fs::write(root.parent().unwrap().join("secret.txt"), "outside").unwrap();
    assert_eq!(
        resolve(&root, "/").unwrap(),
        root.join("index.html").canonicalize().unwrap()
    );
    assert!(resolve(&root, "/pkg/m.wasm?v=1#x").is_some());
    for bad in [
        "/../secret.txt",
        "/pkg/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/missing.js",
    ] {
        assert!(resolve(&root, bad).is_none(), "{bad} must not be served");
    }
    assert_eq!(mime(std::path::Path::new("a.wasm")), "application/wasm");
    assert_eq!(mime(std::path::Path::new("a.js")), "text/javascript; charset=utf-8");
}

/// The command-line rows of SECURITY.md's catalogue: each bad argument or file, run as a person
/// would, fails (no panic) with what SECURITY.md gives (its lines joined by spaces).
#[test]
fn security_catalogue_command_line() {
    let d = scratch("catalogue");
    let w = d.join("tiny.safetensors");
    assert!(
        epsvae(&["init", w.to_str().unwrap(), "--preset", "tiny"])
            .status
            .success()
    );
    let w = w.to_str().unwrap();
    let notes = d.join("notes.png");
    std::fs::write(&notes, b"these are notes, not pixels").unwrap();
    let cut = d.join("cut.safetensors");
    std::fs::write(&cut, &std::fs::read(w).unwrap()[..1000]).unwrap();
    let (s, out) = (sample(), d.join("o.png"));
    let (s, out, notes, cut) = (
        s.to_str().unwrap(),
        out.to_str().unwrap(),
        notes.to_str().unwrap(),
        cut.to_str().unwrap(),
    );
    let cases: [(&str, Vec<&str>); 10] = [
        ("C1", vec!["reconstruct", s, out, "--size", "0x10"]),
        ("C2", vec!["reconstruct", s, out, "--steps", "0", "--weights", w]),
        ("C3", vec!["reconstruct", s, out, "--temperature=-1", "--weights", w]),
        ("C4", vec!["reconstruct", notes, out, "--weights", w]),
        ("C5", vec!["reconstruct", s, out, "--weights", cut]),
        (
            "C6",
            vec!["reconstruct", s, out, "--weights", "/nonexistent.safetensors"],
        ),
        ("C7", vec!["reconstruct", "/nonexistent.png", out, "--weights", w]),
        ("C8", vec!["inspect", w, "--size", "102"]),
        ("C9", vec!["serve", "/nonexistent-folder", "--port", "0"]),
        (
            "C10",
            vec!["reconstruct", s, out, "--output-notch", "9", "--weights", w],
        ),
    ];
    let mut got = std::collections::BTreeMap::new();
    for (id, args) in cases {
        // As a person runs it: no backtraces (RUST_BACKTRACE may be set where the tests run).
        let o = Command::new(env!("CARGO_BIN_EXE_epsvae"))
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .output()
            .unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{id} {args:?} succeeded: {t}");
        assert!(!t.contains("panicked"), "{id} {args:?} panicked: {t}");
        // The error, from its first line on (progress lines such as "device (flex): …" come before).
        let stderr = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .skip_while(|l| !l.to_lowercase().starts_with("error:"))
            .filter(|l| !l.is_empty())
            .collect();
        got.insert(id, lines.join(" "));
    }
    catalogue::check("C", &got);
}
