//! The handler's side: [`LazySession`], the request's session before it is read, and
//! [`Session`], the loaded session whose values a handler reads and writes.

use crate::adapter::Context;
use crate::{
    Changes, DeviceId, Error, Lifetime, Lookup, MAX_USER_LEN, SessionData, SessionId, UserSession,
    Values,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

/// The request's session before it is read from the backend: what a session layer puts into
/// the request's extensions, and what middleware that may not need the session takes.
///
/// Its only way to the data is [`load`](LazySession::load), which reads the session (once;
/// later calls answer at once) and returns the [`Session`] whose values can be read and
/// written. A request that never loads its session costs no backend call, and a client
/// without a cookie costs none even when it does.
///
/// ```
/// # use sessionkit_core::{Error, LazySession};
/// // A middleware that reads the session only on some requests.
/// async fn audit(session: LazySession, sensitive: bool) -> Result<(), Error> {
///     if sensitive {
///         let session = session.load().await?;
///         let user: Option<String> = session.get("user")?;
///         println!("sensitive request by {user:?}");
///     }
///     Ok(())
/// }
/// ```
///
/// Handlers take [`Session`] instead, which is loaded before they run.
#[derive(Clone)]
pub struct LazySession {
    pub(crate) inner: Arc<Inner>,
}

/// The request's session, loaded: its values, typed, read and written synchronously.
///
/// A handler takes it as an extractor (feature `axum`), which loads it before the handler
/// runs; code holding a [`LazySession`] gets it from [`LazySession::load`]. Clones share
/// the session. The layer saves it once the handler's response is ready: unchanged, it
/// costs no write and no `Set-Cookie`.
///
/// ```
/// # use sessionkit_core::{Error, Session};
/// async fn count(session: Session) -> Result<String, Error> {
///     let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
///     session.insert("visits", visits)?;
///     Ok(format!("visit number {visits}"))
/// }
/// ```
///
/// Values are stored as JSON values: anything `serde` can serialize goes in, and
/// [`get`](Session::get) deserializes it back into the type asked for.
///
/// The accessors are synchronous, so a handler ported from an API whose accessors are
/// `async` does not compile until the `.await` goes:
///
/// ```compile_fail
/// # async fn handler(session: sessionkit_core::Session) -> Result<(), sessionkit_core::Error> {
/// let n: Option<u64> = session.get("n").await?;
/// # Ok(()) }
/// ```
///
/// # After the response
///
/// Once the layer has saved the session with its response, changes through any clone (a
/// task the handler spawned, a streaming body) fail with [`Error::Committed`] instead of
/// being lost without a word; reads still work. Work that outlives the request opens the
/// session again through the layer (`SessionLayer::open` in `sessionkit-tower`), which
/// keeps the layer's limits, and saves it there.
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The backend and the limits, shared by every session of one layer.
    pub(crate) context: Arc<dyn Context>,
    /// The value the client sent in its cookie, not yet verified.
    pub(crate) cookie: Option<Arc<str>>,
    pub(crate) state: Mutex<State>,
    /// Whether the request ever took its session's lock (a locked route): only then do the
    /// save and the end of the request look for a lock to give back.
    pub(crate) locked: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) loaded: bool,
    pub(crate) data: SessionData,
    /// The id of the record this session was loaded from (verified by a read).
    pub(crate) record: Option<Arc<str>>,
    pub(crate) changed: bool,
    /// What changed since the load, applied to the stored record when the session is saved.
    pub(crate) changes: Changes,
    pub(crate) regenerate: bool,
    /// A record found past a time limit: removed when the session is saved.
    pub(crate) stale: Option<Arc<str>>,
    /// The store failed and the policy is to fail open: never save this session.
    pub(crate) unsaved: bool,
    /// Another request ended or moved the session this request's cookie named while this
    /// one ran: nothing this request does is saved, and its answer leaves the cookie alone.
    pub(crate) overlapped_end: bool,
    /// The session was saved (or discarded) with its response: no more changes.
    pub(crate) committed: bool,
    /// The session's lock, on a locked route: given back by the save, or when the request
    /// ends without one.
    pub(crate) lock: Option<Box<crate::lock::HeldLock>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A request that ended without saving or discarding (its future dropped, a panic
        // unwinding) gives its lock back.
        if !*self.locked.get_mut() {
            return;
        }
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = state.lock.take() {
            crate::lock::spawn_release(Arc::clone(&self.context), held);
        }
    }
}

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a plain assignment, so a panic elsewhere while holding
        // the lock leaves it consistent: a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LazySession {
    pub(crate) fn new(context: Arc<dyn Context>, cookie: Option<Arc<str>>) -> Self {
        LazySession {
            inner: Arc::new(Inner {
                context,
                cookie,
                state: Mutex::new(State::default()),
                locked: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Read the session from the backend, once: later calls (through any clone) return the
    /// same session at once.
    ///
    /// A client without a cookie, or whose cookie names no live record (unknown, expired,
    /// forged), gets an empty session without error; an id the backend does not know is never
    /// adopted: if the session is saved it gets a fresh id.
    ///
    /// # Errors
    ///
    /// What the backend returns when it fails ([`Error::Backend`], or
    /// [`Error::Serialization`] for a record that cannot be decoded under a strict policy);
    /// with a layer that fails open, the session is empty and never saved instead.
    pub async fn load(&self) -> Result<Session, Error> {
        if !self.is_loaded() {
            let read = match self.inner.cookie.as_deref() {
                // An empty value stands for a cookie the layer found unusable: a fresh
                // session, no backend call.
                Some(cookie) if !cookie.is_empty() => {
                    self.inner.context.backend().lookup(cookie).await
                }
                _ => Ok(Lookup::Missing),
            };
            self.settle_load(read)?;
        }
        Ok(Session {
            inner: Arc::clone(&self.inner),
        })
    }

    /// Read the session again (it was read before its lock was taken), keeping the lock and
    /// applying the changes made so far to the record as read now.
    pub(crate) async fn reload(&self) -> Result<(), Error> {
        let (changes, changed, regenerate) = {
            let mut state = self.inner.state();
            let lock = state.lock.take();
            let before = std::mem::take(&mut *state);
            state.lock = lock;
            (before.changes, before.changed, before.regenerate)
        };
        self.load().await?;
        if changed {
            let mut state = self.inner.state();
            let now = self.inner.context.policy().now();
            state.data = changes.applied_to(&state.data, now);
            state.changes = changes;
            state.changed = true;
            state.regenerate = regenerate;
        }
        Ok(())
    }

    /// Whether [`load`](LazySession::load) has completed: the layer's `autoload`, or earlier
    /// code, read the session already.
    pub fn is_loaded(&self) -> bool {
        self.inner.state().loaded
    }

    /// Settle a load with what the backend answered.
    fn settle_load(&self, read: Result<Lookup, Error>) -> Result<(), Error> {
        let policy = self.inner.context.policy();
        let record = match read {
            Ok(Lookup::Live(record)) => Some(record),
            Ok(Lookup::Ended) => {
                // Another request ended or moved this session moments ago: this one
                // overlapped it, and leaves the client's cookie to that request.
                let mut state = self.inner.state();
                if !state.loaded {
                    state.loaded = true;
                    state.overlapped_end = true;
                }
                return Ok(());
            }
            Ok(_) => None,
            Err(error) if policy.fail_open => {
                tracing::warn!(%error, "session store failed; continuing with an empty, unsaved session");
                let mut state = self.inner.state();
                if !state.loaded {
                    state.loaded = true;
                    state.unsaved = true;
                }
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let mut state = self.inner.state();
        if !state.loaded {
            state.loaded = true;
            if let Some(data) = record {
                if (policy.has_limits() || data.lifetime().is_some())
                    && policy.expired(&data, policy.now())
                {
                    // Past a limit: empty, whatever the store still holds.
                    state.stale = self.inner.cookie.clone();
                } else {
                    state.data = data;
                    state.record = self.inner.cookie.clone();
                }
            }
        }
        Ok(())
    }
}

/// A loaded session as a lazy one, whose [`load`](LazySession::load) answers at once.
impl From<Session> for LazySession {
    fn from(session: Session) -> Self {
        LazySession {
            inner: session.inner,
        }
    }
}

impl Session {
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
    }

    /// The state, for a change: refused once the session was saved with its response.
    fn writable(&self) -> Result<MutexGuard<'_, State>, Error> {
        let state = self.state();
        if state.committed {
            Err(Error::Committed)
        } else {
            Ok(state)
        }
    }

    /// The value under `key`, deserialized as `T`; `None` when there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Serialization`] when the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.state().data.values().get(key) {
            Some(value) => T::deserialize(value).map(Some).map_err(Error::decode),
            None => Ok(None),
        }
    }

    /// Store `value` under `key`. Storing a value equal to the one already there is not a
    /// change and causes no write.
    ///
    /// # Errors
    ///
    /// [`Error::Serialization`] when `value` cannot be serialized; [`Error::Committed`]
    /// after the response.
    pub fn insert(&self, key: &str, value: impl Serialize) -> Result<(), Error> {
        let value = serde_json::to_value(value).map_err(Error::encode)?;
        let mut state = self.writable()?;
        if state.data.values().get(key) == Some(&value) {
            return Ok(());
        }
        state.changes.set(key, value.clone());
        state.data.values_mut().insert(key.to_owned(), value);
        state.changed = true;
        Ok(())
    }

    /// Remove the value under `key`, returning it.
    ///
    /// # Errors
    ///
    /// [`Error::Committed`] after the response.
    pub fn remove(&self, key: &str) -> Result<Option<Value>, Error> {
        let mut state = self.writable()?;
        if !state.data.values().contains_key(key) {
            return Ok(None);
        }
        state.changes.remove(key);
        state.changed = true;
        Ok(state.data.values_mut().remove(key))
    }

    /// Remove the value under `key` and return it deserialized as `T`: a one-time value such
    /// as a flash message. `None` when there was none (nothing changes then).
    ///
    /// ```
    /// # async fn handler(session: sessionkit_core::Session) -> Result<String, sessionkit_core::Error> {
    /// let flash: Option<String> = session.take("flash")?; // shown once
    /// Ok(flash.unwrap_or_default())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Serialization`] when the stored value is not a `T` (it stays where it is);
    /// [`Error::Committed`] after the response.
    pub fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let mut state = self.writable()?;
        let Some(value) = state.data.values().get(key) else {
            return Ok(None);
        };
        let taken = T::deserialize(value).map_err(Error::decode)?;
        state.changes.remove(key);
        state.data.values_mut().remove(key);
        state.changed = true;
        Ok(Some(taken))
    }

    /// Remove every value, and the user binding ([`set_user`](Session::set_user)). An
    /// emptied session is removed from the backend when the response is sent, and the
    /// client's cookie is expired.
    ///
    /// # Errors
    ///
    /// [`Error::Committed`] after the response.
    pub fn clear(&self) -> Result<(), Error> {
        let mut state = self.writable()?;
        if !state.data.is_empty() {
            state.changes.clear();
            state.data.values_mut().clear();
            state.data.set_user(None);
            state.changed = true;
        }
        Ok(())
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> Vec<String> {
        self.state().data.values().keys().cloned().collect()
    }

    /// How many values the session holds.
    pub fn len(&self) -> usize {
        self.state().data.values().len()
    }

    /// Whether the session holds nothing: no values and no user (an empty session is not
    /// stored).
    pub fn is_empty(&self) -> bool {
        self.state().data.is_empty()
    }

    /// A copy of all values.
    pub fn values(&self) -> Values {
        self.state().data.values().clone()
    }

    /// Move the session to a fresh id when it is saved, and remove the record under the old
    /// one: the defence against session fixation, to call after a login.
    ///
    /// # Errors
    ///
    /// [`Error::Committed`] after the response.
    pub fn regenerate_id(&self) -> Result<(), Error> {
        let mut state = self.writable()?;
        state.regenerate = true;
        state.changed = true;
        Ok(())
    }

    /// End the session now: remove its record from the backend and clear its values. The
    /// client's cookie is expired when the response is sent. Values inserted afterwards start
    /// a new session under a fresh id.
    ///
    /// # Errors
    ///
    /// What the backend returns when the removal fails; [`Error::Committed`] after the
    /// response.
    pub async fn delete(&self) -> Result<(), Error> {
        let id = {
            let state = self.writable()?;
            state.record.clone().or_else(|| state.stale.clone())
        };
        if let Some(id) = id.as_deref() {
            // On a locked route: only while the lock is still this request's.
            self.inner.renew_lock(id).await?;
            self.inner.context.backend().remove(id).await?;
        }
        let mut state = self.state();
        state.record = None;
        state.stale = None;
        state.data = SessionData::default();
        state.changes = Changes::default();
        state.regenerate = false;
        state.changed = true;
        Ok(())
    }

    /// Give this session a lifetime of its own, overriding the layer's `max_age` for it: the
    /// "remember me" of a login form. Stored with the record and enforced on the server (the
    /// layer's idle and absolute limits still cap it); the cookie's `Max-Age` and the record's
    /// TTL follow it from this response on. `None` goes back to the layer's.
    ///
    /// ```
    /// # use sessionkit_core::{Error, Lifetime, Session};
    /// # use std::time::Duration;
    /// # async fn login(session: Session, remember: bool) -> Result<(), Error> {
    /// session.regenerate_id()?;
    /// session.set_lifetime(Some(if remember {
    ///     Lifetime::Inactivity(Duration::from_secs(30 * 24 * 60 * 60)) // 30 days
    /// } else {
    ///     Lifetime::BrowserSession // gone when the browser closes
    /// }))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Committed`] after the response.
    pub fn set_lifetime(&self, lifetime: Option<Lifetime>) -> Result<(), Error> {
        let mut state = self.writable()?;
        if state.data.lifetime() == lifetime {
            return Ok(());
        }
        state.changes.set_lifetime(lifetime);
        state.data.set_lifetime(lifetime);
        state.changed = true;
        Ok(())
    }

    /// The session's own lifetime, when it has one.
    pub fn lifetime(&self) -> Option<Lifetime> {
        self.state().data.lifetime()
    }

    /// Bind the session to `user` (a user id, an account name: the principal it belongs to),
    /// stored with the record. It is what lets the backend list and revoke a user's
    /// sessions: [`user_sessions`](Session::user_sessions),
    /// [`revoke_other_sessions`](Session::revoke_other_sessions), and the backend's own
    /// `revoke_user_sessions` for an admin. The binding stays with the session through
    /// [`regenerate_id`](Session::regenerate_id) and goes with [`delete`](Session::delete)
    /// and [`clear`](Session::clear). A session with a user and no values is still stored.
    ///
    /// ```
    /// # use sessionkit_core::{Error, Session};
    /// # async fn login(session: Session, user_id: u64) -> Result<(), Error> {
    /// session.regenerate_id()?; // a fresh id after a login
    /// session.set_user(user_id.to_string())?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUser`] for an empty user, one over [`MAX_USER_LEN`] bytes or one
    /// holding a NUL character; [`Error::Committed`] after the response.
    pub fn set_user(&self, user: impl Into<String>) -> Result<(), Error> {
        let user: String = user.into();
        if user.is_empty() || user.len() > MAX_USER_LEN || user.contains('\0') {
            return Err(Error::InvalidUser { len: user.len() });
        }
        let mut state = self.writable()?;
        if state.data.user() == Some(user.as_str()) {
            return Ok(());
        }
        let user: Arc<str> = user.into();
        state.changes.set_user(Some(Arc::clone(&user)));
        state.data.set_user(Some(user));
        state.changed = true;
        Ok(())
    }

    /// Unbind the session from its user, keeping its values.
    ///
    /// # Errors
    ///
    /// [`Error::Committed`] after the response.
    pub fn clear_user(&self) -> Result<(), Error> {
        let mut state = self.writable()?;
        if state.data.user().is_some() {
            state.changes.set_user(None);
            state.data.set_user(None);
            state.changed = true;
        }
        Ok(())
    }

    /// The user the session is bound to, when it is.
    pub fn user(&self) -> Option<String> {
        self.state().data.user().map(str::to_owned)
    }

    /// The live sessions of this session's user, most recently used first, this one marked
    /// [`current`](UserSession::current): a "your devices" page. Empty when the session is
    /// bound to no user.
    ///
    /// ```
    /// # use sessionkit_core::{Error, Session};
    /// # async fn devices(session: Session) -> Result<String, Error> {
    /// let mut page = String::new();
    /// for device in session.user_sessions().await? {
    ///     let agent: String = device.get("user_agent").unwrap_or_default();
    ///     let here = if device.current { " (this device)" } else { "" };
    ///     page += &format!("{agent}{here} [{}]\n", device.id);
    /// }
    /// # Ok(page) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] on a backend that keeps no index of sessions by user (the cookie
    /// backend); backend failures.
    pub async fn user_sessions(&self) -> Result<Vec<UserSession>, Error> {
        let (user, id) = self.user_and_id();
        let Some(user) = user else {
            return Ok(Vec::new());
        };
        let mut sessions = self.inner.context.backend().user_sessions(&user).await?;
        if let Some(id) = id {
            let current = DeviceId::of(&id);
            for session in &mut sessions {
                session.current = session.id == current;
            }
        }
        Ok(sessions)
    }

    /// End every other session of this session's user ("sign out of other devices", after a
    /// password change); how many were ended. This session stays. Those sessions read as
    /// missing from their next request on, and their cookies are expired then. `Ok(0)` when
    /// the session is bound to no user. To end this one too, [`delete`](Session::delete) it
    /// after.
    ///
    /// ```
    /// # use sessionkit_core::{Error, Session};
    /// # async fn change_password(session: Session) -> Result<String, Error> {
    /// // ... the new password is stored ...
    /// let ended = session.revoke_other_sessions().await?;
    /// Ok(format!("signed out of {ended} other devices"))
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] on a backend that keeps no index of sessions by user (the cookie
    /// backend); backend failures.
    pub async fn revoke_other_sessions(&self) -> Result<usize, Error> {
        match self.user_and_id() {
            (Some(user), id) => {
                self.inner
                    .context
                    .backend()
                    .revoke_user_sessions(&user, id.as_deref())
                    .await
            }
            (None, _) => Ok(0),
        }
    }

    /// End the session of this session's user whose [`DeviceId`] is `device` (from
    /// [`user_sessions`](Session::user_sessions)): "sign out this device". `false` when the
    /// user has no live session with that id.
    ///
    /// # Errors
    ///
    /// As [`revoke_other_sessions`](Session::revoke_other_sessions).
    pub async fn revoke_session(&self, device: &DeviceId) -> Result<bool, Error> {
        match self.user_and_id() {
            (Some(user), _) => {
                self.inner
                    .context
                    .backend()
                    .revoke_user_session(&user, device)
                    .await
            }
            (None, _) => Ok(false),
        }
    }

    /// The user the session is bound to, and the id it is stored under.
    fn user_and_id(&self) -> (Option<String>, Option<Arc<str>>) {
        let state = self.state();
        (state.data.user().map(str::to_owned), state.record.clone())
    }

    /// The id of the stored record this session was loaded from (or saved to): `None` for a
    /// session not stored yet.
    pub fn id(&self) -> Option<SessionId> {
        self.state().record.as_deref().map(SessionId::new)
    }

    /// When the session was first stored (now, for a session not stored yet).
    pub fn created(&self) -> SystemTime {
        let state = self.state();
        if state.record.is_some() {
            state.data.created()
        } else {
            self.inner.context.policy().clock.now()
        }
    }

    /// When the session was last written (now, for a session not stored yet).
    pub fn last_access(&self) -> SystemTime {
        let state = self.state();
        if state.record.is_some() {
            state.data.last_access()
        } else {
            self.inner.context.policy().clock.now()
        }
    }

    /// How long the session has left before its nearest time limit (idle, absolute or the
    /// cookie's max age), or `None` when none applies.
    pub fn remaining(&self) -> Option<Duration> {
        let state = self.state();
        let now = self.inner.context.policy().now();
        let fresh;
        let data = if state.record.is_some() {
            &state.data
        } else {
            fresh = SessionData::from_parts(Values::new(), now, now);
            &fresh
        };
        self.inner.context.policy().remaining(data, now)
    }
}

impl fmt::Debug for LazySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazySession")
            .field("loaded", &self.is_loaded())
            .field("cookie", &self.inner.cookie.is_some())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("stored", &state.record.is_some())
            .field("changed", &state.changed)
            .field("committed", &state.committed)
            .field("len", &state.data.values().len())
            .finish_non_exhaustive()
    }
}
