//! Saving a session when its response is ready: what changed goes onto the record as stored,
//! a new id moves it, an emptied one is removed; the answer says what the cookie becomes.

use crate::adapter::Commit;
use crate::session::{Inner, State};
use crate::{Changes, Error, SessionBackend, SessionData};
use std::sync::Arc;
use std::time::Duration;

/// What one save needs, taken from the session's state as the save starts.
struct Pending {
    data: SessionData,
    record: Option<Arc<str>>,
    regenerate: bool,
    stale: Option<Arc<str>>,
    changes: Changes,
}

impl Inner {
    /// Save the session if it changed and say what the response does with the cookie. From
    /// the first call on the session is committed: later changes through any clone, and a
    /// second commit, fail with [`Error::Committed`].
    pub(crate) async fn commit(&self) -> Result<Commit, Error> {
        let saved = match self.commit_once().await {
            // A save refused by the lock is no storage failure: failing open would answer as
            // if it were stored.
            Err(error)
                if self.context.policy().fail_open
                    && !matches!(error, Error::Committed | Error::LockLost) =>
            {
                tracing::warn!(%error, "saving the session failed; the response goes out without it");
                Ok(Commit::Unchanged)
            }
            other => other,
        };
        // A locked request whose save did not give the lock back (no write, a create, a
        // move, a failure) gives it back now.
        self.unlock().await;
        saved
    }

    /// Commit without saving anything: a server error answered, or the request dropped.
    pub(crate) fn discard(&self) {
        self.state().committed = true;
        self.unlock_in_background();
    }

    async fn commit_once(&self) -> Result<Commit, Error> {
        let pending = {
            let mut state = self.state();
            if state.committed {
                return Err(Error::Committed);
            }
            state.committed = true;
            if let Some(commit) = self.answer_without_backend(&state) {
                return Ok(commit);
            }
            Pending {
                data: state.data.clone(),
                record: state.record.clone(),
                regenerate: state.regenerate,
                stale: state.stale.take(),
                changes: std::mem::take(&mut state.changes),
            }
        };
        let backend = self.context.backend();
        if let Some(stale) = &pending.stale {
            backend.remove(stale).await?;
        }

        // A stored record: the changes (none, for a refresh) go onto the record as stored
        // now, which may hold other requests' changes (and may end up empty, and removed).
        if let Some(id) = &pending.record {
            let (data, ttl) = self.stamp_for_save(pending.data, false);
            if pending.regenerate {
                // Rare (a login): boxed, so every other save's future stays small.
                return Box::pin(self.move_to_new_id(id, data, &pending.changes, ttl)).await;
            }
            let applied = match self.lock_on(id) {
                // On a locked route: stored only while the lock is still this request's, and
                // the lock given back in the same step.
                Some(token) => {
                    let applied = backend
                        .apply_locked(id, &data, &pending.changes, ttl, &token)
                        .await;
                    if matches!(applied, Ok(_) | Err(Error::LockLost)) {
                        self.forget_lock();
                    }
                    applied
                }
                None => backend.apply(id, &data, &pending.changes, ttl).await,
            };
            return match applied {
                Ok(Some(value)) => self.written(Some(Arc::clone(id)), data, Ok(value)),
                Ok(None) => {
                    self.adopt_saved(None, SessionData::default());
                    Ok(Commit::Expire)
                }
                // Gone meanwhile (a logout in a parallel request): not written back.
                Err(error) => self.written(Some(Arc::clone(id)), data, Err(error)),
            };
        }

        if pending.data.is_empty() {
            self.adopt_saved(None, pending.data);
            return Ok(if self.cookie.is_some() {
                Commit::Expire
            } else {
                Commit::Unchanged
            });
        }
        let (data, ttl) = self.stamp_for_save(pending.data, true);
        let created = backend.create(&data, ttl).await;
        self.written(None, data, created)
    }

    /// What the response does when the save needs no backend call (the session was never
    /// loaded, or is unchanged with no refresh due); `None` when it does.
    fn answer_without_backend(&self, state: &State) -> Option<Commit> {
        if !state.loaded {
            return Some(Commit::Untouched);
        }
        if state.unsaved {
            return Some(Commit::Unchanged);
        }
        if state.overlapped_end {
            if state.changed || state.regenerate {
                overlapped_changes_dropped();
            }
            return Some(Commit::Unchanged);
        }
        if state.changed || state.stale.is_some() {
            return None;
        }
        if state.record.is_some() {
            let policy = self.context.policy();
            if policy.idle_for(&state.data).is_some()
                && policy.needs_refresh(&state.data, policy.now())
            {
                return None;
            }
            // Its client came back: the first lifetime ends, the record gets the full one.
            if policy.on_probation(&state.data) {
                return None;
            }
            return Some(Commit::Unchanged);
        }
        // A cookie that names no live record is stale: drop it from the client.
        Some(if self.cookie.is_some() {
            Commit::Expire
        } else {
            Commit::Unchanged
        })
    }

