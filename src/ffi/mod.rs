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

pub mod boundary;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod embeddings;
pub mod error;
pub mod image;
pub mod levels;
pub mod log;
pub mod model;
pub mod params;
pub mod prompt;
pub mod status;
pub mod version;
