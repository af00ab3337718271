//! Pixels in and out: RGBA bytes and image files ↔ planar f32 images in [-1, 1] ↔ tensors, the
//! padding that makes any size a multiple of f, and the metrics (PSNR, SSIM).

use burn::tensor::{Device, Tensor, TensorData};

/// A planar RGB image, values nominally in [-1, 1], layout [3, H, W].
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImageError {
    #[error("RGBA buffer has {got} bytes; {width}×{height} needs {expected}")]
    BadBuffer {
        got: usize,
        width: usize,
        height: usize,
        expected: usize,
    },
    #[error("image is {width}×{height}; expected at least 1×1 and at most {max}×{max} pixels")]
    BadSize { width: usize, height: usize, max: usize },
    #[error("image is {width}×{height} = {} pixels; expected at most {max}", width * height)]
    TooManyPixels { width: usize, height: usize, max: usize },
    #[error("could not decode the image: {0} (expected PNG, JPEG, WebP, GIF or BMP)")]
    Decode(String),
}

/// Largest side accepted from outside before any scaling (protects memory).
pub const MAX_INPUT_SIDE: usize = 16384;
/// Most pixels accepted from outside (64 MP: a 10,000 × 6,400 photo): 256 MB as RGBA, 768 MB as
/// planar f32.
pub const MAX_INPUT_PIXELS: usize = 1 << 26;
/// The decoder's own allocation limit: the RGBA of the largest accepted image, and some slack.
#[cfg(feature = "codecs")]
const MAX_DECODE_BYTES: u64 = (MAX_INPUT_PIXELS as u64) * 4 + (64 << 20);

impl Planar {
    /// From interleaved RGBA bytes (the browser's ImageData); alpha is ignored.
    pub fn from_rgba(rgba: &[u8], width: usize, height: usize) -> Result<Self, ImageError> {
        check_size(width, height)?;
        let expected = width * height * 4;
        if rgba.len() != expected {
            return Err(ImageError::BadBuffer {
                got: rgba.len(),
                width,
                height,
                expected,
            });
        }
        let n = width * height;
        let mut data = vec![0f32; 3 * n];
        for (i, px) in rgba.chunks_exact(4).enumerate() {
            for c in 0..3 {
                data[c * n + i] = px[c] as f32 / 127.5 - 1.0;
            }
        }
        Ok(Self { width, height, data })
    }

    /// To interleaved RGBA bytes, clamping to [-1, 1] and rounding; alpha 255.
    pub fn to_rgba(&self) -> Vec<u8> {
        let n = self.width * self.height;
        let mut out = vec![255u8; 4 * n];
        for i in 0..n {
            for c in 0..3 {
                out[4 * i + c] = to_byte(self.data[c * n + i]);
            }
        }
        out
    }