    /// `data` as it is saved now: last access now (and created now for a new record), with
    /// the TTL the policy gives it.
    fn stamp_for_save(&self, mut data: SessionData, new: bool) -> (SessionData, Option<Duration>) {
        let now = self.context.policy().now();
        data.set_last_access(now);
        if new {
            data.set_created(now);
        }
        let ttl = self.context.policy().ttl_for(&data, now, new);
        (data, ttl)
    }

    /// The answer for a write: `updated` is the id an update was aimed at (`None` for a
    /// create), `written` what the backend answered.
    fn written(
        &self,
        updated: Option<Arc<str>>,
        data: SessionData,
        written: Result<String, Error>,
    ) -> Result<Commit, Error> {
        let value = match written {
            Ok(value) => value,
            Err(Error::SessionGone) if updated.is_some() => {
                // Ended or moved meanwhile by a parallel request (a logout, a login): not
                // written back, and the cookie is that request's to change.
                let mut state = self.state();
                if state.changed {
                    overlapped_changes_dropped();
                }
                state.record = None;
                state.changed = false;
                return Ok(Commit::Unchanged);
            }
            Err(error) => return Err(error),
        };
        // Server-side stores return the same id on an update: keep the shared copy.
        let stored = match updated {
            Some(id) if *id == *value => id,
            _ => Arc::from(value.as_str()),
        };
        // `data` was stamped with the save's time: the cookie's lifetime counts from it.
        let max_age = self
            .context
            .policy()
            .max_age_for(&data, data.last_access_unix());
        self.adopt_saved(Some(stored), data);
        Ok(Commit::Set { value, max_age })
    }

    /// Make the saved record the session's state.
    fn adopt_saved(&self, record: Option<Arc<str>>, data: SessionData) {
        let mut state = self.state();
        state.record = record;
        state.data = data;
        state.changed = false;
        state.changes = Changes::default();
        state.regenerate = false;
    }

