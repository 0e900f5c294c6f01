use crate::{Error, Policy, SessionBackend, SessionData, SessionId, Values, unix_now};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

/// The session of one request: a cheap-to-clone handle on shared state.
///
/// A session layer creates it from the request's cookie; handlers get it as an extractor
/// (feature `axum`) or with [`Session::current`]. Nothing is read from the backend until
/// [`load`](Session::load) is called (or the layer's `autoload` does it): reading or writing
/// before that is [`Error::NotLoaded`].
///
/// ```
/// # use sessions_core::{Session, SessionBackend};
/// # async fn handler(session: Session) -> Result<String, sessions_core::Error> {
/// session.load().await?;
/// let visits: u64 = session.get("visits")?.unwrap_or(0) + 1;
/// session.insert("visits", visits)?;
/// Ok(format!("visit number {visits}"))
/// # }
/// ```
///
/// Values are stored as JSON values: anything `serde` can serialize goes in, and
/// [`get`](Session::get) deserializes it back into the type asked for.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Arc<SessionSettings>,
    /// The value the client sent in its cookie, not yet verified.
    cookie: Option<Arc<str>>,
    state: Mutex<State>,
}

/// What every session of one layer shares: the backend, the [`Policy`], and whether handlers
/// get their session already loaded. A session layer makes it once and hands it to each
/// request's [`SessionContext`](crate::SessionContext).
pub struct SessionSettings {
    backend: Arc<dyn SessionBackend>,
    policy: Policy,
    autoload: bool,
}

