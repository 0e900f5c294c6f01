//! The contract of sessionkit: pluggable sessions for tower-based Rust web
//! stacks (axum, hyper).
//!
//! This crate defines what the other crates agree on:
//!
//! - for handlers: [`Session`], the loaded session whose values a handler reads and writes,
//!   and [`LazySession`], the request's session before it is read (for middleware that may
//!   not need it); [`Lifetime`] for "remember me", [`UserSession`] and [`DeviceId`] for a
//!   user's list of devices; [`Error`], one enum naming every cause;
//! - for storage backends: the [`SessionBackend`] trait and the record it stores,
//!   [`SessionData`]; [`Serializer`], with [`JsonSerializer`] (default) and
//!   `BincodeSerializer` (feature `bincode`), for backends that store bytes; [`store`], the
//!   helpers backends that store bytes share; the [`conformance`] suite (feature
//!   `conformance`) every backend passes; `cleanup` (feature `cleanup`), deleting expired
//!   records for stores that keep them until deleted;
//! - for framework adapters: the [`adapter`] module, how a session layer makes and saves
//!   each request's session.
//!
//! Applications use it through `sessionkit-tower` (the middleware, which re-exports what
//! handlers name) and a backend crate: `sessionkit-memory`, `sessionkit-cookie`,
//! `sessionkit-redis` or `sessionkit-sql`. A third-party backend depends on this crate alone.
//!
//! # Features
//!
//! | feature | default | what it adds | pulls in |
//! |---|---|---|---|
//! | `axum` | off | [`Session`] and [`LazySession`] as axum extractors, [`Error`] as a response | `axum-core`, `http` |
//! | `bincode` | off | `BincodeSerializer` | `bincode` 2 |
//! | `conformance` | off | the [`conformance`] suite for backend tests | tokio's multi-thread runtime |
//! | `cleanup` | off | [`cleanup`]: the `ExpiredDeletion` trait and a periodic clean-up task, for stores that do not expire records themselves | tokio's runtime and timer |
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adapter;
#[cfg(feature = "axum")]
mod axum;
mod backend;
mod changes;
#[cfg(feature = "cleanup")]
pub mod cleanup;
mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod data;
mod error;
mod id;
pub mod lock;
mod policy;
mod save;
pub mod serializer;
mod session;
pub mod store;
mod users;

pub use backend::{ENDED_GRACE, IdGenerator, Lookup, SessionBackend, move_by_create_and_apply};
pub use changes::Changes;
pub use clock::Clock;
pub use data::{Lifetime, Revision, SessionData, Values};
pub use error::Error;
pub use id::{SessionId, generate_id};
pub use lock::Locking;
pub use serializer::{JsonSerializer, Serializer};
pub use session::{LazySession, Session};
pub use users::{DeviceId, MAX_USER_LEN, UserSession};

#[cfg(feature = "bincode")]
pub use serializer::BincodeSerializer;

/// Re-exported so backend crates and their users name the same version.
pub use async_trait::async_trait;
