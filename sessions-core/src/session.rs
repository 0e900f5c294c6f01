use crate::{
    Applied, Changes, Error, Lifetime, MAX_USER_LEN, Policy, SessionBackend, SessionData,
    SessionHandle, SessionId, UserSession, Values, unix_now,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

/// The session of one request: a cheap-to-clone handle on shared state.
///
/// A session layer makes one per request from the request's cookie and puts it into the
/// request's extensions. Handlers take it as an extractor (feature `axum`); a plain tower or
/// hyper service reads `req.extensions().get::<Session>()`. Nothing is read from the backend
/// until [`load`](Session::load) is called (or the layer's `autoload` does it): reading or
/// writing before that is [`Error::NotLoaded`].
///
/// ```
/// # use sessionkit_core::Session;
/// # async fn handler(session: Session) -> Result<String, sessionkit_core::Error> {
/// session.load().await?;
/// let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
/// session.insert("visits", visits)?;
/// Ok(format!("visit number {visits}"))
/// # }
/// ```
///
/// Values are stored as JSON values: anything `serde` can serialize goes in, and
/// [`get`](Session::get) deserializes it back into the type asked for.
///
/// # After the response
///
/// The layer saves the session once the handler's response is ready; from then on the
/// session is *committed*, and [`insert`](Session::insert), [`remove`](Session::remove),
/// [`clear`](Session::clear), [`regenerate_id`](Session::regenerate_id) and
/// [`delete`](Session::delete) on any clone fail with [`Error::Committed`] instead of being
/// lost without a word. Work that outlives the request (a spawned task, a streaming body)
/// and must change a server-side session opens it again by id, under the layer's policy (its
/// limits give the record its TTL: `SessionLayer::policy()`), and commits it itself:
///
/// ```
/// # use sessionkit_core::{Error, Policy, Session, SessionBackend};
/// # use std::sync::Arc;
/// async fn record_report(
///     backend: Arc<dyn SessionBackend>,
///     policy: Policy, // the layer's: `layer.policy()`
///     id: String,
/// ) -> Result<(), Error> {
///     let session = Session::with_policy(backend, Some(id.into()), policy);
///     session.load().await?;
///     session.insert("report", "ready")?;
///     session.commit().await?; // saved; there is no response to carry a cookie
///     Ok(())
/// }
/// ```
///
/// (With the cookie backend the session travels in the cookie, which has already left with
/// the response: such changes cannot reach the client.)
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn SessionBackend>,
    policy: Policy,
    /// The value the client sent in its cookie, not yet verified.
    cookie: Option<Arc<str>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    data: SessionData,
    /// The id of the record this session was loaded from (verified by a read).
    record: Option<Arc<str>>,
    /// The user the record is bound to as stored, kept when this request first changes the
    /// binding (`data` then holds the new one); `None` while it has not.
    stored_user: Option<Option<Arc<str>>>,
    changed: bool,
    /// What changed since the load, applied to the stored record when the session is saved.
    changes: Changes,
    regenerate: bool,
    /// A record found past a time limit: removed when the session is committed.
    stale: Option<Arc<str>>,
    /// The store failed and the policy is to fail open: never save this session.
    unsaved: bool,
    /// The session was saved (or discarded) with its response: no more changes.
    committed: bool,
}

impl State {
    /// Before the first change of the user binding: remember the binding as stored.
    fn keep_stored_user(&mut self) {
        if self.stored_user.is_none() {
            self.stored_user = Some(self.data.user_shared().cloned());
        }
    }
}

/// The request's session, already loaded: an extractor (feature `axum`) that calls
/// [`Session::load`] before the handler runs, whatever the layer's `autoload`. Take it where
/// a handler uses the session at all; take [`Session`] to decide in the handler whether to
/// load (starsessions' explicit model, which spares requests that never look at their
/// session a backend read). Everything of [`Session`] is reachable through it (`Deref`).
///
/// A handler ported from tower-sessions keeps `.await` on its accessors, which does not
/// compile here (they are synchronous once the session is loaded), so the port is fixed at
/// compile time, not by a `NotLoaded` at run time:
///
/// ```compile_fail
/// # async fn handler(session: sessionkit_core::LoadedSession) -> Result<(), sessionkit_core::Error> {
/// let n: Option<u64> = session.get("n").await?; // tower-sessions' `get(..).await`
/// # Ok(()) }
/// ```
///
/// ```
/// # use sessionkit_core::{Error, LoadedSession};
/// async fn count(session: LoadedSession) -> Result<String, Error> {
///     let n: u64 = session.get("n")?.unwrap_or(0) + 1; // no load() to forget
///     session.insert("n", n)?;
///     Ok(n.to_string())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct LoadedSession(pub Session);

impl std::ops::Deref for LoadedSession {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.0
    }
}

impl LoadedSession {
    /// The session, loaded: what the extractor does, for code outside axum.
    ///
    /// # Errors
    ///
    /// What [`Session::load`] returns.
    pub async fn load(session: Session) -> Result<LoadedSession, Error> {
        session.load().await?;
        Ok(LoadedSession(session))
    }

    /// The session handle.
    pub fn into_inner(self) -> Session {
        self.0
    }
}

