//! The weight-file reader, as the page feeds it: the file in chunks of any size. The first two
//! bytes of the input choose the chunk size (1 to 65,536), the rest is the file. Whatever the
//! bytes, reading returns (no panic, no allocation beyond the header's checked sizes), and the
//! chunked read agrees with the one-chunk read: both succeed with the same tensors, or both fail.
//! A file that reads is also loaded into a model (every tensor applied to its parameter).
#![no_main]

use epsvae::backend::{Backend, device};
use epsvae::weights::{self, Event, HostTensors, WeightStream};
use libfuzzer_sys::fuzz_target;

fn chunked(file: &[u8], chunk: usize) -> Result<HostTensors, weights::WeightError> {
    let mut s = WeightStream::new();
    let mut taken = HostTensors::new();
    for c in file.chunks(chunk) {
        for e in s.push(c)? {
            if let Event::PartComplete(part) = e {
                // The page applies each part as soon as it completes.
                taken.extend(s.take_part(part));
            }
        }
    }
    let (_, rest) = s.finish()?;
    taken.extend(rest);
    Ok(taken)
}

fn same(a: &HostTensors, b: &HostTensors) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, (shape, v))| {
            b.get(k).is_some_and(|(shape_b, v_b)| {
                shape == shape_b && v.len() == v_b.len() && v.iter().zip(v_b).all(|(x, y)| x.to_bits() == y.to_bits())
            })
        })
}

fuzz_target!(|data: &[u8]| {
    let Some((head, file)) = data.split_first_chunk::<2>() else {
        return;
    };
    let chunk = u16::from_le_bytes(*head) as usize + 1;
    let whole = weights::read(file);
    let streamed = chunked(file, chunk);
    match (&whole, &streamed) {
        (Ok((_, a)), Ok(b)) => assert!(same(a, b), "chunks of {chunk} bytes read other tensors"),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "one chunk: {:?}; chunks of {chunk} bytes: {:?}",
            whole.as_ref().map(|_| ()),
            streamed.as_ref().map(|_| ())
        ),
    }
    if whole.is_ok() {
        let dev = device(Backend::Flex).expect("flex is built in");
        weights::load(file, &dev).expect("a file that reads also loads");
    }
});
