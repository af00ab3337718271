//! The latent as a link: uniform n-bit quantisation of the tanh-bounded latent, zlib-compressed,
//! base64url. The page puts it in the URL fragment, so a shared link *is* the image: the recipient's
//! browser decodes it by denoising, and no server ever sees it.
//!
//! Layout before compression: magic `eV`, version, bits, n_z, latent height and width (u16 LE),
//! image width and height (u16 LE, for the crop after decoding), a 4-byte tag of the encoder
//! weights (the first bytes of their SHA-256), then the values bit-packed in [C, H, W] order.
//! zlib's Adler-32 catches truncated or altered links.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const MAGIC: &[u8; 2] = b"eV";
pub const LINK_VERSION: u8 = 1;
const HEADER: usize = 2 + 1 + 1 + 1 + 2 * 4 + 4;
/// Largest latent side accepted from a link (16384-pixel images at f = 16).
const MAX_SIDE: usize = 1024;
/// Most values a link's latent may hold (64 channels of 256×256, far above a 2048-pixel image at
/// f = 8 with 4 channels): bounds the text, the inflated bytes and the values before they are
/// allocated.
pub const MAX_VALUES: usize = 1 << 22;
/// Longest link text accepted: base64url of the largest valid packed latent (zlib never grows
/// data by more than a few bytes per 16 KiB block).
pub const MAX_TEXT: usize = (HEADER + MAX_VALUES + MAX_VALUES / 1024 + 64) * 4 / 3 + 4;

/// A latent with what is needed to decode it back to the original image size.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkLatent {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// The image size before padding to a multiple of f.
    pub image_width: usize,
    pub image_height: usize,
    /// First 4 bytes of the SHA-256 of the encoder weights the latent came from.
    pub weights_tag: [u8; 4],
    /// [C, H, W] values in [-1, 1].
    pub values: Vec<f32>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LinkError {
    #[error("the link's latent is not valid base64url text ({0}); was the link cut short or altered?")]
    Base64(String),
    #[error("the link's latent is damaged or cut short (decompression failed: {0}); copy the whole link again")]
    Corrupt(String),
    #[error("the link's latent is {got} bytes, expected {expected} (cut short?)")]
    Length { got: usize, expected: usize },
    #[error("not an ε-VAE latent (starts with {0:?}, expected \"eV\")")]
    Magic(Vec<u8>),
    #[error("link format version {found}; this page reads version {expected}")]
    Version { found: u8, expected: u8 },
    #[error("link header is invalid: {0}")]
    Header(String),
    #[error("the link's latent is {got} characters, more than the {max} any image this page makes needs")]
    TooLong { got: usize, max: usize },
}

/// Level of value `v` ∈ [−1, 1] on a uniform grid of 2^bits levels.
fn quantize(v: f32, bits: u32) -> u32 {
    let top = ((1u32 << bits) - 1) as f32;
    ((v.clamp(-1.0, 1.0) + 1.0) * (0.5 * top)).round() as u32
}

fn dequantize(q: u32, bits: u32) -> f32 {
    let top = ((1u32 << bits) - 1) as f32;
    q as f32 / top * 2.0 - 1.0
}

/// Encodes with `bits` ∈ 2..=8 per value. The round trip error is at most 1/(2^bits − 1).
pub fn encode(l: &LinkLatent, bits: u32) -> String {
    assert!((2..=8).contains(&bits), "link bits {bits} outside 2..=8");
    assert_eq!(
        l.values.len(),
        l.channels * l.height * l.width,
        "latent values match its shape"
    );
    let mut raw = Vec::with_capacity(HEADER + l.values.len());
    raw.extend_from_slice(MAGIC);
    raw.extend_from_slice(&[LINK_VERSION, bits as u8, l.channels as u8]);
    for v in [l.height, l.width, l.image_width, l.image_height] {
        raw.extend_from_slice(&(v as u16).to_le_bytes());
    }
    raw.extend_from_slice(&l.weights_tag);
    let (mut acc, mut n) = (0u32, 0u32);
    for v in &l.values {
        acc |= quantize(*v, bits) << n;
        n += bits;
        while n >= 8 {
            raw.push(acc as u8);
            acc >>= 8;
            n -= 8;
        }
    }
    if n > 0 {
        raw.push(acc as u8);
    }
    URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec_zlib(&raw, 10))
}

pub fn decode(text: &str) -> Result<LinkLatent, LinkError> {
    let text = text.trim();
    if text.len() > MAX_TEXT {
        return Err(LinkError::TooLong {
            got: text.len(),
            max: MAX_TEXT,
        });
    }
    let packed = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| LinkError::Base64(e.to_string()))?;
    // A bomb guard: no valid latent inflates beyond MAX_VALUES bytes (at most 8 bits a value).
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&packed, HEADER + MAX_VALUES)
        .map_err(|e| LinkError::Corrupt(format!("{:?}", e.status)))?;
    if raw.len() < HEADER {
        return Err(LinkError::Length {
            got: raw.len(),
            expected: HEADER,
        });
    }
    if &raw[..2] != MAGIC {
        return Err(LinkError::Magic(raw[..2].to_vec()));
    }
    if raw[2] != LINK_VERSION {
        return Err(LinkError::Version {
            found: raw[2],
            expected: LINK_VERSION,
        });
    }
    let (bits, channels) = (raw[3] as u32, raw[4] as usize);
    let u16_at = |i: usize| u16::from_le_bytes([raw[5 + 2 * i], raw[6 + 2 * i]]) as usize;
    let (height, width, image_width, image_height) = (u16_at(0), u16_at(1), u16_at(2), u16_at(3));
    if !(2..=8).contains(&bits) || channels == 0 || height == 0 || width == 0 || height > MAX_SIDE || width > MAX_SIDE {
        return Err(LinkError::Header(format!(
            "{bits} bits, {channels} channels, {height}×{width} latent"
        )));
    }
    if image_width == 0 || image_height == 0 {
        return Err(LinkError::Header(format!("image size {image_width}×{image_height}")));
    }
    let count = channels * height * width;
    if count > MAX_VALUES {
        return Err(LinkError::Header(format!(
            "{channels} channels of {height}×{width} = {count} values, more than {MAX_VALUES}"
        )));
    }
    let expected = HEADER + (count * bits as usize).div_ceil(8);
    if raw.len() != expected {
        return Err(LinkError::Length {
            got: raw.len(),
            expected,
        });
    }
    let mut values = Vec::with_capacity(count);
    let (mut acc, mut n, mut i) = (0u32, 0u32, HEADER);
    let mask = (1u32 << bits) - 1;
    while values.len() < count {
        while n < bits {
            acc |= (raw[i] as u32) << n;
            i += 1;
            n += 8;
        }
        values.push(dequantize(acc & mask, bits));
        acc >>= bits;
        n -= bits;
    }
    let weights_tag = raw[13..17].try_into().expect("4 bytes");
    Ok(LinkLatent {
        channels,
        height,
        width,
        image_width,
        image_height,
        weights_tag,
        values,
    })
}
