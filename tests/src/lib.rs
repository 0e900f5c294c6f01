//! End-to-end tests of the sessionkit workspace live in `tests/`; this library compiles the
//! README as doctests. The samples' hidden lines use only published crates
//! (`sessionkit_tower::testing` sends their requests), so a reader can run any of them.
//!
//! # Features
//!
//! This package has no Cargo features.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// The README: every ```` ```rust ```` block in it is compiled, and run unless marked
/// `no_run`, by `cargo test --doc` (part of `./scripts/test`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct Readme;
