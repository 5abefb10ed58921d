//! Image preprocessing: decoding, RGB conversion, resizing and normalization, reproducing the
//! Hugging Face PIL-backend image processors exactly.

pub mod clip;
pub mod decode;
pub mod gemma3;
pub mod limits;
pub mod normalize;
pub mod options;
pub mod pixels;
pub mod pixtral;
pub mod qwen2_vl;
pub mod resample;
pub mod rgb;
pub mod siglip;

pub use limits::Limits;
pub use options::PreprocessOptions;
pub use pixels::Pixels;
pub use rgb::RgbImage;