    /// Decodes any format the `image` crate reads (PNG, JPEG, WebP, GIF, BMP).
    #[cfg(feature = "codecs")]
    pub fn decode(bytes: &[u8]) -> Result<Self, ImageError> {
        // The size from the file's header first: nothing is decoded (or allocated) for an image
        // this function would refuse.
        use image::ImageDecoder;
        let decode_err = |e: image::ImageError| ImageError::Decode(e.to_string());
        let mut decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ImageError::Decode(e.to_string()))?
            .into_decoder()
            .map_err(decode_err)?;
        let (w, h) = decoder.dimensions();
        check_size(w as usize, h as usize)?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(w);
        limits.max_image_height = Some(h);
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        decoder.set_limits(limits).map_err(decode_err)?;
        let img = image::DynamicImage::from_decoder(decoder).map_err(decode_err)?;
        check_size(img.width() as usize, img.height() as usize)?;
        let rgba = img.to_rgba8();
        Self::from_rgba(rgba.as_raw(), rgba.width() as usize, rgba.height() as usize)
    }

    #[cfg(feature = "codecs")]
    pub fn to_rgba_image(&self) -> image::RgbaImage {
        image::RgbaImage::from_raw(self.width as u32, self.height as u32, self.to_rgba()).expect("buffer size matches")
    }

    /// Resamples to `width`×`height` (Lanczos3 when shrinking or enlarging, on 8-bit pixels).
    #[cfg(feature = "codecs")]
    pub fn resize(&self, width: usize, height: usize) -> Self {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let img = image::imageops::resize(
            &self.to_rgba_image(),
            width as u32,
            height as u32,
            image::imageops::FilterType::Lanczos3,
        );
        Self::from_rgba(img.as_raw(), width, height).expect("resize keeps the buffer consistent")
    }

    /// Mirror-pads right and bottom up to multiples of `f` (the encoder needs H, W divisible by f).
    /// [`Planar::crop`] back to the original size after decoding: nothing is resampled.
    pub fn pad_to_multiple(&self, f: usize) -> Self {
        let (w, h) = (self.width.next_multiple_of(f), self.height.next_multiple_of(f));
        if (w, h) == (self.width, self.height) {
            return self.clone();
        }
        let reflect = |i: usize, n: usize| -> usize {
            // Whole-sample symmetric reflection: n, n+1, … map to n−2, n−3, …, bouncing as needed.
            if n == 1 {
                return 0;
            }
            let period = 2 * (n - 1);
            let m = i % period;
            if m < n { m } else { period - m }
        };
        let mut data = vec![0f32; 3 * w * h];
        for c in 0..3 {
            for y in 0..h {
                let sy = reflect(y, self.height);
                for x in 0..w {
                    let sx = reflect(x, self.width);
                    data[(c * h + y) * w + x] = self.data[(c * self.height + sy) * self.width + sx];
                }
            }
        }
        Self {
            width: w,
            height: h,
            data,
        }
    }

    /// The top-left `width`×`height` region.
    pub fn crop(&self, width: usize, height: usize) -> Self {
        self.crop_at(0, 0, width, height)
    }

    pub fn crop_at(&self, x0: usize, y0: usize, width: usize, height: usize) -> Self {
        assert!(
            x0 + width <= self.width && y0 + height <= self.height,
            "crop inside the image"
        );
        let mut data = Vec::with_capacity(3 * width * height);
        for c in 0..3 {
            for y in y0..y0 + height {
                let row = (c * self.height + y) * self.width;
                data.extend_from_slice(&self.data[row + x0..row + x0 + width]);
            }
        }
        Self { width, height, data }
    }

    /// The centre `size`×`size` square after scaling the shorter side to `size` (evaluation crops).
    #[cfg(feature = "codecs")]
    pub fn center_square(&self, size: usize) -> Self {
        let short = self.width.min(self.height);
        let s = size as f64 / short as f64;
        let w = ((self.width as f64 * s).round() as usize).max(size);
        let h = ((self.height as f64 * s).round() as usize).max(size);
        let r = self.resize(w, h);
        r.crop_at((w - size) / 2, (h - size) / 2, size, size)
    }

    /// As a [1, 3, H, W] tensor.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), [1, 3, self.height, self.width]),
            device,
        )
    }

    /// From the `index`th image of a [B, 3, H, W] tensor's host data.
    pub fn from_data(data: &TensorData, index: usize) -> Self {
        let s = data.shape();
        let [_, c, h, w] = [s[0], s[1], s[2], s[3]];
        assert_eq!(c, 3, "an RGB tensor");
        let all: &[f32] = data.as_slice().expect("f32 tensor data");
        let n = 3 * h * w;
        Self {
            width: w,
            height: h,
            data: all[index * n..(index + 1) * n].to_vec(),
        }
    }

    /// Reads a [1, 3, H, W] tensor back (native: a synchronous read).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_tensor(t: Tensor<4>) -> Self {
        Self::from_data(&t.into_data().convert::<f32>(), 0)
    }
}

fn check_size(width: usize, height: usize) -> Result<(), ImageError> {
    if width == 0 || height == 0 || width > MAX_INPUT_SIDE || height > MAX_INPUT_SIDE {
        return Err(ImageError::BadSize {
            width,
            height,
            max: MAX_INPUT_SIDE,
        });
    }
    if width * height > MAX_INPUT_PIXELS {
        return Err(ImageError::TooManyPixels {
            width,
            height,
            max: MAX_INPUT_PIXELS,
        });
    }
    Ok(())
}

/// The strength of a 2-pixel grid in `out` that `reference` does not have, in 8-bit levels. On the
/// difference d = out − reference, the second differences (d[x−1] − 2·d[x] + d[x+1])/4 along x, the
/// same along y, and both (they pass a 2-pixel pattern whole and give 0 for flat areas and linear
/// ramps, so a decoder that gets a gradient's slope a little wrong does not count as a grid); over
/// 8×8 tiles, the mean of each times the pattern's sign (−1)^x, (−1)^y, (−1)^(x+y); then the root
/// mean square over tiles, channels and the three patterns. A pixel-shuffle output whose phases
/// disagree scores ~0.5–1 on a flat image; 0 is no grid.
pub fn grid_amplitude(out: &Planar, reference: &Planar) -> f64 {
    assert_eq!(
        (out.width, out.height),
        (reference.width, reference.height),
        "same-size images"
    );
    const T: usize = 8;
    let (w, h) = (out.width, out.height);
    let n = w * h;
    let (mut sum, mut count) = (0.0f64, 0usize);
    for c in 0..3 {
        let d = |x: usize, y: usize| (out.data[c * n + y * w + x] - reference.data[c * n + y * w + x]) as f64;
        let dxx = |x: usize, y: usize| (d(x - 1, y) - 2.0 * d(x, y) + d(x + 1, y)) / 4.0;
        for ty in 0..h / T {
            for tx in 0..w / T {
                let (mut a, mut m) = ([0.0f64; 3], 0usize);
                for y in (ty * T).max(1)..((ty + 1) * T).min(h - 1) {
                    for x in (tx * T).max(1)..((tx + 1) * T).min(w - 1) {
                        let lx = dxx(x, y);
                        let ly = (d(x, y - 1) - 2.0 * d(x, y) + d(x, y + 1)) / 4.0;
                        let lxy = (dxx(x, y - 1) - 2.0 * lx + dxx(x, y + 1)) / 4.0;
                        let (sx, sy) = (if x % 2 == 0 { 1.0 } else { -1.0 }, if y % 2 == 0 { 1.0 } else { -1.0 });
                        a[0] += lx * sx;
                        a[1] += ly * sy;
                        a[2] += lxy * sx * sy;
                        m += 1;
                    }
                }
                if m == 0 {
                    continue;
                }
                for v in a {
                    sum += (v / m as f64 * 127.5).powi(2);
                    count += 1;
                }
            }
        }
    }
    if count == 0 { 0.0 } else { (sum / count as f64).sqrt() }
}

