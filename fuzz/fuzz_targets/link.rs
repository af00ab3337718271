//! The latent a shared link carries (the text after `#z=`). Whatever the text, decoding returns a
//! latent or a named error, and never inflates more than the header's checked size. A latent that
//! decodes has as many values as its shape says, all in [-1, 1]; it fits the model it was checked
//! against; and it re-encodes to a link that decodes to the same values.
#![no_main]

use epsvae::latent::{self, Fit, MAX_IMAGE_SIDE};
use libfuzzer_sys::fuzz_target;

/// The shipped models: f8 (n_z 4, images padded to 16) and f16 (n_z 8).
const FITS: [Fit; 2] = [
    Fit {
        channels: 4,
        factor: 8,
        alignment: 16,
        max_side: MAX_IMAGE_SIDE,
    },
    Fit {
        channels: 8,
        factor: 16,
        alignment: 16,
        max_side: MAX_IMAGE_SIDE,
    },
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let free = latent::decode(&text);
    if let Ok(l) = &free {
        assert_eq!(l.values.len(), l.channels * l.height * l.width);
        assert!(
            l.values.iter().all(|v| (-1.0..=1.0).contains(v)),
            "values outside [-1, 1]"
        );
        // The lowest number of bits that reproduces these values is at most 8: re-encoding with 8
        // bits and decoding again keeps every value within one 8-bit level.
        let again = latent::decode(&latent::encode(l, 8)).expect("a re-encoded latent decodes");
        assert_eq!(
            (again.channels, again.height, again.width),
            (l.channels, l.height, l.width)
        );
        assert!(
            l.values
                .iter()
                .zip(&again.values)
                .all(|(a, b)| (a - b).abs() <= 1.0 / 255.0 + 1e-6)
        );
    }
    for fit in &FITS {
        match latent::decode_for(&text, fit) {
            Ok(l) => {
                assert_eq!(Ok(&l), free.as_ref(), "a latent that fits also decodes on its own");
                assert_eq!(l.channels, fit.channels);
                assert!(l.image_width <= fit.max_side && l.image_height <= fit.max_side);
            }
            Err(_) => {}
        }
    }
});