/// What saving a session asks of the response; returned by [`Session::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Commit {
    /// The session was never loaded: the response did not depend on it.
    Untouched,
    /// The session was used but nothing needs saving: no cookie to set.
    Unchanged,
    /// The session was saved: set the cookie to this value.
    Set(String),
    /// The session ended (emptied, deleted, or removed meanwhile by another request):
    /// expire the client's cookie.
    Expire,
}

impl Commit {
    /// Whether the response depended on the session (and so should carry `Vary: Cookie`).
    pub fn used(&self) -> bool {
        !matches!(self, Commit::Untouched)
    }
}

/// The handler's side: loading, reading and writing values, ending the session.
impl Session {
    /// Read the session from the backend. Calling it again does nothing.
    ///
    /// A client without a cookie, or whose cookie names no live record (unknown, expired,
    /// forged), gets an empty session without error; an id the backend does not know is never
    /// adopted: if the session is saved it gets a fresh id. Backend failures are returned
    /// (with a fail-open policy the session is empty and never saved instead).
    pub async fn load(&self) -> Result<(), Error> {
        if self.state().loaded {
            return Ok(());
        }
        let read = match self.inner.cookie.as_deref() {
            // An empty value stands for one the backend refused unseen (see `accepts`).
            Some(cookie) if !cookie.is_empty() => self.inner.backend.read(cookie).await,
            _ => Ok(None),
        };
        self.loaded_from(read)
    }

    /// Whether [`load`](Session::load) has completed.
    pub fn is_loaded(&self) -> bool {
        self.state().loaded
    }

    /// The value under `key`, deserialized as `T`; `None` when there is none.
    ///
    /// A stored value that is not a `T` is [`Error::Serialization`].
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let state = self.loaded()?;
        match state.data.values().get(key) {
            Some(value) => T::deserialize(value).map(Some).map_err(Error::decode),
            None => Ok(None),
        }
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Result<Option<Value>, Error> {
        Ok(self.loaded()?.data.values().get(key).cloned())
    }