    /// Move the session stored under `id` to a fresh id, through the backend's
    /// [`move_session`](SessionBackend::move_session): the session as this request leaves it
    /// is stored under the new id, then the old record ends. A logout or a revocation that
    /// ended it while this request ran is seen: the move is undone, rather than the session
    /// living on under the new id, and this answer leaves the cookie alone. What other requests saved under the old id while this one ran
    /// does not move with it: a login cuts the old id off.
    async fn move_to_new_id(
        &self,
        id: &Arc<str>,
        data: SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Commit, Error> {
        let backend: &dyn SessionBackend = self.context.backend();
        // On a locked route the move is not fenced by the lock: it runs only while the lock
        // is still this request's, within a lease renewed now.
        self.renew_lock(id).await?;
        if data.is_empty() {
            // Emptied and moved: nothing to move, the session ends.
            let (emptied, clear) = crate::backend::emptying(&data);
            return match backend.apply(id, &emptied, &clear, ttl).await {
                Ok(_) => {
                    self.adopt_saved(None, SessionData::default());
                    Ok(Commit::Expire)
                }
                Err(Error::SessionGone) => {
                    // Another request ended or moved it first: its answer sets the cookie.
                    self.adopt_saved(None, SessionData::default());
                    Ok(Commit::Unchanged)
                }
                Err(error) => Err(error),
            };
        }
        match backend.move_session(id, &data, changes, ttl).await {
            Ok(value) => self.written(None, data, Ok(value)),
            Err(Error::SessionGone) => {
                // Another request ended or moved it first (a logout, a revocation, another
                // login): the move is undone, and that request's answer sets the cookie.
                overlapped_changes_dropped();
                self.adopt_saved(None, SessionData::default());
                Ok(Commit::Unchanged)
            }
            Err(error) => Err(error),
        }
    }
}

/// The `tracing` event of a request whose changes are not saved because another request
/// ended or moved its session while it ran. The session's id stays out of it.
fn overlapped_changes_dropped() {
    tracing::info!(
        "session changes dropped: another request ended the session or moved it to a new id \
         (a logout or a login) while this one ran; they are not carried into what it became"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{self, Policy, Shared};
    use crate::{LazySession, MAX_USER_LEN, Session};
    use std::ops::Deref;
    use std::sync::{Mutex, OnceLock};

    /// One request's session, driven as a layer drives it: loaded, changed, committed.
    struct Request {
        lazy: LazySession,
        loaded: OnceLock<Session>,
    }

    impl Request {
        fn new(backend: Arc<dyn SessionBackend>, cookie: Option<&str>, policy: Policy) -> Self {
            Request {
                lazy: adapter::session(Arc::new(Shared { backend, policy }), cookie.map(Arc::from)),
                loaded: OnceLock::new(),
            }
        }
        async fn load(&self) -> Result<(), Error> {
            let session = self.lazy.load().await?;
            let _ = self.loaded.set(session);
            Ok(())
        }
        async fn commit(&self) -> Result<Commit, Error> {
            adapter::commit(&self.lazy).await
        }
        fn discard(&self) {
            adapter::discard(&self.lazy);
        }
    }

    impl Deref for Request {
        type Target = Session;
        fn deref(&self) -> &Session {
            self.loaded.get().expect("loaded first")
        }
    }
    struct Map(Mutex<std::collections::HashMap<String, SessionData>>);

    #[async_trait::async_trait]
    impl SessionBackend for Map {
        async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
            Ok(self.0.lock().unwrap().get(id).cloned())
        }
        async fn create(&self, data: &SessionData, _: Option<Duration>) -> Result<String, Error> {
            let id = self.generate_id();
            self.0.lock().unwrap().insert(id.clone(), data.clone());
            Ok(id)
        }
        async fn apply(
            &self,
            id: &str,
            session: &SessionData,
            changes: &Changes,
            _: Option<Duration>,
        ) -> Result<Option<String>, Error> {
            let mut map = self.0.lock().unwrap();
            let stored = map.get(id).ok_or(Error::SessionGone)?;
            let merged = changes.applied_to(stored, session.last_access_unix());
            if merged.is_empty() {
                map.remove(id);
                return Ok(None);
            }
            map.insert(id.to_owned(), merged);
            Ok(Some(id.to_owned()))
        }
        async fn remove(&self, id: &str) -> Result<(), Error> {
            self.0.lock().unwrap().remove(id);
            Ok(())
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
            let session = Request::new(backend(), None, Policy::default());
            session.load().await.unwrap();
            let late: Session = (*session).clone();
            session.insert("n", 1).unwrap();
            assert!(matches!(session.commit().await, Ok(Commit::Set { .. })));
            assert!(matches!(late.insert("n", 2), Err(Error::Committed)));
            assert!(matches!(late.remove("n"), Err(Error::Committed)));
            assert!(matches!(late.clear(), Err(Error::Committed)));
            assert!(matches!(late.regenerate_id(), Err(Error::Committed)));
            assert!(matches!(late.delete().await, Err(Error::Committed)));
            assert!(matches!(session.commit().await, Err(Error::Committed)));
            assert_eq!(late.get::<u32>("n").unwrap(), Some(1), "reads still work");
        });
    }

    #[test]
    fn a_discarded_session_saves_nothing_and_refuses_changes() {
        block_on(async {
            let store = backend();
            let session = Request::new(store.clone(), None, Policy::default());
            session.load().await.unwrap();
            session.insert("n", 1).unwrap();
            session.discard();
            assert!(matches!(session.insert("n", 2), Err(Error::Committed)));
            assert!(store.0.lock().unwrap().is_empty());
        });
    }

    /// A record created with `values`, and its id.
    async fn stored(store: &Arc<Map>, values: serde_json::Value) -> String {
        let session = Request::new(store.clone(), None, Policy::default());
        session.load().await.unwrap();
        for (key, value) in values.as_object().unwrap() {
            session.insert(key, value).unwrap();
        }
        let Ok(Commit::Set { value: id, .. }) = session.commit().await else {
            panic!("saved")
        };
        id
    }

