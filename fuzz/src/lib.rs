//! Fuzz harness for vtower: the target bodies live in `harness.rs`, which
//! `tests/fuzz_regressions.rs` also includes, so reproducers replay the same code path.

mod harness;
pub use harness::*;
