//! One model shared by 8 threads, each preprocessing and forwarding different images many
//! times: every result equals the single-threaded one, bit for bit.

mod common;

use std::sync::Arc;

use common::*;
use vtower::{LoadOptions, Model};

#[test]
fn eight_threads_share_one_model_bit_exactly() {
    let name = "siglip_f32";
    let model = Arc::new(Model::load(fixtures().join(name), &LoadOptions::default()).unwrap());
    let (files, reference) = serial_references(&model, name);
    let files = Arc::new(files);
    let reference = Arc::new(reference);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (model, files, reference) = (model.clone(), files.clone(), reference.clone());
            std::thread::spawn(move || {
                for round in 0..8 {
                    let i = (t + round) % files.len();
                    let img = model.preprocess(&files[i]).unwrap();
                    let out = model.forward(&[&img]).unwrap();
                    assert!(
                        out.data(0).unwrap() == reference[i].as_slice(),
                        "thread {t} round {round}: image {i} differs from the serial result"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread");
    }
}