    /// Store `value` under `key`. Storing a value equal to the one already there is not a
    /// change and causes no write.
    pub fn insert(&self, key: &str, value: impl Serialize) -> Result<(), Error> {
        let value = serde_json::to_value(value).map_err(Error::encode)?;
        let mut state = self.writable()?;
        if state.data.values().get(key) == Some(&value) {
            return Ok(());
        }
        state.changes.set(key, value.clone());
        let values = state.data.values_mut();
        match values.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                values.insert(key.to_owned(), value);
            }
        }
        state.changed = true;
        Ok(())
    }

    /// Remove the value under `key`, returning it.
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
    /// A stored value that is not a `T` is [`Error::Serialization`], and stays where it is.
    ///
    /// ```
    /// # async fn handler(session: sessionkit_core::Session) -> Result<String, sessionkit_core::Error> {
    /// session.load().await?;
    /// let flash: Option<String> = session.take("flash")?; // shown once
    /// Ok(flash.unwrap_or_default())
    /// # }
    /// ```
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

    /// Give this session a lifetime of its own, overriding the layer's `max_age` for it: the
    /// "remember me" of a login form. Stored with the record and enforced on the server (the
    /// layer's idle and absolute limits still cap it); the cookie's `Max-Age` and the record's
    /// TTL follow it from this response on. `None` goes back to the layer's.
    ///
    /// ```
    /// # use sessionkit_core::{Error, Lifetime, Session};
    /// # use std::time::Duration;
    /// # async fn login(session: Session, remember: bool) -> Result<(), Error> {
    /// session.load().await?;
    /// session.regenerate_id()?;
    /// session.set_lifetime(Some(if remember {
    ///     Lifetime::Inactivity(Duration::from_secs(30 * 24 * 60 * 60)) // 30 days
    /// } else {
    ///     Lifetime::BrowserSession // gone when the browser closes
    /// }))?;
    /// # Ok(()) }
    /// ```
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

    /// Bind the session to `user` (a user id, an account name: the principal it belongs to),
    /// stored with the record. It is what lets the backend list and revoke a user's
    /// sessions: [`user_sessions`](Session::user_sessions),
    /// [`revoke_other_sessions`](Session::revoke_other_sessions), and the backend's own
    /// [`revoke_user_sessions`](SessionBackend::revoke_user_sessions) for an admin. The
    /// binding stays with the session through [`regenerate_id`](Session::regenerate_id) and
    /// goes with [`delete`](Session::delete) and [`clear`](Session::clear). A session with a
    /// user and no values is still stored.
    ///
    /// ```
    /// # use sessionkit_core::{Error, Session};
    /// # async fn login(session: Session, user_id: u64) -> Result<(), Error> {
    /// session.load().await?;
    /// session.regenerate_id()?; // a fresh id after a login
    /// session.set_user(user_id.to_string())?;
    /// # Ok(()) }
    /// ```
    ///
    /// Binding costs nothing on later requests; the save that binds adds at most one
    /// command or statement (the Redis backend's index entry).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUser`] for an empty user, one over [`MAX_USER_LEN`] bytes or one holding
    /// a NUL character; the usual
    /// [`Error::NotLoaded`] and [`Error::Committed`].
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
        state.keep_stored_user();
        state.changes.set_user(Some(Arc::clone(&user)));
        state.data.set_user(Some(user));
        state.changed = true;
        Ok(())
    }

    /// Unbind the session from its user, keeping its values.
    pub fn clear_user(&self) -> Result<(), Error> {
        let mut state = self.writable()?;
        if state.data.user().is_some() {
            state.keep_stored_user();
            state.changes.set_user(None);
            state.data.set_user(None);
            state.changed = true;
        }
        Ok(())
    }

    /// The user the session is bound to, when it is.
    pub fn user(&self) -> Result<Option<String>, Error> {
        Ok(self.loaded()?.data.user().map(str::to_owned))
    }

    /// The live sessions of this session's user, most recently used first, this one marked
    /// [`current`](UserSession::current): a "your devices" page. Empty when the session is
    /// bound to no user.
    ///
    /// ```
    /// # use sessionkit_core::{Error, LoadedSession};
    /// # async fn devices(session: LoadedSession) -> Result<String, Error> {
    /// let mut page = String::new();
    /// for device in session.user_sessions().await? {
    ///     let agent: String = device.get("user_agent").unwrap_or_default();
    ///     let here = if device.current { " (this device)" } else { "" };
    ///     page += &format!("{agent}{here} [{}]\n", device.handle);
    /// }
    /// # Ok(page) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] on a backend that keeps no index of sessions by user (the cookie
    /// backend); backend failures.
    pub async fn user_sessions(&self) -> Result<Vec<UserSession>, Error> {
        let (user, id) = self.user_and_id()?;
        let Some(user) = user else {
            return Ok(Vec::new());
        };
        let mut sessions = self.inner.backend.user_sessions(&user).await?;
        if let Some(id) = id {
            let current = SessionHandle::of(&id);
            for session in &mut sessions {
                session.current = session.handle == current;
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
    /// # use sessionkit_core::{Error, LoadedSession};
    /// # async fn change_password(session: LoadedSession) -> Result<String, Error> {
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
        match self.user_and_id()? {
            (Some(user), id) => {
                self.inner
                    .backend
                    .revoke_user_sessions(&user, id.as_deref())
                    .await
            }
            (None, _) => Ok(0),
        }
    }

    /// End the session of this session's user named by `handle` (from
    /// [`user_sessions`](Session::user_sessions)): "sign out this device". `false` when the
    /// user has no live session with that handle.
    ///
    /// # Errors
    ///
    /// As [`revoke_other_sessions`](Session::revoke_other_sessions).
    pub async fn revoke_session(&self, handle: &SessionHandle) -> Result<bool, Error> {
        match self.user_and_id()? {
            (Some(user), _) => self.inner.backend.revoke_user_session(&user, handle).await,
            (None, _) => Ok(false),
        }
    }

    /// Whether the session, as it is now, will fit in its cookie: always for server-side
    /// stores (the cookie holds an id); for cookie sessions, whether the sealed value leaves the
    /// `Set-Cookie` under the 4096 bytes browsers keep. A save that does not fit fails the
    /// response with a 500 (`Error::CookieTooLarge` in the log), so a handler storing
    /// something large can check first and store less.
    ///
    /// ```
    /// # async fn handler(session: sessionkit_core::Session) -> Result<(), sessionkit_core::Error> {
    /// session.load().await?;
    /// session.insert("draft", "a long text ...")?;
    /// if !session.fits_in_cookie()? {
    ///     session.remove("draft")?; // keep it elsewhere
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotLoaded`], or what sealing the session returns.
    pub fn fits_in_cookie(&self) -> Result<bool, Error> {
        let len = self.inner.backend.cookie_value_len(&self.loaded()?.data)?;
        let Some(len) = len else {
            return Ok(true);
        };
        Ok(self.inner.policy.cookie_room.is_none_or(|room| len <= room))
    }

    /// The session's own lifetime, when it has one.
    pub fn lifetime(&self) -> Result<Option<Lifetime>, Error> {
        Ok(self.loaded()?.data.lifetime())
    }

    /// Remove every value, and the user binding ([`set_user`](Session::set_user)). An
    /// emptied session is removed from the backend when the response is sent, and the
    /// client's cookie is expired.
    pub fn clear(&self) -> Result<(), Error> {
        let mut state = self.writable()?;
        if !state.data.is_empty() {
            state.keep_stored_user();
            state.changes.clear();
            state.data.values_mut().clear();
            state.data.set_user(None);
            state.changed = true;
        }
        Ok(())
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        Ok(self.loaded()?.data.values().keys().cloned().collect())
    }

    /// How many values the session holds.
    pub fn len(&self) -> Result<usize, Error> {
        Ok(self.loaded()?.data.values().len())
    }

    /// Whether the session holds nothing: no values and no user (an empty session is not
    /// stored).
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.loaded()?.data.is_empty())
    }

    /// A copy of all values.
    pub fn values(&self) -> Result<Values, Error> {
        Ok(self.loaded()?.data.values().clone())
    }

    /// The id of the stored record this session was loaded from (or saved to): `None` for a
    /// new session, and before the session is loaded.
    pub fn id(&self) -> Option<SessionId> {
        self.state().record.as_deref().map(SessionId::new)
    }

    /// When the session was first stored (now, for a session not stored yet).
    pub fn created(&self) -> Result<SystemTime, Error> {
        let state = self.loaded()?;
        Ok(if state.record.is_some() {
            state.data.created()
        } else {
            SystemTime::now()
        })
    }

    /// When the session was last written (now, for a session not stored yet).
    pub fn last_access(&self) -> Result<SystemTime, Error> {
        let state = self.loaded()?;
        Ok(if state.record.is_some() {
            state.data.last_access()
        } else {
            SystemTime::now()
        })
    }

    /// How long the session has left before its nearest time limit (idle, absolute or the
    /// cookie's max age), or `None` when none applies.
    pub fn remaining(&self) -> Result<Option<Duration>, Error> {
        let state = self.loaded()?;
        let now = unix_now();
        let data = if state.record.is_some() {
            state.data.clone()
        } else {
            SessionData::from_parts(Values::new(), now, now)
        };
        Ok(self.inner.policy.remaining(&data, now))
    }

    /// Move the session to a fresh id when it is saved, and remove the record under the old
    /// one: the defence against session fixation, to call after a login.
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
    /// Works whether or not the session was loaded.
    pub async fn delete(&self) -> Result<(), Error> {
        let id = {
            let state = self.state();
            if state.committed {
                return Err(Error::Committed);
            }
            if state.loaded {
                state.record.clone().or_else(|| state.stale.clone())
            } else {
                self.inner.cookie.clone()
            }
        };
        if let Some(id) = id.as_deref().filter(|id| !id.is_empty()) {
            self.inner.backend.remove(id).await?;
        }
        let mut state = self.state();
        state.loaded = true;
        state.record = None;
        state.stale = None;
        state.data = SessionData::default();
        state.changes = Changes::default();
        state.stored_user = None;
        state.regenerate = false;
        state.changed = true;
        Ok(())
    }
}

/// The integration's side: what a session layer (or code driving a session by hand) calls.
/// Handlers need none of it.
impl Session {
    /// A session over `backend` for a client that sent `cookie` (the cookie's value, or
    /// `None` when it sent none; an empty value stands for a cookie the backend cannot have
    /// issued, which loads as a fresh session without a backend call). Nothing is read until
    /// [`load`](Session::load).
    pub fn new(backend: Arc<dyn SessionBackend>, cookie: Option<Arc<str>>) -> Self {
        Session::with_policy(backend, cookie, Policy::default())
    }

    /// A session whose time limits, failure handling and loading follow `policy`.
    pub fn with_policy(
        backend: Arc<dyn SessionBackend>,
        cookie: Option<Arc<str>>,
        policy: Policy,
    ) -> Self {
        Session {
            inner: Arc::new(Inner {
                backend,
                policy,
                cookie,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The value the client sent in its cookie (unverified), if any.
    pub fn cookie_value(&self) -> Option<&str> {
        self.inner.cookie.as_deref()
    }

    /// Save the session if it changed and say what the response must do with the cookie.
    ///
    /// A session layer calls this once the handler is done; call it yourself only for a
    /// session you made with [`Session::new`]. The record's TTL follows the session's
    /// [`Policy`]. A session removed meanwhile by another request is not written back
    /// ([`Commit::Expire`]). Backend failures are returned and nothing is half-saved: the
    /// response must not set a cookie then (with a fail-open policy they are logged, and the
    /// session is left unsaved).
    ///
    /// From the moment it is called the session is committed: changes through any clone fail
    /// with [`Error::Committed`], and so does a second `commit`.
    pub async fn commit(&self) -> Result<Commit, Error> {
        match self.commit_inner().await {
            Err(error) if self.inner.policy.fail_open && !matches!(error, Error::Committed) => {
                tracing::warn!(%error, "saving the session failed; the response goes out without it");
                Ok(Commit::Unchanged)
            }
            other => other,
        }
    }

    /// [`commit`](Session::commit) when that needs no backend call (the session was never
    /// loaded, or is unchanged with no refresh due): `Some` with what the response must do,
    /// and the session is committed; `None` when saving it needs the backend, and nothing was
    /// done: call `commit`. A layer asks this first, so that a request whose session has
    /// nothing to save pays for no future. A session already committed (by the handler
    /// itself) answers [`Commit::Untouched`]: the response is left as it is.
    pub fn commit_without_backend(&self) -> Option<Commit> {
        let mut state = self.state();
        if state.committed {
            return Some(Commit::Untouched);
        }
        let commit = self.settled(&state)?;
        state.committed = true;
        Some(commit)
    }

    /// Commit the session without saving anything: what a layer does when the response is
    /// a server error or the request was dropped. Later changes fail with
    /// [`Error::Committed`]. Doing it again, or after [`commit`](Session::commit), does nothing.
    pub fn discard(&self) {
        self.state().committed = true;
    }

    /// The cookie's `Max-Age` when the session has a lifetime of its own: `Some(None)` for a
    /// browser-session cookie, `Some(Some(age))` otherwise; `None` when the layer's applies.
    /// A layer asks it after [`commit`](Session::commit) answered [`Commit::Set`].
    pub fn cookie_max_age(&self) -> Option<Option<Duration>> {
        let state = self.state();
        state.data.lifetime()?;
        Some(self.inner.policy.max_age_for(&state.data, unix_now()))
    }

    /// Whether the session was committed (or discarded).
    pub fn is_committed(&self) -> bool {
        self.state().committed
    }
}

impl Session {
    /// The policy this session follows.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state consistent (every update
        // below is a single assignment), so a poisoned lock is safe to keep using.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn loaded(&self) -> Result<MutexGuard<'_, State>, Error> {
        let state = self.state();
        if state.loaded {
            Ok(state)
        } else {
            Err(Error::NotLoaded)
        }
    }

    /// The user the loaded session is bound to, and the id it is stored under.
    fn user_and_id(&self) -> Result<(Option<String>, Option<Arc<str>>), Error> {
        let state = self.loaded()?;
        Ok((state.data.user().map(str::to_owned), state.record.clone()))
    }

    fn writable(&self) -> Result<MutexGuard<'_, State>, Error> {
        let state = self.loaded()?;
        if state.committed {
            Err(Error::Committed)
        } else {
            Ok(state)
        }
    }

    /// Settle a load with what the backend answered.
    fn loaded_from(&self, read: Result<Option<SessionData>, Error>) -> Result<(), Error> {
        let policy = &self.inner.policy;
        let record = match read {
            Ok(record) => record,
            Err(error) if policy.fail_open => {
                tracing::warn!(%error, "session store failed; continuing with an empty, unsaved session");
                let mut state = self.state();
                if !state.loaded {
                    state.loaded = true;
                    state.unsaved = true;
                }
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let mut state = self.state();
        if !state.loaded {
            state.loaded = true;
            if let Some(data) = record {
                if (policy.has_limits() || data.lifetime().is_some())
                    && policy.expired(&data, unix_now())
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

    /// `data` as it is saved now: last access now (and created now for a new record), with the
    /// TTL the policy gives it.
    fn stamped(&self, mut data: SessionData, new: bool) -> (SessionData, Option<Duration>) {
        let now = unix_now();
        data.set_last_access(now);
        if new {
            data.set_created(now);
        }
        let ttl = self.inner.policy.ttl_for(&data, now, new);
        (data, ttl)
    }

    /// Record the outcome of a write: `updated` is the id an update was aimed at (`None` for
    /// a create), `saved` what the backend answered.
    fn stored(
        &self,
        updated: Option<Arc<str>>,
        data: SessionData,
        saved: Result<String, Error>,
    ) -> Result<Commit, Error> {
        let value = match saved {
            Ok(value) => value,
            Err(Error::SessionGone) if updated.is_some() => {
                // Removed meanwhile (a logout in a parallel request): not written back.
                let mut state = self.state();
                state.record = None;
                state.changed = false;
                return Ok(Commit::Expire);
            }
            Err(error) => return Err(error),
        };
        // Server-side stores return the same id on an update: keep the shared copy.
        let stored = match updated {
            Some(id) if *id == *value => id,
            _ => Arc::from(value.as_str()),
        };
        self.saved(Some(stored), data);
        Ok(Commit::Set(value))
    }

    async fn commit_inner(&self) -> Result<Commit, Error> {
        let (data, record, regenerate, stale, changes, stored_user) = {
            let mut state = self.state();
            if state.committed {
                return Err(Error::Committed);
            }
            state.committed = true;
            if let Some(commit) = self.settled(&state) {
                return Ok(commit);
            }
            let stale = state.stale.take();
            (
                state.data.clone(),
                state.record.clone(),
                state.regenerate,
                stale,
                std::mem::take(&mut state.changes),
                state.stored_user.take(),
            )
        };
        let backend: &dyn SessionBackend = &*self.inner.backend;
        let sent_cookie = self.inner.cookie.is_some();
        if let Some(stale) = &stale {
            backend.remove(stale).await?;
        }

        // A stored record: the changes (none, for a refresh) go onto the record as stored
        // now, which may hold other requests' changes (and may end up empty, and removed).
        if let Some(id) = &record {
            let (data, ttl) = self.stamped(data, false);
            if regenerate {
                // Rare (a login): boxed, so every other save's future stays small.
                return Box::pin(self.move_to_new_id(id, data, changes, stored_user, ttl)).await;
            }
            return match backend.apply(id, &data, &changes, ttl).await {
                Ok(Applied::Saved { value, record: now }) => {
                    self.stored(Some(Arc::clone(id)), now, Ok(value))
                }
                Ok(Applied::Removed) => {
                    self.saved(None, SessionData::default());
                    Ok(Commit::Expire)
                }
                // Gone meanwhile (a logout in a parallel request): not written back.
                Err(error) => self.stored(Some(Arc::clone(id)), data, Err(error)),
            };
        }

        if data.is_empty() {
            self.saved(None, data);
            return Ok(if sent_cookie {
                Commit::Expire
            } else {
                Commit::Unchanged
            });
        }
        let (data, ttl) = self.stamped(data, true);
        let saved = backend.write(None, &data, ttl).await;
        self.stored(None, data, saved)
    }

    /// Save the stored record `id` under a fresh id: its changes go onto the record as stored
    /// now, the result moves to the new id, and the old record goes.
    async fn move_to_new_id(
        &self,
        id: &Arc<str>,
        data: SessionData,
        mut changes: Changes,
        stored_user: Option<Option<Arc<str>>>,
        ttl: Option<Duration>,
    ) -> Result<Commit, Error> {
        let backend: &dyn SessionBackend = &*self.inner.backend;
        // A user bound by this request is bound on the new record only: the old one, about
        // to go, keeps the binding it had as stored (one index entry written, not two).
        let rebind = changes.take_user();
        let unbound;
        let old = match &rebind {
            Some(_) => {
                let mut old = data.clone();
                old.set_user(stored_user.flatten());
                unbound = old;
                &unbound
            }
            None => &data,
        };
        // Whether the save emptied and removed the old record already.
        let mut old_removed = false;
        let mut now = match backend.apply(id, old, &changes, ttl).await {
            Ok(Applied::Saved { record: now, .. }) => now,
            // Emptied of values, but bound to a user by this request: it moves on with the
            // binding (and the lifetime), its values as the store left them: none.
            Ok(Applied::Removed) if rebind.as_ref().is_some_and(Option::is_some) => {
                old_removed = true;
                let mut now = data.clone();
                now.values_mut().clear();
                now
            }
            Ok(Applied::Removed) => {
                self.saved(None, SessionData::default());
                return Ok(Commit::Expire);
            }
            // Gone meanwhile (a logout in a parallel request): not brought back, not even
            // under a new id.
            Err(error) => return self.stored(Some(Arc::clone(id)), data, Err(error)),
        };
        if let Some(user) = rebind {
            now.set_user(user);
            // Unbound by this request with nothing else left: the session ends.
            if now.is_empty() {
                if !old_removed {
                    backend.remove(id).await?;
                }
                self.saved(None, SessionData::default());
                return Ok(Commit::Expire);
            }
        }
        // The record as it now stands moves to a new id, and the old one goes (written first,
        // so a failure in between loses nothing). The old one is removed as a save that
        // empties it: if a logout or a revocation removed it since the changes went on (a
        // race with this request), the move is undone and the session ends, rather than
        // living on under the new id.
        let value = backend.write(None, &now, ttl).await?;
        if old_removed {
            return self.stored(None, now, Ok(value));
        }
        let mut emptied = SessionData::default();
        if let Some(revision) = now.revision() {
            emptied = emptied.with_revision(revision.clone());
        }
        let mut clear = Changes::default();
        clear.clear();
        match backend.apply(id, &emptied, &clear, ttl).await {
            Ok(_) => self.stored(None, now, Ok(value)),
            Err(Error::SessionGone) => {
                backend.remove(&value).await?;
                self.saved(None, SessionData::default());
                Ok(Commit::Expire)
            }
            Err(error) => Err(error),
        }
    }

    fn settled(&self, state: &State) -> Option<Commit> {
        if !state.loaded {
            return Some(Commit::Untouched);
        }
        if state.unsaved {
            return Some(Commit::Unchanged);
        }
        if state.changed || state.stale.is_some() {
            return None;
        }
        if state.record.is_some() {
            let policy = &self.inner.policy;
            if policy.idle.is_some() && policy.needs_refresh(&state.data, unix_now()) {
                return None;
            }
            // Its client came back: the first lifetime ends, the record gets the full one.
            if policy.on_probation(&state.data) {
                return None;
            }
            return Some(Commit::Unchanged);
        }
        // A cookie that names no live record is stale: drop it from the client.
        Some(if self.inner.cookie.is_some() {
            Commit::Expire
        } else {
            Commit::Unchanged
        })
    }

    fn saved(&self, record: Option<Arc<str>>, data: SessionData) {
        let mut state = self.state();
        state.stored_user = None;
        state.record = record;
        state.data = data;
        state.changed = false;
        state.changes = Changes::default();
        state.regenerate = false;
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("loaded", &state.loaded)
            .field("stored", &state.record.is_some())
            .field("changed", &state.changed)
            .field("committed", &state.committed)
            .field("len", &state.data.values().len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Map(Mutex<std::collections::HashMap<String, SessionData>>);

    #[async_trait::async_trait]
    impl SessionBackend for Map {
        async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
            Ok(self.0.lock().unwrap().get(id).cloned())
        }
        async fn write(
            &self,
            id: Option<&str>,
            data: &SessionData,
            _: Option<Duration>,
        ) -> Result<String, Error> {
            let id = id.map_or_else(|| self.generate_id(), str::to_owned);
            self.0.lock().unwrap().insert(id.clone(), data.clone());
            Ok(id)
        }
        async fn remove(&self, id: &str) -> Result<(), Error> {
            self.0.lock().unwrap().remove(id);
            Ok(())
        }
        async fn exists(&self, id: &str) -> Result<bool, Error> {
            Ok(self.0.lock().unwrap().contains_key(id))
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn backend() -> Arc<Map> {
        Arc::new(Map(Mutex::default()))
    }

    #[test]
    fn every_change_after_the_commit_is_an_error_not_a_silent_loss() {
        block_on(async {
            let session = Session::new(backend(), None);
            let late = session.clone();
            session.load().await.unwrap();
            session.insert("n", 1).unwrap();
            assert!(matches!(session.commit().await, Ok(Commit::Set(_))));
            assert!(late.is_committed());
            assert!(matches!(late.insert("n", 2), Err(Error::Committed)));
            assert!(matches!(late.remove("n"), Err(Error::Committed)));
            assert!(matches!(late.clear(), Err(Error::Committed)));
            assert!(matches!(late.regenerate_id(), Err(Error::Committed)));
            assert!(matches!(late.delete().await, Err(Error::Committed)));
            assert!(matches!(late.commit().await, Err(Error::Committed)));
            assert_eq!(late.get::<u32>("n").unwrap(), Some(1), "reads still work");
        });
    }

    #[test]
    fn a_discarded_session_saves_nothing_and_refuses_changes() {
        block_on(async {
            let store = backend();
            let session = Session::new(store.clone(), None);
            session.load().await.unwrap();
            session.insert("n", 1).unwrap();
            session.discard();
            assert!(matches!(session.insert("n", 2), Err(Error::Committed)));
            assert!(store.0.lock().unwrap().is_empty());
        });
    }

    /// A record created with `values`, and its id.
    async fn stored(store: &Arc<Map>, values: serde_json::Value) -> String {
        let session = Session::new(store.clone(), None);
        session.load().await.unwrap();
        for (key, value) in values.as_object().unwrap() {
            session.insert(key, value).unwrap();
        }
        let Ok(Commit::Set(id)) = session.commit().await else {
            panic!("saved")
        };
        id
    }

    fn open(store: &Arc<Map>, id: &str, policy: Policy) -> Session {
        Session::with_policy(store.clone(), Some(id.into()), policy)
    }

    #[test]
    fn a_refresh_of_an_unchanged_session_keeps_what_another_request_saved() {
        block_on(async {
            let store = backend();
            let id = stored(&store, serde_json::json!({"a": 1})).await;
            // A refresh is due at once (an idle limit, refreshed after zero seconds).
            let mut policy = Policy::new(None);
            policy.idle = Some(Duration::from_secs(600));
            policy.refresh_after = Some(Duration::ZERO);
            let reader = open(&store, &id, policy);
            let writer = open(&store, &id, policy);
            reader.load().await.unwrap();
            writer.load().await.unwrap();
            writer.insert("b", 2).unwrap();
            writer.commit().await.unwrap();
            assert!(
                matches!(reader.commit().await, Ok(Commit::Set(_))),
                "refreshed"
            );
            let again = open(&store, &id, Policy::default());
            again.load().await.unwrap();
            assert_eq!(
                again.get::<u32>("b").unwrap(),
                Some(2),
                "the refresh overwrote it"
            );
        });
    }

    #[test]
    fn a_new_id_does_not_bring_back_a_session_deleted_meanwhile() {
        block_on(async {
            let store = backend();
            let id = stored(&store, serde_json::json!({"a": 1})).await;
            let login = open(&store, &id, Policy::default());
            let logout = open(&store, &id, Policy::default());
            login.load().await.unwrap();
            logout.load().await.unwrap();
            logout.delete().await.unwrap();
            logout.commit().await.unwrap();
            login.regenerate_id().unwrap();
            login.insert("user", "ada").unwrap();
            assert_eq!(login.commit().await.unwrap(), Commit::Expire);
            assert!(
                store.0.lock().unwrap().is_empty(),
                "resurrected under a new id"
            );
        });
    }

    #[test]
    fn a_new_id_keeps_what_another_request_saved_meanwhile() {
        block_on(async {
            let store = backend();
            let id = stored(&store, serde_json::json!({"a": 1})).await;
            let login = open(&store, &id, Policy::default());
            let other = open(&store, &id, Policy::default());
            login.load().await.unwrap();
            other.load().await.unwrap();
            other.insert("cart", 3).unwrap();
            other.commit().await.unwrap();
            login.regenerate_id().unwrap();
            login.insert("user", "ada").unwrap();
            let Ok(Commit::Set(new_id)) = login.commit().await else {
                panic!("saved")
            };
            assert_ne!(new_id, id);
            let map = store.0.lock().unwrap();
            assert!(!map.contains_key(&id), "the old id is gone");
            let record = &map[&new_id];
            assert_eq!(record.values()["cart"], 3);
            assert_eq!(record.values()["user"], "ada");
        });
    }

    #[test]
    fn a_login_that_clears_binds_and_moves_the_session_keeps_only_the_user() {
        block_on(async {
            let store = backend();
            let id = stored(&store, serde_json::json!({"csrf": 1})).await;
            let login = open(&store, &id, Policy::default());
            login.load().await.unwrap();
            login.clear().unwrap();
            login.set_user("ada").unwrap();
            login.regenerate_id().unwrap();
            assert!(!login.is_empty().unwrap(), "a bound session is not empty");
            let Ok(Commit::Set(new_id)) = login.commit().await else {
                panic!("a bound session is saved, values or not")
            };
            let map = store.0.lock().unwrap();
            assert!(!map.contains_key(&id), "the old id is gone");
            assert_eq!(map[&new_id].user(), Some("ada"));
            assert!(map[&new_id].values().is_empty());
        });
    }

    #[test]
    fn the_user_stays_through_a_new_id_and_goes_with_clear_and_delete() {
        block_on(async {
            let store = backend();
            let id = stored(&store, serde_json::json!({"a": 1})).await;
            let session = open(&store, &id, Policy::default());
            session.load().await.unwrap();
            assert!(matches!(
                session.set_user(""),
                Err(Error::InvalidUser { len: 0 })
            ));
            assert!(matches!(
                session.set_user("x".repeat(MAX_USER_LEN + 1)),
                Err(Error::InvalidUser { .. })
            ));
            assert!(matches!(
                session.set_user("a\0b"),
                Err(Error::InvalidUser { len: 3 })
            ));
            session.set_user("ada").unwrap();
            let Ok(Commit::Set(id)) = session.commit().await else {
                panic!("saved")
            };
            assert_eq!(store.0.lock().unwrap()[&id].user(), Some("ada"));

            let moved = open(&store, &id, Policy::default());
            moved.load().await.unwrap();
            moved.regenerate_id().unwrap();
            let Ok(Commit::Set(moved_id)) = moved.commit().await else {
                panic!("saved")
            };
            assert_ne!(moved_id, id);
            assert_eq!(store.0.lock().unwrap()[&moved_id].user(), Some("ada"));

            let unbound = open(&store, &moved_id, Policy::default());
            unbound.load().await.unwrap();
            unbound.clear_user().unwrap();
            assert_eq!(unbound.user().unwrap(), None);
            unbound.commit().await.unwrap();
            assert_eq!(store.0.lock().unwrap()[&moved_id].user(), None);
            assert_eq!(store.0.lock().unwrap()[&moved_id].values()["a"], 1);

            let cleared = open(&store, &moved_id, Policy::default());
            cleared.load().await.unwrap();
            cleared.set_user("ada").unwrap();
            cleared.clear().unwrap();
            assert_eq!(cleared.user().unwrap(), None, "clear unbinds");
            assert!(matches!(cleared.commit().await, Ok(Commit::Expire)));

            let deleted = Session::new(store.clone(), None);
            deleted.load().await.unwrap();
            deleted.set_user("ada").unwrap();
            deleted.delete().await.unwrap();
            assert_eq!(deleted.user().unwrap(), None, "delete unbinds");
            // A session bound to no user lists none (without asking the backend).
            let listing = open(&store, &id, Policy::default());
            listing.load().await.unwrap();
            assert!(
                listing.user_sessions().await.unwrap().is_empty(),
                "no user: none"
            );
        });
    }

    /// A store where a logout (or a revocation) of `victim` lands between a save's changes
    /// and the session's move to a new id.
    struct LogoutDuringMove {
        map: Arc<Map>,
        victim: Mutex<Option<String>>,
    }

    #[async_trait::async_trait]
    impl SessionBackend for LogoutDuringMove {
        async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
            self.map.read(id).await
        }
        async fn write(
            &self,
            id: Option<&str>,
            data: &SessionData,
            ttl: Option<Duration>,
        ) -> Result<String, Error> {
            if id.is_none() {
                let victim = self.victim.lock().unwrap().take();
                if let Some(victim) = victim {
                    self.map.remove(&victim).await?;
                }
            }
            self.map.write(id, data, ttl).await
        }
        async fn remove(&self, id: &str) -> Result<(), Error> {
            self.map.remove(id).await
        }
        async fn exists(&self, id: &str) -> Result<bool, Error> {
            self.map.exists(id).await
        }
    }

    #[test]
    fn a_session_logged_out_while_it_moves_to_a_new_id_ends_there() {
        block_on(async {
            let store = backend();
            let id = stored(&store, serde_json::json!({"a": 1})).await;
            let racing = Arc::new(LogoutDuringMove {
                map: store.clone(),
                victim: Mutex::new(Some(id.clone())),
            });
            let session = Session::new(racing, Some(id.as_str().into()));
            session.load().await.unwrap();
            session.regenerate_id().unwrap();
            session.set_user("ada").unwrap();
            assert!(matches!(session.commit().await, Ok(Commit::Expire)));
            assert!(
                store.0.lock().unwrap().is_empty(),
                "the session lived on under its new id"
            );
        });
    }

    #[test]
    fn a_bound_session_cleared_and_moved_ends_and_stores_nothing() {
        block_on(async {
            let store = backend();
            let id = stored(&store, serde_json::json!({"a": 1})).await;
            let login = open(&store, &id, Policy::default());
            login.load().await.unwrap();
            login.set_user("ada").unwrap();
            login.remove("a").unwrap();
            let Ok(Commit::Set(id)) = login.commit().await else {
                panic!("a bound session is saved")
            };
            let logout = open(&store, &id, Policy::default());
            logout.load().await.unwrap();
            logout.clear().unwrap();
            logout.regenerate_id().unwrap();
            assert!(matches!(logout.commit().await, Ok(Commit::Expire)));
            assert!(
                store.0.lock().unwrap().is_empty(),
                "an empty record was stored"
            );
        });
    }

    #[test]
    fn background_work_reopens_a_session_by_id_and_commits_it() {
        block_on(async {
            let store = backend();
            let first = Session::new(store.clone(), None);
            first.load().await.unwrap();
            first.insert("user", "ada").unwrap();
            let Ok(Commit::Set(id)) = first.commit().await else {
                panic!("saved")
            };
            let later = Session::new(store.clone(), Some(id.as_str().into()));
            later.load().await.unwrap();
            later.insert("report", "ready").unwrap();
            assert_eq!(later.commit().await.unwrap(), Commit::Set(id.clone()));
            let again = Session::new(store, Some(id.into()));
            again.load().await.unwrap();
            assert_eq!(again.get::<String>("user").unwrap().as_deref(), Some("ada"));
            assert_eq!(
                again.get::<String>("report").unwrap().as_deref(),
                Some("ready")
            );
        });
    }
}