/// [-1, 1] → 0..=255, rounded, clamped.
pub fn to_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Peak signal-to-noise ratio in dB of 8-bit renderings of two images (peak 255).
pub fn psnr(a: &Planar, b: &Planar) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height), "PSNR of same-size images");
    let mse: f64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| {
            let d = to_byte(*x) as f64 - to_byte(*y) as f64;
            d * d
        })
        .sum::<f64>()
        / a.data.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Structural similarity (Wang et al. 2004): 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03,
/// on 8-bit values, averaged over the RGB channels and the valid window positions.
pub fn ssim(a: &Planar, b: &Planar) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height), "SSIM of same-size images");
    let (w, h) = (a.width, a.height);
    const R: usize = 5;
    let g: Vec<f64> = (0..=2 * R)
        .map(|i| (-((i as f64 - R as f64).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let gs: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / gs).collect();
    let (c1, c2) = ((0.01 * 255.0f64).powi(2), (0.03 * 255.0f64).powi(2));
    // Separable blur of a plane, keeping only positions where the window fits ("valid").
    let blur = |p: &[f64]| -> (Vec<f64>, usize, usize) {
        if w < 2 * R + 1 || h < 2 * R + 1 {
            return (vec![], 0, 0);
        }
        let (ow, oh) = (w - 2 * R, h - 2 * R);
        let mut tmp = vec![0f64; ow * h];
        for y in 0..h {
            for x in 0..ow {
                tmp[y * ow + x] = (0..=2 * R).map(|k| g[k] * p[y * w + x + k]).sum();
            }
        }
        let mut out = vec![0f64; ow * oh];
        for y in 0..oh {
            for x in 0..ow {
                out[y * ow + x] = (0..=2 * R).map(|k| g[k] * tmp[(y + k) * ow + x]).sum();
            }
        }
        (out, ow, oh)
    };
    let n = w * h;
    let mut total = 0.0;
    for c in 0..3 {
        let pa: Vec<f64> = a.data[c * n..(c + 1) * n].iter().map(|v| to_byte(*v) as f64).collect();
        let pb: Vec<f64> = b.data[c * n..(c + 1) * n].iter().map(|v| to_byte(*v) as f64).collect();
        let prod = |x: &[f64], y: &[f64]| -> Vec<f64> { x.iter().zip(y).map(|(p, q)| p * q).collect() };
        let (ma, ow, oh) = blur(&pa);
        if ow == 0 {
            // Smaller than the 11-pixel window: the whole image is the one window (uniform weights).
            let mean = |x: &[f64]| x.iter().sum::<f64>() / n as f64;
            let (ma, mb) = (mean(&pa), mean(&pb));
            let (va, vb, cov) = (
                mean(&prod(&pa, &pa)) - ma * ma,
                mean(&prod(&pb, &pb)) - mb * mb,
                mean(&prod(&pa, &pb)) - ma * mb,
            );
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            continue;
        }
        let (mb, _, _) = blur(&pb);
        let (saa, _, _) = blur(&prod(&pa, &pa));
        let (sbb, _, _) = blur(&prod(&pb, &pb));
        let (sab, _, _) = blur(&prod(&pa, &pb));
        let mut s = 0.0;
        for i in 0..ow * oh {
            let (va, vb, cov) = (saa[i] - ma[i] * ma[i], sbb[i] - mb[i] * mb[i], sab[i] - ma[i] * mb[i]);
            s += ((2.0 * ma[i] * mb[i] + c1) * (2.0 * cov + c2))
                / ((ma[i] * ma[i] + mb[i] * mb[i] + c1) * (va + vb + c2));
        }
        total += s / (ow * oh) as f64;
    }
    total / 3.0
}