    fn open(store: &Arc<Map>, id: &str, policy: Policy) -> Request {
        Request::new(store.clone(), Some(id), policy)
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
            let reader = open(&store, &id, policy.clone());
            let writer = open(&store, &id, policy);
            reader.load().await.unwrap();
            writer.load().await.unwrap();
            writer.insert("b", 2).unwrap();
            writer.commit().await.unwrap();
            assert!(
                matches!(reader.commit().await, Ok(Commit::Set { .. })),
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
            // The logout's answer expires the cookie; this one leaves it to that answer.
            assert_eq!(login.commit().await.unwrap(), Commit::Unchanged);
            assert!(
                store.0.lock().unwrap().is_empty(),
                "resurrected under a new id"
            );
        });
    }

    #[test]
    fn a_new_id_carries_what_the_login_saw_not_what_others_saved_under_the_old_id() {
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
            let Ok(Commit::Set { value: new_id, .. }) = login.commit().await else {
                panic!("saved")
            };
            assert_ne!(new_id, id);
            let map = store.0.lock().unwrap();
            assert!(!map.contains_key(&id), "the old id is gone");
            let record = &map[&new_id];
            assert_eq!(record.values()["a"], 1, "what the login loaded moves");
            assert_eq!(record.values()["user"], "ada", "what the login set moves");
            assert!(
                !record.values().contains_key("cart"),
                "a request under the pre-login id reached the logged-in session"
            );
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
            assert!(!login.is_empty(), "a bound session is not empty");
            let Ok(Commit::Set { value: new_id, .. }) = login.commit().await else {
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
            let Ok(Commit::Set { value: id, .. }) = session.commit().await else {
                panic!("saved")
            };
            assert_eq!(store.0.lock().unwrap()[&id].user(), Some("ada"));

            let moved = open(&store, &id, Policy::default());
            moved.load().await.unwrap();
            moved.regenerate_id().unwrap();
            let Ok(Commit::Set {
                value: moved_id, ..
            }) = moved.commit().await
            else {
                panic!("saved")
            };
            assert_ne!(moved_id, id);
            assert_eq!(store.0.lock().unwrap()[&moved_id].user(), Some("ada"));

            let unbound = open(&store, &moved_id, Policy::default());
            unbound.load().await.unwrap();
            unbound.clear_user().unwrap();
            assert_eq!(unbound.user(), None);
            unbound.commit().await.unwrap();
            assert_eq!(store.0.lock().unwrap()[&moved_id].user(), None);
            assert_eq!(store.0.lock().unwrap()[&moved_id].values()["a"], 1);

            let cleared = open(&store, &moved_id, Policy::default());
            cleared.load().await.unwrap();
            cleared.set_user("ada").unwrap();
            cleared.clear().unwrap();
            assert_eq!(cleared.user(), None, "clear unbinds");
            assert!(matches!(cleared.commit().await, Ok(Commit::Expire)));

            let deleted = Request::new(store.clone(), None, Policy::default());
            deleted.load().await.unwrap();
            deleted.set_user("ada").unwrap();
            deleted.delete().await.unwrap();
            assert_eq!(deleted.user(), None, "delete unbinds");
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
        async fn create(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
            let victim = self.victim.lock().unwrap().take();
            if let Some(victim) = victim {
                self.map.remove(&victim).await?;
            }
            self.map.create(data, ttl).await
        }
        async fn apply(
            &self,
            id: &str,
            session: &SessionData,
            changes: &Changes,
            ttl: Option<Duration>,
        ) -> Result<Option<String>, Error> {
            self.map.apply(id, session, changes, ttl).await
        }
        async fn remove(&self, id: &str) -> Result<(), Error> {
            self.map.remove(id).await
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
            let session = Request::new(racing, Some(&id), Policy::default());
            session.load().await.unwrap();
            session.regenerate_id().unwrap();
            session.set_user("ada").unwrap();
            assert!(matches!(session.commit().await, Ok(Commit::Unchanged)));
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
            let Ok(Commit::Set { value: id, .. }) = login.commit().await else {
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
            let first = Request::new(store.clone(), None, Policy::default());
            first.load().await.unwrap();
            first.insert("user", "ada").unwrap();
            let Ok(Commit::Set { value: id, .. }) = first.commit().await else {
                panic!("saved")
            };
            let later = Request::new(store.clone(), Some(&id), Policy::default());
            later.load().await.unwrap();
            later.insert("report", "ready").unwrap();
            assert!(matches!(later.commit().await, Ok(Commit::Set { value, .. }) if value == id));
            let again = Request::new(store, Some(&id), Policy::default());
            again.load().await.unwrap();
            assert_eq!(again.get::<String>("user").unwrap().as_deref(), Some("ada"));
            assert_eq!(
                again.get::<String>("report").unwrap().as_deref(),
                Some("ready")
            );
        });
    }
}
