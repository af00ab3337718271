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
    #[error("the link's latent ({found}) does not fit this model: {why}")]
    Fit { found: String, why: String },
}

/// Largest image side a link may describe: the page's largest (its `?max=` is at most 2048).
pub const MAX_IMAGE_SIDE: usize = 2048;

/// What the receiving model accepts. [`decode_for`] checks a link's header against it after
/// inflating the header's 17 bytes alone, so a link that claims a latent this model cannot take is
/// refused before its values are inflated or anything is allocated for them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    /// The model's latent channels n_z.
    pub channels: usize,
    /// Its downsampling factor f.
    pub factor: usize,
    /// The multiple its encoder pads images to (f, or more where the UNet reaches deeper).
    pub alignment: usize,
    /// The largest image side accepted.
    pub max_side: usize,
}

impl Fit {
    /// The latent grid `pipeline::encode` makes for this image size: the image padded up to a
    /// multiple of the alignment, divided by f.
    fn grid(&self, image_height: usize, image_width: usize) -> [usize; 2] {
        let g = |s: usize| s.next_multiple_of(self.alignment) / self.factor;
        [g(image_height), g(image_width)]
    }

    fn check(&self, h: &Head) -> Result<(), LinkError> {
        let found = format!(
            "{} channels of {}×{} for a {}×{} image",
            h.channels, h.height, h.width, h.image_width, h.image_height
        );
        let [gh, gw] = self.grid(h.image_height, h.image_width);
        let why = if h.channels != self.channels {
            format!("{} latent channels expected", self.channels)
        } else if h.image_width > self.max_side || h.image_height > self.max_side {
            format!("images up to {} pixels a side", self.max_side)
        } else if [h.height, h.width] != [gh, gw] {
            format!(
                "a {}×{} image has a {gh}×{gw} latent at f = {} (padded to a multiple of {})",
                h.image_width, h.image_height, self.factor, self.alignment
            )
        } else {
            return Ok(());
        };
        Err(LinkError::Fit { found, why })
    }
}

/// The fields of a link's header.
struct Head {
    bits: u32,
    channels: usize,
    height: usize,
    width: usize,
    image_width: usize,
    image_height: usize,
    weights_tag: [u8; 4],
}

impl Head {
    /// Checks the header's own consistency (version, magic, ranges); `raw` holds at least HEADER bytes.
    fn parse(raw: &[u8]) -> Result<Head, LinkError> {
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
        if !(2..=8).contains(&bits)
            || channels == 0
            || height == 0
            || width == 0
            || height > MAX_SIDE
            || width > MAX_SIDE
        {
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
        Ok(Head {
            bits,
            channels,
            height,
            width,
            image_width,
            image_height,
            weights_tag: raw[13..17].try_into().expect("4 bytes"),
        })
    }

    /// Bytes of the whole inflated latent, header included.
    fn total(&self) -> usize {
        HEADER + (self.channels * self.height * self.width * self.bits as usize).div_ceil(8)
    }
}

/// Inflates the first `n` bytes of a zlib stream only (fewer if it ends sooner).
fn inflate_prefix(packed: &[u8], n: usize) -> Result<Vec<u8>, LinkError> {
    use miniz_oxide::inflate::stream::{InflateState, inflate};
    use miniz_oxide::{DataFormat, MZFlush, MZStatus};
    let mut state = InflateState::new_boxed(DataFormat::Zlib);
    let (mut out, mut got, mut input) = (vec![0u8; n], 0, packed);
    while got < n {
        let r = inflate(&mut state, input, &mut out[got..], MZFlush::None);
        got += r.bytes_written;
        input = &input[r.bytes_consumed..];
        match r.status {
            Ok(MZStatus::StreamEnd) => break,
            Ok(_) if r.bytes_written == 0 && r.bytes_consumed == 0 => {
                return Err(LinkError::Corrupt(format!("the stream stops after {got} bytes")));
            }
            Ok(_) => {}
            Err(e) => return Err(LinkError::Corrupt(format!("{e:?}"))),
        }
    }
    out.truncate(got);
    Ok(out)
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

/// Decodes a link with only its own bounds checked ([`MAX_VALUES`], [`MAX_TEXT`]); a receiver with
/// a model should use [`decode_for`].
pub fn decode(text: &str) -> Result<LinkLatent, LinkError> {
    decode_checked(text, None)
}

/// Decodes a link for a model: the header is checked against `fit` before the values are inflated.
pub fn decode_for(text: &str, fit: &Fit) -> Result<LinkLatent, LinkError> {
    decode_checked(text, Some(fit))
}

fn decode_checked(text: &str, fit: Option<&Fit>) -> Result<LinkLatent, LinkError> {
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
    // The header first: its sizes decide how much may be inflated (a zlib bomb stops there).
    let head = Head::parse(&inflate_prefix(&packed, HEADER)?)?;
    if let Some(fit) = fit {
        fit.check(&head)?;
    }
    let expected = head.total();
    let raw =
        miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&packed, expected).map_err(|e| match e.status {
            miniz_oxide::inflate::TINFLStatus::HasMoreOutput => {
                LinkError::Corrupt(format!("it inflates past the {expected} bytes its header announces"))
            }
            s => LinkError::Corrupt(format!("{s:?}")),
        })?;
    if raw.len() != expected {
        return Err(LinkError::Length {
            got: raw.len(),
            expected,
        });
    }
    let (bits, count) = (head.bits, head.channels * head.height * head.width);
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
    Ok(LinkLatent {
        channels: head.channels,
        height: head.height,
        width: head.width,
        image_width: head.image_width,
        image_height: head.image_height,
        weights_tag: head.weights_tag,
        values,
    })
}
