//! The C ABI. This module is the only place with `extern "C"`, raw pointers and `unsafe`;
//! every function here checks its pointers, runs its body inside one panic-catching
//! boundary ([`boundary`]) and reports failures as a `vt_status` plus an optional owned
//! `vt_error`. The header `include/vtower.h` is generated from these items by cbindgen.

// C naming (`vt_model`, `vt_status`) is the point of this module.
#![allow(non_camel_case_types)]
// The exported functions take raw pointers from C and check each one for NULL; their
// validity contract is documented on each function (and in the header). They are not
// `unsafe fn` because C callers cannot see that, and Rust callers use the safe engine API.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

// cbindgen writes the header's constants, types and functions in the order of these
// declarations, so they are in the order a C programmer reads the API in (rustfmt does not
// sort `mod` lines that comments separate; keep the comments).

// vt_version, vt_version_number, VT_VERSION_*.
pub(crate) mod version;
// vt_status, VT_OK, VT_ERR_*, vt_status_str.
pub(crate) mod status;
// vt_error and its accessors.
pub(crate) mod error;
// vt_log_set.
pub(crate) mod log;
// vt_load_params, vt_preprocess_params and their defaults.
pub(crate) mod params;
// vt_load, vt_model_free, vt_model_* accessors.
pub(crate) mod model;
// vt_preprocess*, vt_image_* accessors.
pub(crate) mod image;
// Video: vt_preprocess_video, vt_image_video_* accessors.
pub(crate) mod video;
// Prompt layout: vt_model_token_id, token and patch grids, M-RoPE positions.
pub(crate) mod prompt;
// vt_forward, vt_embeddings_*.
pub(crate) mod embeddings;
// vt_forward_async and vt_job_*.
pub(crate) mod jobs;
// vt_model_cache_stats.
pub(crate) mod cache;
// Deepstack levels: vt_model_n_levels, vt_model_level_layer, vt_embeddings_level_*.
pub(crate) mod levels;

// Internal: the panic boundary and pointer checks, CUDA copies.
pub(crate) mod boundary;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
