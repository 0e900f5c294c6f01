//! How a session layer hands the request's session to the code it wraps.
//!
//! The layer polls the inner service's future with the request's [`SessionContext`] made
//! current ([`SessionContext::enter`]), and [`Session::current`] (or the axum extractor) finds
//! it there. Like a task-local, the context is current only while that future is being
//! polled: a task spawned off the request does not see it when the runtime polls it. Unlike a
//! task-local it belongs to the thread, so a future polled *inside* the request's poll by a
//! nested executor (`LocalSet::run_until`, `block_on`) sees it too. The session's shared state
//! is only allocated when a handler first asks for it, so requests that never use the session
//! cost almost nothing: no allocation, no request-extension entry.

use crate::{Error, Session, SessionSettings};
use std::cell::{Cell, OnceCell, RefCell};
use std::sync::Arc;

thread_local! {
    /// The context of the request whose future this thread is polling, if any.
    static CURRENT: RefCell<Option<SessionContext>> = const { RefCell::new(None) };
}

/// The session context of one request, as a session layer sets it up.
///
/// Small (four words), as it moves into a thread-local and back on every poll of the
/// request's future: what the layer's sessions share sits behind one [`Arc`].
pub struct SessionContext {
    settings: Arc<SessionSettings>,
    cookie: Cell<Option<Arc<str>>>,
    session: OnceCell<Session>,
}

// The size its docs promise: it moves on every poll of the request's future.
const _: () = assert!(std::mem::size_of::<SessionContext>() == 4 * std::mem::size_of::<usize>());

impl std::fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionContext")
            .field("settings", &self.settings)
            .field("session", &self.session.get())
            .finish_non_exhaustive()
    }
}

impl SessionContext {
    /// A context whose session, once asked for, follows `settings` (backend, policy,
    /// `autoload`) with the client's `cookie` value.
    pub fn new(settings: Arc<SessionSettings>, cookie: Option<Arc<str>>) -> Self {
        SessionContext {
            settings,
            cookie: Cell::new(cookie),
            session: OnceCell::new(),
        }
    }

    /// The request's session, created on first use.
    pub fn session(&self) -> &Session {
        self.session.get_or_init(|| {
            let cookie = self.cookie.take();
            Session::with_settings(Arc::clone(&self.settings), cookie)
        })
    }

    /// The session, if anything asked for it.
    pub fn into_session(self) -> Option<Session> {
        self.session.into_inner()
    }

    /// Run `f` (a poll of the request's future) with the context in `slot` as the current
    /// one, and put it back in `slot` afterwards, also when `f` panics. A context entered
    /// inside another (nested layers) is current until its `f` returns; then the outer one
    /// is again. With `None` in `slot`, `f` runs with no context current.
    ///
    /// The context moves into a thread-local for the call and back out: no allocation, and
    /// the handle a handler took stays valid after (it shares the session, not the context).
    pub fn enter<R>(slot: &mut Option<SessionContext>, f: impl FnOnce() -> R) -> R {
        /// Swaps the context back into the caller's slot when the call ends.
        struct Leave<'a>(&'a mut Option<SessionContext>);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                swap_current(self.0);
            }
        }
        if !swap_current(slot) {
            // The thread is shutting down its thread-locals: nothing can be current.
            return f();
        }
        let _leave = Leave(slot);
        f()
    }
}

