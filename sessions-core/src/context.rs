//! How a session layer hands the request's session to the code it wraps.
//!
//! The layer runs the inner service's future inside a [`SessionContext`] scope (a tokio
//! task-local), and [`Session::current`] (or the axum extractor) finds it there. The session's
//! shared state is only allocated when a handler first asks for it, so requests that never use
//! the session cost almost nothing: no allocation, no request-extension entry.

use crate::{Error, Policy, Session, SessionBackend};
use std::cell::{Cell, OnceCell};
use std::future::Future;
use std::sync::Arc;

pub use tokio::task::futures::TaskLocalFuture;

tokio::task_local! {
    static CURRENT: SessionContext;
}

/// The session context of one request, as a session layer sets it up.
pub struct SessionContext {
    backend: Arc<dyn SessionBackend>,
    cookie: Cell<Option<Arc<str>>>,
    autoload: bool,
    policy: Arc<Policy>,
    session: OnceCell<Session>,
}

impl std::fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionContext")
            .field("autoload", &self.autoload)
            .field("session", &self.session.get())
            .finish_non_exhaustive()
    }
}

impl SessionContext {
    /// A context whose session, once asked for, reads from `backend` with the client's
    /// `cookie` value. With `autoload`, [`Session::current_autoloaded`] (and so the axum
    /// extractor) loads the session before handing it out.
    pub fn new(
        backend: Arc<dyn SessionBackend>,
        cookie: Option<Arc<str>>,
        autoload: bool,
        policy: Arc<Policy>,
    ) -> Self {
        SessionContext {
            backend,
            cookie: Cell::new(cookie),
            autoload,
            policy,
            session: OnceCell::new(),
        }
    }

    /// The request's session, created on first use.
    pub fn session(&self) -> &Session {
        self.session.get_or_init(|| {
            let cookie = self.cookie.take();
            Session::with_policy(Arc::clone(&self.backend), cookie, *self.policy)
        })
    }

    /// The session, if anything asked for it.
    pub fn into_session(self) -> Option<Session> {
        self.session.into_inner()
    }

    /// Run `future` with this context as the current one.
    pub fn scope<F: Future>(self, future: F) -> TaskLocalFuture<SessionContext, F> {
        CURRENT.scope(self, future)
    }
}

impl Session {
    /// The session of the request being handled: available inside the future of a service
    /// wrapped by a session layer.
    ///
    /// Fails with [`Error::MissingLayer`] outside such a future (no layer, a request outside
    /// the cookie path, or a task spawned off the request: extract the session first and move
    /// the handle into the task).
    pub fn current() -> Result<Session, Error> {
        CURRENT
            .try_with(|context| context.session().clone())
            .map_err(|_| Error::MissingLayer)
    }

    /// The session of the request being handled, loaded first when the layer has `autoload`
    /// on: what the axum extractor returns. Load failures are returned (with a fail-open
    /// policy the session is empty and unsaved instead).
    pub async fn current_autoloaded() -> Result<Session, Error> {
        let (session, autoload) = CURRENT
            .try_with(|context| (context.session().clone(), context.autoload))
            .map_err(|_| Error::MissingLayer)?;
        if autoload {
            session.load().await?;
        }
        Ok(session)
    }
}
