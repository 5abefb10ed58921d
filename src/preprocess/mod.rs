//! Image preprocessing: decoding, RGB conversion, resizing and normalization, reproducing the
//! Hugging Face PIL-backend image processors exactly.

pub mod clip;
pub mod decode;
pub mod fixed_size;
pub mod gemma3;
pub mod gemma4;
pub mod gemma4_video;
pub mod glm4v;
pub mod glm5_next;
pub mod got_ocr2;
pub mod idefics3;
pub mod kimi_k25;
pub mod lfm2_vl;
pub mod limits;
pub mod llava_next;
pub mod longest_edge;
pub mod normalize;
pub mod options;
pub mod paddleocr_vl;
pub mod pixels;
pub mod qwen2_vl;
pub mod qwen_video;
pub mod resample;
pub mod rgb;
pub mod settings;
pub mod siglip2;
pub mod smart_resize;
pub mod tiling;
pub mod tv_resize;

pub use limits::Limits;
pub use options::PreprocessOptions;
pub use pixels::Pixels;
pub use rgb::RgbImage;
