//! LoadOptions::max_forward_bytes: a call whose batch would exceed the activation estimate
//! is split into smaller batches (same results); an image over it alone is refused before
//! anything runs.

mod common;

use common::*;
use vtower::{LoadOptions, Model, Status};

const NAME: &str = "siglip_f32";

fn load(limit: u64) -> Model {
    let opts = LoadOptions {
        n_threads: 2,
        max_forward_bytes: limit,
        ..LoadOptions::default()
    };
    Model::load(fixtures().join(NAME), &opts).unwrap()
}

#[test]
fn batches_are_split_or_refused_by_the_estimate() {
    let plain = load(0);
    let (files, reference) = serial_references(&plain, NAME);
    let img = plain.preprocess(&files[0]).unwrap();
    // siglip_f32: 36 patches of a 64-wide tower, 36 x 64 outputs, on the CPU.
    let one = plain.forward_bytes(&img);
    assert_eq!(one, 4 * (16 * 36 * 64 + 36 * 64));

    // Room for one image per batch: six images still run (one by one), bit for bit.
    let tight = load(one + one / 2);
    let imgs: Vec<_> = files[..6]
        .iter()
        .map(|b| tight.preprocess(b).unwrap())
        .collect();
    let refs: Vec<_> = imgs.iter().collect();
    let out = tight.forward(&refs).unwrap();
    for (i, r) in reference[..6].iter().enumerate() {
        assert!(out.data(i).unwrap() == r.as_slice(), "image {i}");
    }

    // Below one image: refused with a clear message, and the model stays usable.
    let small = load(one - 1);
    let img = small.preprocess(&files[0]).unwrap();
    let err = small.forward(&[&img]).unwrap_err();
    assert_eq!(err.status(), Status::ImageTooLarge);
    assert!(err.message().contains("max_forward_bytes"), "{err}");
    assert!(err.message().contains(&one.to_string()), "{err}");
    let ok = load(one);
    let img = ok.preprocess(&files[0]).unwrap();
    assert!(ok.forward(&[&img]).unwrap().data(0).unwrap() == reference[0].as_slice());
}