/// Swap `slot` with the current context; `false` when the thread-local is gone (the thread is
/// exiting) or in use, in which case nothing moved.
fn swap_current(slot: &mut Option<SessionContext>) -> bool {
    CURRENT
        .try_with(|current| match current.try_borrow_mut() {
            Ok(mut current) => {
                std::mem::swap(slot, &mut *current);
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false)
}

/// `f` applied to the current context; [`Error::MissingLayer`] when there is none.
fn with_current<R>(f: impl FnOnce(&SessionContext) -> R) -> Result<R, Error> {
    CURRENT
        .try_with(|current| match current.try_borrow() {
            Ok(current) => current.as_ref().map(f),
            Err(_) => None,
        })
        .ok()
        .flatten()
        .ok_or(Error::MissingLayer)
}

impl Session {
    /// The session of the request being handled: available inside the future of a service
    /// wrapped by a session layer.
    ///
    /// Fails with [`Error::MissingLayer`] outside such a future (no layer, a request outside
    /// the cookie path, or a task spawned off the request: extract the session first and move
    /// the handle into the task).
    pub fn current() -> Result<Session, Error> {
        with_current(|context| context.session().clone())
    }

    /// The session of the request being handled, loaded first when the layer has `autoload`
    /// on: what the axum extractor returns. Load failures are returned (with a fail-open
    /// policy the session is empty and unsaved instead).
    pub async fn current_autoloaded() -> Result<Session, Error> {
        let (session, autoload) =
            with_current(|context| (context.session().clone(), context.settings.autoload()))?;
        if autoload {
            session.load().await?;
        }
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SessionBackend, SessionData};
    use std::time::Duration;

    struct Nothing;

    #[async_trait::async_trait]
    impl SessionBackend for Nothing {
        async fn read(&self, _: &str) -> Result<Option<SessionData>, Error> {
            Ok(None)
        }
        async fn write(
            &self,
            _: Option<&str>,
            _: &SessionData,
            _: Option<Duration>,
        ) -> Result<String, Error> {
            Err(Error::backend("this backend stores nothing"))
        }
        async fn remove(&self, _: &str) -> Result<(), Error> {
            Ok(())
        }
        async fn exists(&self, _: &str) -> Result<bool, Error> {
            Ok(false)
        }
    }

    fn context(cookie: &str) -> Option<SessionContext> {
        let settings = SessionSettings::new(Arc::new(Nothing), crate::Policy::default(), false);
        Some(SessionContext::new(
            Arc::new(settings),
            Some(Arc::from(cookie)),
        ))
    }

    fn current_cookie() -> Option<String> {
        Session::current()
            .ok()
            .and_then(|s| s.cookie_value().map(str::to_owned))
    }

    #[test]
    fn the_context_is_current_only_inside_enter_and_comes_back_to_its_slot() {
        assert!(matches!(Session::current(), Err(Error::MissingLayer)));
        let mut slot = context("outer");
        let seen = SessionContext::enter(&mut slot, current_cookie);
        assert_eq!(seen.as_deref(), Some("outer"));
        assert!(matches!(Session::current(), Err(Error::MissingLayer)));
        // The session a handler took is the one the layer gets back.
        let session = slot.take().and_then(SessionContext::into_session);
        assert_eq!(
            session
                .and_then(|s| s.cookie_value().map(str::to_owned))
                .as_deref(),
            Some("outer")
        );
    }

    #[test]
    fn a_nested_context_shadows_the_outer_one_until_it_leaves() {
        let mut outer = context("outer");
        let mut inner = context("inner");
        let seen = SessionContext::enter(&mut outer, || {
            let before = current_cookie();
            let nested = SessionContext::enter(&mut inner, current_cookie);
            (before, nested, current_cookie())
        });
        assert_eq!(
            seen,
            (
                Some("outer".into()),
                Some("inner".into()),
                Some("outer".into())
            )
        );
        assert!(
            outer.is_some() && inner.is_some(),
            "both contexts back in their slots"
        );
    }

    #[test]
    fn a_panic_inside_enter_puts_the_context_back() {
        let mut slot = context("survivor");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SessionContext::enter(&mut slot, || panic!("the handler panicked"))
        }));
        assert!(result.is_err());
        assert!(slot.is_some(), "the context is back in its slot");
        assert!(matches!(Session::current(), Err(Error::MissingLayer)));
    }

    #[test]
    fn a_future_polled_inside_the_request_poll_by_a_nested_executor_sees_the_context() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut slot = context("outer");
        let seen =
            SessionContext::enter(&mut slot, || runtime.block_on(async { current_cookie() }));
        assert_eq!(seen.as_deref(), Some("outer"));
    }

    #[test]
    fn an_empty_slot_enters_nothing() {
        let mut slot = None;
        assert_eq!(SessionContext::enter(&mut slot, current_cookie), None);
    }
}
