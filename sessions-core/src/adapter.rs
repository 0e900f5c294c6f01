//! For framework adapters: how a session layer makes each request's session and saves it.
//!
//! Applications and backends never need this module: `sessionkit-tower` is the adapter for
//! tower, axum and hyper, and uses exactly what is here. It lives in this crate, apart from
//! the handler and backend API, so that an adapter for another framework drives sessions
//! the same way (the same limits, the same save rules) without depending on tower.
//!
//! One request, as an adapter runs it:
//!
//! 1. [`session`] makes the request's [`LazySession`] from the cookie's value (no backend
//!    call), to hand to the handler.
//! 2. The handler loads it ([`LazySession::load`]) and reads or changes it.
//! 3. Once the response is ready, [`commit`] saves it and answers what the cookie becomes
//!    ([`Commit`]); for a server error, or a request dropped before its answer, [`discard`]
//!    saves nothing.
//!
//! ```
//! use sessionkit_core::adapter::{self, Commit, Context, Policy};
//! use sessionkit_core::SessionBackend;
//! # use sessionkit_core::{Changes, Error, SessionData};
//! # use std::{collections::HashMap, sync::{Arc, Mutex}, time::Duration};
//! # #[derive(Default)] struct MapBackend(Mutex<HashMap<String, SessionData>>);
//! # #[async_trait::async_trait] impl SessionBackend for MapBackend {
//! #   async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> { Ok(self.0.lock().unwrap().get(id).cloned()) }
//! #   async fn create(&self, d: &SessionData, _: Option<Duration>) -> Result<String, Error> {
//! #     let id = self.generate_id(); self.0.lock().unwrap().insert(id.clone(), d.clone()); Ok(id) }
//! #   async fn apply(&self, id: &str, d: &SessionData, _: &Changes, _: Option<Duration>) -> Result<Option<String>, Error> {
//! #     self.0.lock().unwrap().insert(id.to_owned(), d.clone()); Ok(Some(id.to_owned())) }
//! #   async fn remove(&self, id: &str) -> Result<(), Error> { self.0.lock().unwrap().remove(id); Ok(()) }
//! # }
//!
//! /// What every session of one layer shares: the backend and the limits.
//! struct Layer {
//!     backend: MapBackend,
//!     policy: Policy,
//! }
//!
//! impl Context for Layer {
//!     fn backend(&self) -> &dyn SessionBackend {
//!         &self.backend
//!     }
//!     fn policy(&self) -> &Policy {
//!         &self.policy
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let layer: Arc<dyn Context> = Arc::new(Layer { backend: MapBackend::default(), policy: Policy::default() });
//!
//! // First request: no cookie.
//! let lazy = adapter::session(layer.clone(), None);
//! lazy.load().await?.insert("n", 1)?;
//! let Commit::Set { value, .. } = adapter::commit(&lazy).await? else { panic!() };
//!
//! // Second request: the client sends the cookie back.
//! let lazy = adapter::session(layer, Some(value.into()));
//! assert_eq!(lazy.load().await?.get::<u32>("n")?, Some(1));
//! assert_eq!(adapter::commit(&lazy).await?, Commit::Unchanged);
//! # Ok::<(), Error>(()) }).unwrap();
//! ```

use crate::{Error, LazySession, SessionBackend};
use std::sync::Arc;
use std::time::Duration;

pub use crate::policy::Policy;

/// What the sessions of one layer share: the backend they are stored in and the limits they
/// follow. A layer keeps one, and every request's session holds a reference to it.
pub trait Context: Send + Sync + 'static {
    /// The backend sessions are read from and saved to.
    fn backend(&self) -> &dyn SessionBackend;

    /// The time limits and failure handling sessions follow.
    fn policy(&self) -> &Policy;
}

/// A [`Context`] of just a backend and a policy: for an adapter that needs nothing more, and
/// for driving sessions by hand (a backend's own tests, a command-line tool).
#[derive(Debug, Default)]
pub struct Shared<B> {
    /// The backend sessions are stored in.
    pub backend: B,
    /// The limits they follow.
    pub policy: Policy,
}

impl<B: SessionBackend> Context for Shared<B> {
    fn backend(&self) -> &dyn SessionBackend {
        &self.backend
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// What saving a session asks of the response; returned by [`commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Commit {
    /// The session was never loaded: the response did not depend on it. Nothing to add.
    Untouched,
    /// The session was used but nothing needs saving, or another request ended or moved it
    /// while this one ran (that request's answer changes the cookie): no cookie to set.
    Unchanged,
    /// The session was saved: set the cookie to `value`.
    Set {
        /// The cookie's value.
        value: String,
        /// The cookie's `Max-Age`: the layer's, or the session's own lifetime (`None`: a
        /// browser-session cookie).
        max_age: Option<Duration>,
    },
    /// This request ended the session (emptied or deleted it), or its cookie names one that
    /// is long gone: expire the client's cookie.
    Expire,
}

/// The session of a request whose client sent `cookie` (the session cookie's value, `None`
/// when it sent none; an empty value for a cookie the adapter found unusable, which loads as
/// a fresh session without a backend call and gets the cookie expired), stored in `context`'s
/// backend under its policy. Nothing is read until the session is
/// [loaded](LazySession::load).
pub fn session(context: Arc<dyn Context>, cookie: Option<Arc<str>>) -> LazySession {
    LazySession::new(context, cookie)
}

/// Save the session if it changed and say what the response does with the cookie.
///
/// The record's TTL follows the context's [`Policy`]. A session another request ended or
/// moved meanwhile is not written back, and its cookie is left to that request
/// ([`Commit::Unchanged`]). Backend failures are returned and nothing
/// is half-saved: the response must not set a cookie then (with a fail-open policy they are
/// logged, and the session is left unsaved).
///
/// From the moment it is called the session is committed: changes through any clone fail
/// with [`Error::Committed`], and so does a second `commit`.
///
/// # Errors
///
/// What the backend returns when the save fails; [`Error::Committed`] when the session was
/// committed already.
pub async fn commit(session: &LazySession) -> Result<Commit, Error> {
    session.inner.commit().await
}

/// Take the lock of the session the client's cookie names, for a locked route, waiting as
/// `locking` says; call it before the handler runs. The lock is given back by [`commit`]
/// (in the same step as the save, where the backend allows), by [`discard`], or when the
/// session is dropped. A client without a cookie has a new session: nothing to lock.
///
/// # Errors
///
/// [`Error::LockTimeout`] when other requests of the session held the lock for the whole
/// wait (nothing of the request should run); what the backend answers when it fails, or
/// [`Error::Unsupported`] when it cannot lock.
pub async fn lock(session: &LazySession, locking: &crate::Locking) -> Result<(), Error> {
    session.lock(locking).await
}

/// Commit the session without saving anything: what an adapter does when the response is a
/// server error or the request was dropped. Later changes fail with [`Error::Committed`].
/// Doing it again, or after [`commit`], does nothing.
pub fn discard(session: &LazySession) {
    session.inner.discard();
}