impl SessionSettings {
    /// Sessions stored in `backend`, under `policy`; with `autoload`,
    /// [`Session::current_autoloaded`] (and so the axum extractor) loads the session before
    /// handing it out.
    pub fn new(backend: Arc<dyn SessionBackend>, policy: Policy, autoload: bool) -> Self {
        SessionSettings {
            backend,
            policy,
            autoload,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn SessionBackend> {
        &self.backend
    }

    /// The time limits and failure handling.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether handlers get their session already loaded.
    pub fn autoload(&self) -> bool {
        self.autoload
    }
}

impl fmt::Debug for SessionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSettings")
            .field("policy", &self.policy)
            .field("autoload", &self.autoload)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    loaded: bool,
    data: SessionData,
    /// The id of the record this session was loaded from (verified by a read).
    record: Option<Arc<str>>,
    changed: bool,
    regenerate: bool,
    /// A record found past a time limit: removed when the session is committed.
    stale: Option<Arc<str>>,
    /// The store failed and the policy is to fail open: never save this session.
    unsaved: bool,
    /// The load went through the backend's `read` future, not `read_now`: the backend does
    /// I/O and will not write inline either (the conformance suite holds backends to answering
    /// both or neither), so `commit_now` leaves the save to `commit` without preparing it.
    waits: bool,
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

impl Session {
    /// A session over `backend` for a client that sent `cookie` (the cookie's value, or
    /// `None` when it sent none; an empty value stands for a cookie the backend cannot have
    /// issued, which loads as a fresh session without a backend call). Nothing is read until
    /// [`load`](Session::load).
    pub fn new(backend: Arc<dyn SessionBackend>, cookie: Option<Arc<str>>) -> Self {
        Session::with_policy(backend, cookie, Policy::default())
    }

    /// A session whose time limits and failure handling follow `policy`.
    pub fn with_policy(
        backend: Arc<dyn SessionBackend>,
        cookie: Option<Arc<str>>,
        policy: Policy,
    ) -> Self {
        Session::with_settings(
            Arc::new(SessionSettings::new(backend, policy, false)),
            cookie,
        )
    }

    /// A session under a layer's shared `settings`.
    pub fn with_settings(settings: Arc<SessionSettings>, cookie: Option<Arc<str>>) -> Self {
        Session {
            inner: Arc::new(Inner {
                settings,
                cookie,
                state: Mutex::new(State::default()),
            }),
        }
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

    /// Read the session from the backend. Calling it again does nothing.
    ///
    /// A client without a cookie, or whose cookie names no live record (unknown, expired,
    /// forged), gets an empty session without error; an id the backend does not know is never
    /// adopted: if the session is saved it gets a fresh id. Backend failures are returned.
    pub fn load(&self) -> Load<'_> {
        Load {
            session: self,
            read: None,
        }
    }

    /// Settle a load with what the backend answered.
    fn loaded_from(
        &self,
        read: Result<Option<SessionData>, Error>,
        waited: bool,
    ) -> Result<(), Error> {
        let record = match read {
            Ok(record) => record,
            Err(error) if self.inner.settings.policy.fail_open => {
                tracing::warn!(%error, "session store failed; continuing with an empty, unsaved session");
                let mut state = self.state();
                state.loaded = true;
                state.unsaved = true;
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let policy = &self.inner.settings.policy;
        let mut state = self.state();
        if !state.loaded {
            state.loaded = true;
            state.waits = waited;
            if let Some(data) = record {
                if policy.has_limits() && policy.expired(&data, unix_now()) {
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
        let mut state = self.loaded()?;
        match state.data.values().get(key) {
            Some(old) if *old == value => return Ok(()),
            Some(_) => {
                if let Some(slot) = state.data.values_mut().get_mut(key) {
                    *slot = value;
                }
            }
            None => {
                state.data.values_mut().insert(key.to_owned(), value);
            }
        }
        state.changed = true;
        Ok(())
    }

    /// Remove the value under `key`, returning it.
    pub fn remove(&self, key: &str) -> Result<Option<Value>, Error> {
        let mut state = self.loaded()?;
        if !state.data.values().contains_key(key) {
            return Ok(None);
        }
        state.changed = true;
        Ok(state.data.values_mut().remove(key))
    }

    /// Remove every value. An emptied session is removed from the backend when the response
    /// is sent, and the client's cookie is expired.
    pub fn clear(&self) -> Result<(), Error> {
        let mut state = self.loaded()?;
        if !state.data.is_empty() {
            state.data.values_mut().clear();
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

    /// Whether the session holds no values.
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
        Ok(self.inner.settings.policy.remaining(&data, now))
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

    /// Move the session to a fresh id when it is saved, and remove the record under the old
    /// one: the defence against session fixation, to call after a login.
    pub fn regenerate_id(&self) -> Result<(), Error> {
        let mut state = self.loaded()?;
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
            if state.loaded {
                state.record.clone().or_else(|| state.stale.clone())
            } else {
                self.inner.cookie.clone()
            }
        };
        if let Some(id) = id.as_deref().filter(|id| !id.is_empty()) {
            (*self.inner.settings.backend).remove(id).await?;
        }
        let mut state = self.state();
        state.loaded = true;
        state.record = None;
        state.stale = None;
        state.data = SessionData::default();
        state.regenerate = false;
        state.changed = true;
        Ok(())
    }

    /// Save the session if it changed and say what the response must do with the cookie.
    ///
    /// This is what a session layer calls once the handler is done; it is public so that
    /// other integrations can drive a session by hand. The record's TTL follows the session's
    /// [`Policy`]. A session removed meanwhile by another request is not written back
    /// ([`Commit::Expire`]). Backend failures are returned and nothing is half-saved: the
    /// response must not set a cookie then (with a fail-open policy they are logged, and the
    /// session is left unsaved).
    pub async fn commit(&self) -> Result<Commit, Error> {
        let committed = self.commit_inner().await;
        self.fail_open(committed)
    }

    /// [`commit`](Session::commit) without waiting, when that is possible: the session needs
    /// no backend call (not loaded, or unchanged), or it needs a single create or update that
    /// the backend does inline ([`write_now`](SessionBackend::write_now)). `None` means
    /// nothing was done: call `commit`.
    ///
    /// A session layer tries this first, so in-process backends save without a boxed future.
    pub fn commit_now(&self) -> Option<Result<Commit, Error>> {
        let (data, record) = {
            let state = self.state();
            if let Some(commit) = self.settled(&state) {
                return Some(Ok(commit));
            }
            // Only a plain create or update of a changed, non-empty session goes inline, and
            // only to a backend that did not have to wait for the load.
            if state.waits
                || !state.changed
                || state.regenerate
                || state.stale.is_some()
                || state.data.is_empty()
            {
                return None;
            }
            (state.data.clone(), state.record.clone())
        };
        let (data, ttl) = self.stamped(data, record.is_none());
        let saved = self
            .inner
            .settings
            .backend
            .write_now(record.as_deref(), &data, ttl)?;
        Some(self.fail_open(self.stored(record, data, saved)))
    }

    /// With a fail-open policy, a failed save is logged and the response goes out without it.
    fn fail_open(&self, committed: Result<Commit, Error>) -> Result<Commit, Error> {
        match committed {
            Err(error) if self.inner.settings.policy.fail_open => {
                tracing::warn!(%error, "saving the session failed; the response goes out without it");
                Ok(Commit::Unchanged)
            }
            other => other,
        }
    }

    /// `data` as it is saved now: last access now (and created now for a new record), with the
    /// TTL the policy gives it.
    fn stamped(&self, mut data: SessionData, new: bool) -> (SessionData, Option<Duration>) {
        let now = unix_now();
        data.set_last_access(now);
        if new {
            data.set_created(now);
        }
        let ttl = self.inner.settings.policy.ttl(data.created_unix(), now);
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
        let (data, record, regenerate, stale, changed) = {
            let mut state = self.state();
            if let Some(commit) = self.settled(&state) {
                return Ok(commit);
            }
            let stale = state.stale.take();
            (
                state.data.clone(),
                state.record.clone(),
                state.regenerate,
                stale,
                state.changed,
            )
        };
        let backend: &dyn SessionBackend = &*self.inner.settings.backend;
        let sent_cookie = self.inner.cookie.is_some();
        if let Some(stale) = &stale {
            backend.remove(stale).await?;
        }

        if data.is_empty() {
            if let Some(id) = &record {
                backend.remove(id).await?;
            }
            self.saved(None, data);
            return Ok(if sent_cookie {
                Commit::Expire
            } else {
                Commit::Unchanged
            });
        }

        let (data, ttl) = self.stamped(data, record.is_none());
        match (record, regenerate) {
            (Some(old), true) => {
                // Write the new record before removing the old one, so a failure in between
                // loses nothing.
                let value = self.write(None, &data, ttl).await?;
                backend.remove(&old).await?;
                self.stored(None, data, Ok(value))
            }
            (Some(id), false) => {
                let saved = if changed {
                    self.write(Some(&id), &data, ttl).await
                } else {
                    backend.touch(&id, &data, ttl).await
                };
                self.stored(Some(id), data, saved)
            }
            (None, _) => {
                let saved = self.write(None, &data, ttl).await;
                self.stored(None, data, saved)
            }
        }
    }

    /// A backend write, inline when the backend can ([`write_now`](SessionBackend::write_now)).
    async fn write(
        &self,
        id: Option<&str>,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        let backend: &dyn SessionBackend = &*self.inner.settings.backend;
        match backend.write_now(id, data, ttl) {
            Some(saved) => saved,
            None => backend.write(id, data, ttl).await,
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
            let policy = &self.inner.settings.policy;
            if policy.idle.is_some() && policy.needs_refresh(&state.data, unix_now()) {
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
        state.record = record;
        state.data = data;
        state.changed = false;
        state.regenerate = false;
    }

    /// The value the client sent in its cookie (unverified), if any.
    pub fn cookie_value(&self) -> Option<&str> {
        self.inner.cookie.as_deref()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("loaded", &state.loaded)
            .field("stored", &state.record.is_some())
            .field("changed", &state.changed)
            .field("len", &state.data.values().len())
            .finish_non_exhaustive()
    }
}

type ReadFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<SessionData>, Error>> + Send + 'a>>;

/// The future [`Session::load`] returns.
///
/// Small (two pointers' worth) whatever the backend: a backend that answers inline
/// ([`read_now`](SessionBackend::read_now)) completes on the first poll, and only a backend that
/// must wait puts its (already boxed) read future here.
#[must_use = "futures do nothing unless awaited"]
pub struct Load<'a> {
    session: &'a Session,
    read: Option<ReadFuture<'a>>,
}

impl fmt::Debug for Load<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Load")
            .field("waiting", &self.read.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> Future for Load<'a> {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let session: &'a Session = self.session;
        // Whether the backend answered through its future: then it does I/O, and saving the
        // session goes straight to `write` (see `commit_now`).
        let mut waited = true;
        let read = match &mut self.read {
            Some(read) => ready!(read.as_mut().poll(cx)),
            None => {
                if session.state().loaded {
                    return Poll::Ready(Ok(()));
                }
                match session.inner.cookie.as_deref() {
                    // An empty value stands for one the backend refused unseen (see
                    // `accepts`): no backend call.
                    Some(cookie) if !cookie.is_empty() => {
                        // Through the trait object itself: `Arc<dyn _>`'s own impl would box
                        // twice.
                        let backend: &'a dyn SessionBackend = &*session.inner.settings.backend;
                        match backend.read_now(cookie) {
                            Some(read) => {
                                waited = false;
                                read
                            }
                            None => {
                                let mut read = backend.read(cookie);
                                match read.as_mut().poll(cx) {
                                    Poll::Ready(read) => read,
                                    Poll::Pending => {
                                        self.read = Some(read);
                                        return Poll::Pending;
                                    }
                                }
                            }
                        }
                    }
                    _ => {
                        waited = false;
                        Ok(None)
                    }
                }
            }
        };
        self.read = None;
        Poll::Ready(session.loaded_from(read, waited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend that answers through its futures only, as stores doing I/O do, and counts
    /// how often the session tries to write inline.
    #[derive(Default)]
    struct Waiting {
        inline_writes: AtomicUsize,
        writes: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SessionBackend for Waiting {
        async fn read(&self, _: &str) -> Result<Option<SessionData>, Error> {
            Ok(Some(SessionData::new(Values::new())))
        }
        async fn write(
            &self,
            id: Option<&str>,
            _: &SessionData,
            _: Option<Duration>,
        ) -> Result<String, Error> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            Ok(id.map_or_else(|| "a-new-id-of-sixteen-or-more".to_owned(), str::to_owned))
        }
        async fn remove(&self, _: &str) -> Result<(), Error> {
            Ok(())
        }
        async fn exists(&self, _: &str) -> Result<bool, Error> {
            Ok(true)
        }
        fn write_now(
            &self,
            _: Option<&str>,
            _: &SessionData,
            _: Option<Duration>,
        ) -> Option<Result<String, Error>> {
            self.inline_writes.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_session_loaded_through_the_backends_future_is_not_offered_an_inline_write() {
        let backend = Arc::new(Waiting::default());
        let session = Session::new(
            backend.clone(),
            Some(Arc::from("a-cookie-of-sixteen-bytes")),
        );
        block_on(session.load()).unwrap();
        session.insert("n", 1).unwrap();
        assert!(session.commit_now().is_none(), "the save is left to commit");
        assert_eq!(backend.inline_writes.load(Ordering::Relaxed), 0);
        let commit = block_on(session.commit()).unwrap();
        assert_eq!(commit, Commit::Set("a-cookie-of-sixteen-bytes".to_owned()));
        assert_eq!(backend.writes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_new_session_still_offers_its_first_write_inline() {
        // No cookie, so no load reached the backend: the session cannot know whether the
        // backend writes inline, and asks.
        let backend = Arc::new(Waiting::default());
        let session = Session::new(backend.clone(), None);
        block_on(session.load()).unwrap();
        session.insert("n", 1).unwrap();
        assert!(session.commit_now().is_none());
        assert_eq!(backend.inline_writes.load(Ordering::Relaxed), 1);
        assert!(matches!(block_on(session.commit()), Ok(Commit::Set(_))));
    }
}
