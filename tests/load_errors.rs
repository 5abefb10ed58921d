//! Loading failures from Rust: every broken model folder gives the right status and a
//! message that names the problem. (The C test tests/c/errors.c checks the same folders
//! through the C API.)

mod common;

use common::*;
use vtower::{LoadOptions, Model, Status};

#[test]
fn broken_model_folders_fail_clearly() {
    let tmp = temp_dir("rust-broken");
    make_broken_models("siglip_f32", &tmp);
    let cases = [
        (
            "unknown_model_type",
            Status::UnsupportedModel,
            "not_a_model",
        ),
        ("no_model_type", Status::BadConfig, "model_type"),
        ("bad_json", Status::BadConfig, "invalid JSON"),
        ("missing_tensor", Status::BadWeights, "missing tensor"),
        ("lying_config", Status::BadWeights, "expected shape"),
        ("truncated_weights", Status::BadWeights, "truncated"),
        ("corrupt_header", Status::BadWeights, "corrupt"),
        ("no_weights", Status::Io, "no model.safetensors"),
        ("absurd_config", Status::BadConfig, "num_hidden_layers"),
    ];
    for (dir, status, needle) in cases {
        let err = Model::load(tmp.join(dir), &LoadOptions::default()).unwrap_err();
        println!("{dir}: {err}");
        assert_eq!(err.status(), status, "{dir}: {err}");
        assert!(
            err.message().contains(needle),
            "{dir}: `{err}` lacks `{needle}`"
        );
    }
    let err = Model::load(tmp.join("does-not-exist"), &LoadOptions::default()).unwrap_err();
    assert_eq!(err.status(), Status::Io);
}

#[test]
fn unsupported_model_type_lists_supported_ones() {
    let tmp = temp_dir("rust-unsupported");
    make_broken_models("siglip_f32", &tmp);
    let err = Model::load(tmp.join("unknown_model_type"), &LoadOptions::default()).unwrap_err();
    assert!(err.message().contains("siglip_vision_model"), "{err}");
}

#[test]
fn cuda_request_without_cuda_is_a_device_error() {
    let opts = LoadOptions {
        device: vtower::DeviceRequest::Cuda(0),
        ..LoadOptions::default()
    };
    let err = Model::load(fixtures().join("siglip_f32"), &opts).unwrap_err();
    assert_eq!(err.status(), Status::Device);
    let auto = LoadOptions {
        device: vtower::DeviceRequest::Auto,
        ..LoadOptions::default()
    };
    assert!(Model::load(fixtures().join("siglip_f32"), &auto).is_ok());
}

#[test]
fn images_from_another_model_are_refused() {
    let a = Model::load(fixtures().join("siglip_f32"), &LoadOptions::default()).unwrap();
    let b = Model::load(fixtures().join("siglip_f32"), &LoadOptions::default()).unwrap();
    let img = b.preprocess_rgb8(&[7u8; 12], 2, 2, 6).unwrap();
    let err = a.forward(&[&img]).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
}
