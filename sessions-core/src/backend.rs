use crate::{Changes, DeviceId, Error, SessionData, UserSession};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// How long a backend keeps the marker of a session that ended or moved to a new id (see
/// [`Lookup::Ended`]): requests sent with the old cookie before the client got the logout or
/// login answer arrive within it.
pub const ENDED_GRACE: Duration = Duration::from_secs(60);

/// What [`SessionBackend::lookup`] found under an id.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Lookup {
    /// A live session.
    Live(SessionData),
    /// The session ended (a logout, a login that moved it to a new id, an emptied session)
    /// less than [`ENDED_GRACE`] ago: a request that overlapped that change.
    Ended,
    /// Nothing: never stored, expired, ended long ago, or not authentic.
    Missing,
}

/// Where sessions are stored: implement this to add a storage backend.
///
/// Four storage verbs are required: [`read`](SessionBackend::read) a record,
/// [`create`](SessionBackend::create) one under a fresh id,
/// [`apply`](SessionBackend::apply) a request's changes to one, and
/// [`remove`](SessionBackend::remove) one. The rest is provided: the user index
/// ([`user_session_ids`](SessionBackend::user_session_ids) and what builds on it) answers
/// [`Error::Unsupported`] until a backend keeps one, and
/// [`generate_id`](SessionBackend::generate_id) mints ids.
///
/// # Contract
///
/// Every backend of this workspace keeps these rules, and the
/// [conformance suite](crate::conformance) (feature `conformance`) checks them:
///
/// - **Read.** A missing, expired or unauthentic record reads as `Ok(None)`, never as an
///   error or a panic, whatever bytes the id holds (it comes from a cookie: anyone can send
///   anything). A record that is stored but no longer decodes (a serializer change, a
///   corrupt row) reads as `Ok(None)` too, unless the backend offers a strict mode that
///   reports it as [`Error::Serialization`] instead.
/// - **Create.** `create` mints a fresh id (with [`generate_id`](SessionBackend::generate_id))
///   and never overwrites an existing record: on a collision it mints again. What it returns
///   is what the client gets in its cookie: the id for a server-side store, the encoded
///   session itself for a store that keeps it in the cookie.
/// - **Apply.** `apply` changes a record that still exists, atomically: the request's
///   [`Changes`] (keys set and removed, a clear, a new lifetime or user) go onto the record
///   as it is stored at that moment, so two overlapping requests that change different keys
///   both keep their change, and for the same key the later save wins. It answers the
///   cookie's value (`Some`), or `None` when the changes left the record empty and it was
///   removed. A record that is gone (removed by a parallel request, or expired) is
///   [`Error::SessionGone`], and nothing is stored: an id a client made up is never adopted,
///   and a logged-out session is never brought back.
/// - **Revisions.** A store that compares and swaps may attach a [`Revision`](crate::Revision)
///   to what `read` returns; `apply` then gets the record as the request left it (`session`,
///   carrying that revision) and, when the store still holds that revision, stores `session`
///   as it is, with no second read. Stores that apply under a lock or in a script ignore it.
/// - **TTL.** `ttl` is how long the record must live from this write; `None` means no limit.
///   Each write restarts the clock. The record's own metadata (creation, last access) is
///   set by the caller; a backend stores it as given (an `apply` keeps the stored creation
///   time).
/// - **Remove.** Removing a missing record is not an error.
/// - **End markers.** A backend may leave a marker where a session ended (`remove`, or an
///   `apply` that emptied it) for [`ENDED_GRACE`], and answer [`Lookup::Ended`] for it from
///   [`lookup`](SessionBackend::lookup): the session layer then tells a request that
///   overlapped the logout or login from one that carries a long-dead cookie, and leaves the
///   first one's cookie alone. A marker reads as missing everywhere else (`read`, `apply`,
///   listings). Without markers (the default `lookup`), overlapping requests of a logout are
///   answered as requests with a dead cookie: their cookie is expired.
/// - **Users.** A backend that keeps an index of sessions by user (for "log out
///   everywhere") adds a session to it when a write binds it
///   ([`SessionData::user`]), and implements
///   [`user_session_ids`](SessionBackend::user_session_ids); the listing and revoking methods
///   are then provided, and should be overridden where the store can do them atomically.
///
/// # Example
///
/// A backend over a shared map, the way a third-party crate would write one (a lock makes
/// each `apply` atomic):
///
/// ```
/// use async_trait::async_trait;
/// use sessionkit_core::{Changes, Error, SessionBackend, SessionData};
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::Duration;
///
/// #[derive(Default)]
/// struct MapBackend(Mutex<HashMap<String, SessionData>>);
///
/// #[async_trait]
/// impl SessionBackend for MapBackend {
///     async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
///         Ok(self.0.lock().unwrap().get(id).cloned())
///     }
///
///     async fn create(&self, data: &SessionData, _ttl: Option<Duration>) -> Result<String, Error> {
///         let mut map = self.0.lock().unwrap();
///         loop {
///             let id = self.generate_id();
///             if !map.contains_key(&id) {
///                 map.insert(id.clone(), data.clone());
///                 return Ok(id);
///             }
///         }
///     }
///
///     async fn apply(
///         &self,
///         id: &str,
///         session: &SessionData,
///         changes: &Changes,
///         _ttl: Option<Duration>,
///     ) -> Result<Option<String>, Error> {
///         let mut map = self.0.lock().unwrap();
///         let stored = map.get(id).ok_or(Error::SessionGone)?;
///         // The session comes stamped with the save's time.
///         let merged = changes.applied_to(stored, session.last_access_unix());
///         if merged.is_empty() {
///             map.remove(id);
///             return Ok(None);
///         }
///         map.insert(id.to_owned(), merged);
///         Ok(Some(id.to_owned()))
///     }
///
///     async fn remove(&self, id: &str) -> Result<(), Error> {
///         self.0.lock().unwrap().remove(id);
///         Ok(())
///     }
/// }
/// ```
///
/// Its own tests run the conformance suite (see [`conformance`](crate::conformance)).
#[async_trait]
pub trait SessionBackend: Send + Sync + 'static {
    /// The record stored under `id`: `Ok(None)` when it is missing, expired, not authentic
    /// or (outside a strict mode) no longer decodes.
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error>;

    /// [`read`](SessionBackend::read) `id`, telling a session that ended moments ago
    /// ([`Lookup::Ended`]: the backend keeps a marker for [`ENDED_GRACE`]) from one that is
    /// missing. The session layer loads sessions through it; the default, for a backend that
    /// keeps no markers, answers [`Lookup::Live`] or [`Lookup::Missing`] from `read`.
    async fn lookup(&self, id: &str) -> Result<Lookup, Error> {
        Ok(match self.read(id).await? {
            Some(data) => Lookup::Live(data),
            None => Lookup::Missing,
        })
    }

    /// Store `data` under a fresh id, never over an existing record, and return the value
    /// the client must send back (the id, for a server-side store). `ttl` is how long the
    /// record must live (`None`: no limit).
    async fn create(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error>;

    /// Apply `changes` to the record stored under `id` as it is at this moment, atomically,
    /// and answer the cookie's value, or `None` when the changes left the record empty and
    /// it was removed. `session` is the record as the request left it (as loaded, with
    /// `changes` made and its last access stamped now), carrying the revision `read`
    /// attached, if any. The stored creation time stays; the last access is the later of the
    /// stored one and `session`'s; `ttl` counts from now. A record that is gone is
    /// [`Error::SessionGone`] and is not brought back.
    ///
    /// A save with no changes (an idle timeout's refresh) renews the last access and the TTL.
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error>;

    /// Delete the record stored under `id`. Removing a missing record is not an error.
    async fn remove(&self, id: &str) -> Result<(), Error>;

    /// Move the session stored under `id` to a fresh id (a login's
    /// [`regenerate_id`](crate::Session::regenerate_id)): `session`, as the request leaves it
    /// (carrying the revision `read` attached), is stored under a new id, then the record under
    /// `id` ends. `changes` are the request's changes (whether it binds a user, for a per-user
    /// limit). Answers the new cookie value, or [`Error::SessionGone`] when the record under
    /// `id` ended or moved meanwhile (a logout, a revocation, another login): nothing is stored
    /// then.
    ///
    /// The default is [`create`](SessionBackend::create), then an
    /// [`apply`](SessionBackend::apply) that empties `id` (the new record is removed again when
    /// `id` is gone). A backend whose index of sessions by user is not updated in one step with
    /// its records overrides it, so that a revocation racing the move ends the session under
    /// its new id as well.
    async fn move_session(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        let _ = changes;
        move_by_create_and_apply(self, id, session, ttl).await
    }

    /// The ids of the sessions bound to `user` (see
    /// [`Session::set_user`](crate::Session::set_user)), from the backend's index of them. The
    /// list may hold ids of sessions that have since ended or been bound to someone else:
    /// [`user_sessions`](SessionBackend::user_sessions) and the revoking methods check each
    /// record before they use it.
    ///
    /// Implementing it is enough to give a backend listing and revocation: the provided
    /// methods build on it with [`read`](SessionBackend::read) and
    /// [`remove`](SessionBackend::remove). A backend that keeps such an index also adds each
    /// session to it when a write binds it (`SessionData::user`), and should override the
    /// provided methods where its store can do them atomically. The default is
    /// [`Error::Unsupported`]: a backend without an index cannot find a user's sessions.
    async fn user_session_ids(&self, user: &str) -> Result<Vec<String>, Error> {
        let _ = user;
        Err(Error::Unsupported(
            "this backend keeps no index of sessions by user, so it cannot list or revoke them; \
             for sessions carried in cookies, keep a per-user generation in the session and \
             compare it with the application's (see the sessionkit-cookie docs)"
                .to_owned(),
        ))
    }

    /// The live sessions bound to `user`, most recently used first.
    ///
    /// The default reads each id [`user_session_ids`](SessionBackend::user_session_ids) gives
    /// and keeps the records still bound to `user`.
    async fn user_sessions(&self, user: &str) -> Result<Vec<UserSession>, Error> {
        let mut sessions = Vec::new();
        for id in self.user_session_ids(user).await? {
            if let Some(record) = bound_record(self, &id, user).await? {
                sessions.push(UserSession::new(&id, record));
            }
        }
        UserSession::most_recent_first(&mut sessions);
        Ok(sessions)
    }

    /// End every session bound to `user`, except the one stored under `keep` (the session
    /// of the request asking: "sign out of other devices"); how many were ended. A revoked
    /// session reads as missing from now on: its next request starts a fresh session and
    /// its cookie is expired, and a save racing the revocation does not bring it back
    /// (updates of a removed record are [`Error::SessionGone`]).
    ///
    /// The default reads and removes each session [`user_session_ids`](SessionBackend::user_session_ids)
    /// gives that is still bound to `user`: two steps, so a session bound to someone else
    /// between them would go too. Override it where the store can check and remove in one
    /// step (every backend of this workspace does).
    async fn revoke_user_sessions(&self, user: &str, keep: Option<&str>) -> Result<usize, Error> {
        let mut revoked = 0;
        for id in self.user_session_ids(user).await? {
            if Some(id.as_str()) == keep {
                continue;
            }
            if bound_record(self, &id, user).await?.is_some() {
                self.remove(&id).await?;
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// End the session of `user` whose [`DeviceId`] is `device` (from
    /// [`user_sessions`](SessionBackend::user_sessions)): "sign out this device". `false`
    /// when `user` has no live session with that device id.
    async fn revoke_user_session(&self, user: &str, device: &DeviceId) -> Result<bool, Error> {
        for id in self.user_session_ids(user).await? {
            if device.is_of(&id) && bound_record(self, &id, user).await?.is_some() {
                self.remove(&id).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Keep at most `max` sessions bound to each user (Spring Security's "maximum
    /// sessions"): when a session is bound beyond it, the user's least recently used other
    /// sessions end, in the same step as the binding (they are deleted: their next request
    /// starts a fresh session and its cookie is expired). Called once, when the session layer
    /// is built ([`with_max_sessions_per_user`]); a backend shares the setting with its
    /// clones.
    ///
    /// The default is [`Error::Unsupported`]: a backend that keeps no index of sessions by
    /// user (the cookie backend) cannot find the sessions to end, and the layer's `build()`
    /// refuses the setting.
    ///
    /// [`with_max_sessions_per_user`]: https://docs.rs/sessionkit-tower/latest/sessionkit_tower/struct.SessionLayerBuilder.html#method.with_max_sessions_per_user
    fn limit_sessions_per_user(&mut self, max: usize) -> Result<(), Error> {
        let _ = max;
        Err(Error::Unsupported(
            "this backend keeps no index of sessions by user, so it cannot cap them; use a \
             server-side backend (memory, Redis, SQL) for a per-user session limit"
                .to_owned(),
        ))
    }

    /// Whether this backend can lock sessions for routes whose requests of one session must
    /// run one at a time (`SessionLayer::lock` in `sessionkit-tower`):
    /// [`try_lock`](SessionBackend::try_lock), [`unlock`](SessionBackend::unlock) and
    /// [`apply_locked`](SessionBackend::apply_locked). Asked once, when such a route's layer
    /// is made. The default is [`Error::Unsupported`], and so are those three methods: a
    /// backend that keeps no shared state (the cookie backend) has nowhere to keep a lock.
    fn check_locking(&self) -> Result<(), Error> {
        Err(Error::Unsupported(
            "this backend cannot lock sessions (it keeps no state shared by the requests of \
             one session); use a server-side backend (memory, Redis, SQL) for locked routes"
                .to_owned(),
        ))
    }

    /// Take the lock of the session `id` for `lease`, owned by `token` (random, from the
    /// caller), unless another token holds it: `true` when taken. A lock whose lease ran out
    /// is free; one that `token` holds already is taken again, for a new lease (a command
    /// sent again after its reply was lost must not lock its own holder out). The lock is taken before the session is read, so the id may name no session:
    /// with nothing to guard, a backend may answer `true` for it without keeping a lock. One
    /// round trip where the store is remote.
    async fn try_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        let _ = (id, token, lease);
        Err(lock_unsupported())
    }

    /// Renew the lock `token` holds on `id` for a new `lease`: `false` when it holds it no
    /// more (its lease ran out, whether or not another request took it since, or it was
    /// given back). The session layer checks its lock this way before the steps the backend
    /// does not fence with the lock (a login moving the session, a `delete()` ending it),
    /// which then run within the new lease.
    async fn renew_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        let _ = (id, token, lease);
        Err(lock_unsupported())
    }

    /// Release the lock of `id` if `token` still holds it (nothing otherwise: a lease that
    /// ran out may have let another request take it).
    async fn unlock(&self, id: &str, token: &str) -> Result<(), Error> {
        let _ = (id, token);
        Err(lock_unsupported())
    }

    /// [`apply`](SessionBackend::apply), fenced by the lock: the changes are stored only if
    /// `token` still holds the lock of `id`, checked in the same atomic step as the write,
    /// and the lock is released in that step where the store allows (otherwise right
    /// after). When `token` no longer holds it (the lease ran out, and another request may
    /// have taken it and saved), nothing is stored and the answer is [`Error::LockLost`].
    async fn apply_locked(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
        token: &str,
    ) -> Result<Option<String>, Error> {
        let _ = (id, session, changes, ttl, token);
        Err(lock_unsupported())
    }

    /// A fresh, unguessable id. The default takes 192 bits from the operating system's CSPRNG
    /// and encodes them as URL-safe base64 (see [`generate_id`](crate::generate_id)).
    fn generate_id(&self) -> String {
        crate::generate_id()
    }
}

fn lock_unsupported() -> Error {
    Error::Unsupported("this backend cannot lock sessions".to_owned())
}

/// [`SessionBackend::move_session`] as the default does it: create, then end `id` with an
/// emptying [`apply`](SessionBackend::apply), and remove the new record again when `id` is
/// gone. For a backend that overrides `move_session` for some sessions only.
///
/// # Errors
///
/// [`Error::SessionGone`] when `id` ended or moved meanwhile; what the backend answers.
pub async fn move_by_create_and_apply<B: SessionBackend + ?Sized>(
    backend: &B,
    id: &str,
    session: &SessionData,
    ttl: Option<Duration>,
) -> Result<String, Error> {
    // Created first, so a failure in between loses nothing.
    let value = backend.create(&session.without_revision(), ttl).await?;
    let (emptied, clear) = emptying(session);
    match backend.apply(id, &emptied, &clear, ttl).await {
        Ok(_) => Ok(value),
        Err(Error::SessionGone) => {
            backend.remove(&value).await?;
            Err(Error::SessionGone)
        }
        Err(error) => Err(error),
    }
}

/// The session and changes of a save that empties the record `session` was loaded from: no
/// values, the same revision (re-exported as [`store::emptying`](crate::store::emptying)).
pub fn emptying(session: &SessionData) -> (SessionData, Changes) {
    let mut clear = Changes::default();
    clear.clear();
    let mut emptied = SessionData::default();
    if let Some(revision) = session.revision() {
        emptied = emptied.with_revision(revision.clone());
    }
    (emptied, clear)
}

/// The live record `id` of `backend`, when it is still bound to `user`: what the provided
/// listing and revoking methods check each indexed id against.
async fn bound_record<B: SessionBackend + ?Sized>(
    backend: &B,
    id: &str,
    user: &str,
) -> Result<Option<SessionData>, Error> {
    Ok(backend
        .read(id)
        .await?
        .filter(|record| record.user() == Some(user)))
}

#[async_trait]
impl<B: SessionBackend + ?Sized> SessionBackend for Arc<B> {
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
        (**self).read(id).await
    }
    async fn lookup(&self, id: &str) -> Result<Lookup, Error> {
        (**self).lookup(id).await
    }
    async fn create(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        (**self).create(data, ttl).await
    }
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        (**self).apply(id, session, changes, ttl).await
    }
    async fn remove(&self, id: &str) -> Result<(), Error> {
        (**self).remove(id).await
    }
    async fn move_session(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        (**self).move_session(id, session, changes, ttl).await
    }
    async fn user_session_ids(&self, user: &str) -> Result<Vec<String>, Error> {
        (**self).user_session_ids(user).await
    }
    async fn user_sessions(&self, user: &str) -> Result<Vec<UserSession>, Error> {
        (**self).user_sessions(user).await
    }
    async fn revoke_user_sessions(&self, user: &str, keep: Option<&str>) -> Result<usize, Error> {
        (**self).revoke_user_sessions(user, keep).await
    }
    async fn revoke_user_session(&self, user: &str, device: &DeviceId) -> Result<bool, Error> {
        (**self).revoke_user_session(user, device).await
    }
    fn limit_sessions_per_user(&mut self, max: usize) -> Result<(), Error> {
        match Arc::get_mut(self) {
            Some(backend) => backend.limit_sessions_per_user(max),
            None => Err(Error::Config(
                "the backend is shared (an Arc with other owners): set the per-user limit \
                 before sharing it"
                    .to_owned(),
            )),
        }
    }
    fn check_locking(&self) -> Result<(), Error> {
        (**self).check_locking()
    }
    async fn try_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        (**self).try_lock(id, token, lease).await
    }
    async fn renew_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        (**self).renew_lock(id, token, lease).await
    }
    async fn unlock(&self, id: &str, token: &str) -> Result<(), Error> {
        (**self).unlock(id, token).await
    }
    async fn apply_locked(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
        token: &str,
    ) -> Result<Option<String>, Error> {
        (**self)
            .apply_locked(id, session, changes, ttl, token)
            .await
    }
    fn generate_id(&self) -> String {
        (**self).generate_id()
    }
}

/// A replacement id source for a backend, for custom id formats and for tests that need to
/// script id collisions (see [`conformance`](crate::conformance)).
pub type IdGenerator = Arc<dyn Fn() -> String + Send + Sync>;
