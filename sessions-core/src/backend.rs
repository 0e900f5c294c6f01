use crate::{Changes, Error, SessionData, DeviceId, UserSession, unix_now};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// Where sessions are stored: implement this to add a storage backend.
///
/// The value [`write`](SessionBackend::write) returns is what the client gets in its cookie.
/// For server-side stores that is the record's id; a cookie-carried backend returns the
/// encoded session itself. Either way the middleware treats it the same.
///
/// # Contract
///
/// Every backend in this workspace keeps these rules, and the
/// [conformance suite](crate::conformance) (feature `conformance`) checks them:
///
/// - A missing, expired or unauthentic record reads as `Ok(None)`, never as an error or panic,
///   whatever bytes the id holds.
/// - `write(None, ..)` *creates*: it mints a fresh id with
///   [`generate_id`](SessionBackend::generate_id) and never overwrites an existing record; on a
///   collision it mints again.
/// - `write(Some(id), ..)` *updates* a record that still exists. If the record is gone (removed by
///   a parallel request, or expired) it returns [`Error::SessionGone`] and stores nothing, so an
///   id a client made up is never adopted and a logged-out session is never brought back.
/// - `ttl` is how long the record must live from this write; `None` means no limit.
///   Each write restarts the clock.
///
/// # Example
///
/// A backend over a shared map, the way a third-party crate would write one:
///
/// ```
/// use async_trait::async_trait;
/// use sessionkit_core::{Error, SessionBackend, SessionData};
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
///     async fn write(&self, id: Option<&str>, data: &SessionData, _ttl: Option<Duration>)
///         -> Result<String, Error>
///     {
///         let mut map = self.0.lock().unwrap();
///         match id {
///             Some(id) => match map.get_mut(id) {
///                 Some(slot) => { *slot = data.clone(); Ok(id.to_owned()) }
///                 None => Err(Error::SessionGone),
///             },
///             None => loop {
///                 let id = self.generate_id();
///                 if !map.contains_key(&id) {
///                     map.insert(id.clone(), data.clone());
///                     break Ok(id);
///                 }
///             },
///         }
///     }
///     async fn remove(&self, id: &str) -> Result<(), Error> {
///         self.0.lock().unwrap().remove(id);
///         Ok(())
///     }
///     async fn exists(&self, id: &str) -> Result<bool, Error> {
///         Ok(self.0.lock().unwrap().contains_key(id))
///     }
/// }
/// ```
#[async_trait]
pub trait SessionBackend: Send + Sync + 'static {
    /// The record stored under `id`: `Ok(None)` when it is missing, expired or not authentic.
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error>;

    /// Store `data` and return the value the client must send back.
    ///
    /// `None` creates a new record under a fresh id; `Some(id)` updates an existing record and
    /// fails with [`Error::SessionGone`] when it no longer exists. `ttl` is how long the record
    /// must live from now (`None`: no limit).
    async fn write(
        &self,
        id: Option<&str>,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error>;

    /// Delete the record stored under `id`. Removing a missing record is not an error.
    async fn remove(&self, id: &str) -> Result<(), Error>;

    /// Whether a live record is stored under `id`.
    async fn exists(&self, id: &str) -> Result<bool, Error>;

    /// Apply `changes` to the record stored under `id` as it is at this moment, and return
    /// what became of it: saved (the cookie value, and the record as it now stands) or, when
    /// the changes left it empty, removed. The session layer saves a loaded session this way,
    /// a changed one and one whose idle refresh or probation is due (with no changes),
    /// so two overlapping requests that change different keys both keep their change; for the
    /// same key the later save wins. The record's creation time stays; its last access is now
    /// (or later, if the stored one is); `ttl` counts from now. A record that is gone (removed
    /// or expired) is [`Error::SessionGone`] and is not brought back.
    ///
    /// `session` is the record as the request left it (as loaded, with `changes` made, its
    /// last access stamped now), carrying the [`Revision`](crate::Revision) the backend's
    /// [`read`](SessionBackend::read) attached, if any: a backend that compares and swaps takes
    /// that revision as the expected state and, when the store still holds it, stores
    /// `session` as it is, so an uncontended save needs no second read.
    ///
    /// The default reads the record, applies the changes and writes the result back (or
    /// removes it) through [`read`](SessionBackend::read), [`write`](SessionBackend::write)
    /// and [`remove`](SessionBackend::remove): right for saves that do not overlap, but two
    /// saves at the same instant can still overwrite each other's keys. Override it where the
    /// store can apply the changes atomically (under a lock, in a script, with a conditional
    /// update), as every server-side backend of this workspace does.
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Applied, Error> {
        let _ = session;
        let Some(current) = self.read(id).await? else {
            return Err(Error::SessionGone);
        };
        let merged = changes.applied_to(&current, unix_now());
        if merged.is_empty() {
            self.remove(id).await?;
            return Ok(Applied::Removed);
        }
        let value = self.write(Some(id), &merged, ttl).await?;
        Ok(Applied::Saved {
            value,
            record: merged,
        })
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

    /// How many bytes the cookie's value would take for `data`, when it depends on the data
    /// (the cookie backend seals the session into it): what lets a handler check before the
    /// response that a session will fit in a cookie. The default `None` suits server-side
    /// stores, whose cookie holds an id of a fixed size.
    ///
    /// # Errors
    ///
    /// Encoding failures, as a write would return them.
    fn cookie_value_len(&self, data: &SessionData) -> Result<Option<usize>, Error> {
        let _ = data;
        Ok(None)
    }

    /// The absolute limit a session layer applies to this backend's sessions when the
    /// application set none: each ends this long after its creation, however active. The
    /// default `None` suits server-side stores, whose sessions a logout or an admin can end;
    /// the cookie backend offers one (30 days), since nothing on the server can revoke a copy
    /// of its cookie.
    fn default_absolute_timeout(&self) -> Option<Duration> {
        None
    }

    /// For a backend whose cookie value is the session itself (the cookie backend): a copy
    /// of this backend whose values are bound to the cookie `name`, so that a value minted
    /// under one cookie name does not open under another. A session layer calls it with its
    /// cookie's name and stores sessions through the copy.
    ///
    /// The default `None` suits server-side stores: their values are ids, which name a record
    /// whatever cookie carries them.
    fn bind_cookie_name(&self, name: &str) -> Option<Arc<dyn SessionBackend>> {
        let _ = name;
        None
    }

    /// Whether `value` can be one of this backend's ids (or cookie values). Values it rejects
    /// are ignored before any backend call, as if no cookie had been sent.
    ///
    /// The default accepts what [`generate_id`](SessionBackend::generate_id) makes:
    /// 16 to 256 characters of URL-safe base64 (`A–Z a–z 0–9 - _`). Override it together
    /// with `generate_id` (or an id generator option) for other formats.
    fn accepts(&self, value: &str) -> bool {
        (16..=256).contains(&value.len()) && crate::id::is_url_safe(value)
    }

    /// A fresh, unguessable id. The default takes 192 bits from the operating system's CSPRNG
    /// and encodes them as URL-safe base64 (see [`generate_id`](crate::generate_id)).
    fn generate_id(&self) -> String {
        crate::generate_id()
    }
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
    async fn write(
        &self,
        id: Option<&str>,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        (**self).write(id, data, ttl).await
    }
    async fn remove(&self, id: &str) -> Result<(), Error> {
        (**self).remove(id).await
    }
    async fn exists(&self, id: &str) -> Result<bool, Error> {
        (**self).exists(id).await
    }
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Applied, Error> {
        (**self).apply(id, session, changes, ttl).await
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
    fn bind_cookie_name(&self, name: &str) -> Option<Arc<dyn SessionBackend>> {
        (**self).bind_cookie_name(name)
    }
    fn default_absolute_timeout(&self) -> Option<Duration> {
        (**self).default_absolute_timeout()
    }
    fn cookie_value_len(&self, data: &SessionData) -> Result<Option<usize>, Error> {
        (**self).cookie_value_len(data)
    }
    fn accepts(&self, value: &str) -> bool {
        (**self).accepts(value)
    }
    fn generate_id(&self) -> String {
        (**self).generate_id()
    }
}

/// What [`SessionBackend::apply`] did with a session's changes.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Applied {
    /// The changes were stored.
    Saved {
        /// The value the client must send back (the id, for server-side stores).
        value: String,
        /// The record as it now stands, other requests' changes included.
        record: SessionData,
    },
    /// The changes left the record empty, and it was removed: the cookie is expired.
    Removed,
}

/// A replacement id source for a backend, for custom id formats and for tests that need to
/// script id collisions (see [`conformance`](crate::conformance)).
pub type IdGenerator = Arc<dyn Fn() -> String + Send + Sync>;
