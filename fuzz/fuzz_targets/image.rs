//! The command line's image input (`reconstruct`, `eval`): any bytes as an image file (PNG, JPEG,
//! WebP, GIF, BMP). Decoding returns an image within the size limits or a named error, reading the
//! size from the file's header before anything is decoded; an image that decodes goes through
//! what the CLI does next (resize, mirror padding to the model's multiple, PSNR and SSIM, RGBA).
#![no_main]

use epsvae::image::{Planar, psnr, ssim};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = Planar::decode(data) else {
        return;
    };
    let (w, h) = (img.width, img.height);
    assert!(w >= 1 && h >= 1 && img.data.len() == 3 * w * h);
    assert_eq!(img.to_rgba().len(), 4 * w * h);
    // Keep the work per input small: the metrics and resampling on images of up to 64K pixels.
    if w * h > 1 << 16 {
        return;
    }
    let padded = img.pad_to_multiple(16);
    assert!(padded.width.is_multiple_of(16) && padded.height.is_multiple_of(16));
    assert!(padded.width >= w && padded.height >= h);
    let small = img.resize(w.div_ceil(2), h.div_ceil(2));
    assert_eq!((small.width, small.height), (w.div_ceil(2), h.div_ceil(2)));
    let same = psnr(&img, &img);
    assert!(
        same.is_infinite() || same > 90.0,
        "PSNR of an image with itself: {same}"
    );
    let s = ssim(&img, &img);
    assert!((s - 1.0).abs() < 1e-6, "SSIM of an image with itself: {s}");
});
