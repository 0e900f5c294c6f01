//! Session middleware for tower, axum and hyper.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod config;
mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::{CookieSameSite as SameSite, SessionLayer};
pub use service::SessionMiddleware;
pub use sessions_core::{Error, Session};
