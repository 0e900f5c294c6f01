//! The contract of sessionkit: pluggable sessions for tower-based Rust web
//! stacks (axum, hyper).
//!
//! This crate defines what the other crates agree on:
//!
//! - [`Session`], the cheap-to-clone handle a handler reads and writes;
//! - [`SessionBackend`], the trait every storage backend implements;
//! - [`Serializer`], with [`JsonSerializer`] (default) and `BincodeSerializer` (feature
//!   `bincode`), for backends that store bytes;
//! - [`SessionData`], the stored record: values plus created / last-access metadata, and the
//!   user it is bound to;
//! - [`UserSession`] and [`SessionHandle`], how a backend lists a user's sessions for "log
//!   out everywhere";
//! - [`Error`], one enum naming every cause;
//! - [`store`], the helpers every backend that stores bytes shares (masked ids, corrupt
//!   records, creation under a fresh id);
//! - the [`conformance`] suite (feature `conformance`) that every backend passes.
//!
//! Applications use it through `sessionkit-tower` (the middleware) and a backend crate:
//! `sessionkit-memory`, `sessionkit-cookie`, `sessionkit-redis` or `sessionkit-sql`. A third-party
//! backend depends on this crate alone.
//!
//! # A session, by hand
//!
//! The layer in `sessionkit-tower` does all of this for each request; shown here without it:
//!
//! ```
//! use sessionkit_core::{Commit, Session, SessionBackend};
//! # use sessionkit_core::{Error, SessionData};
//! # use std::{collections::HashMap, sync::{Arc, Mutex}, time::Duration};
//! # #[derive(Default)] struct MapBackend(Mutex<HashMap<String, SessionData>>);
//! # #[async_trait::async_trait] impl SessionBackend for MapBackend {
//! #   async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> { Ok(self.0.lock().unwrap().get(id).cloned()) }
//! #   async fn write(&self, id: Option<&str>, d: &SessionData, _: Option<Duration>) -> Result<String, Error> {
//! #     let id = id.map(str::to_owned).unwrap_or_else(|| self.generate_id());
//! #     self.0.lock().unwrap().insert(id.clone(), d.clone()); Ok(id) }
//! #   async fn remove(&self, id: &str) -> Result<(), Error> { self.0.lock().unwrap().remove(id); Ok(()) }
//! #   async fn exists(&self, id: &str) -> Result<bool, Error> { Ok(self.0.lock().unwrap().contains_key(id)) }
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let backend: Arc<dyn SessionBackend> = Arc::new(MapBackend::default());
//!
//! // First request: no cookie.
//! let session = Session::new(backend.clone(), None);
//! assert!(session.get::<u32>("n").is_err()); // not loaded yet
//! session.load().await?;
//! session.insert("n", 1)?;
//! let Commit::Set(cookie) = session.commit().await? else { panic!() };
//!
//! // Second request: the client sends the cookie back.
//! let session = Session::new(backend, Some(cookie.into()));
//! session.load().await?;
//! assert_eq!(session.get::<u32>("n")?, Some(1));
//! # Ok::<(), Error>(()) }).unwrap();
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds | pulls in |
//! |---|---|---|---|
//! | `axum` | off | [`Session`] as an axum extractor, [`Error`] as a response | `axum-core`, `http` |
//! | `bincode` | off | `BincodeSerializer` | `bincode` 2 |
//! | `conformance` | off | the [`conformance`] suite for backend tests | tokio's multi-thread runtime |
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod axum;
mod backend;
mod changes;
#[cfg(feature = "conformance")]
pub mod conformance;
mod data;
mod error;
mod id;
mod policy;
pub mod serializer;
mod session;
pub mod store;
mod users;

pub use backend::{Applied, IdGenerator, SessionBackend};
pub use changes::Changes;
pub use data::{Lifetime, Revision, SessionData, Values, unix_now};
pub use error::{BoxError, Error};
pub use id::{ID_RANDOM_BYTES, SessionId, generate_id};
pub use policy::Policy;
pub use serializer::{JsonSerializer, Serializer};
pub use session::{Commit, LoadedSession, Session};
pub use users::{MAX_USER_LEN, SessionHandle, UserSession};

#[cfg(feature = "bincode")]
pub use serializer::BincodeSerializer;

/// Re-exported so backend crates and their users name the same version.
pub use async_trait::async_trait;
