//! An in-memory session backend for sessionkit.
//!
//! [`InMemoryBackend`] keeps records in a map inside the process: nothing to set up, the
//! fastest backend there is, and the data is gone when the process ends. Use it for tests,
//! development, and single-process apps that can afford to log everyone out on restart.
//!
//! - Records honour their TTL: an expired record reads as missing and is purged.
//! - The store is bounded: [`DEFAULT_MAX_SESSIONS`] (100,000) unless
//!   [`with_max_sessions`](InMemoryBackend::with_max_sessions) says otherwise
//!   ([`unbounded`](InMemoryBackend::unbounded) is an explicit choice). When it is full, a
//!   create evicts an expired record, else the oldest session whose client never came back,
//!   and only then one whose client did: a flood of one-shot sessions evicts its own kind.
//!   Each create does a bounded amount of upkeep, never a scan of the whole store.
//! - Cloning is cheap and every clone shares the same store.
//!
//! ```
//! use sessionkit_memory::InMemoryBackend;
//! use sessionkit_core::{SessionBackend, SessionData};
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let backend = InMemoryBackend::new().with_max_sessions(100_000);
//! let id = backend.create(&SessionData::default(), None).await?;
//! assert!(backend.exists(&id).await?);
//! # Ok::<(), sessionkit_core::Error>(()) }).unwrap();
//! ```
//!
//! With the middleware from `sessionkit-tower`:
//!
//! ```
//! # use sessionkit_memory::InMemoryBackend;
//! let layer = sessionkit_tower::SessionLayer::new(InMemoryBackend::new());
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | — | | this crate has no features |
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod store;

use sessionkit_core::{
    Changes, Clock, DeviceId, Error, IdGenerator, Lookup, Revision, SessionBackend, SessionData,
    UserSession, async_trait,
};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};
use store::{Record, Store};

/// Sessions kept in this process's memory. See the [crate docs](crate).
#[derive(Clone, Default)]
pub struct InMemoryBackend {
    inner: Arc<Inner>,
}

struct Inner {
    store: RwLock<Store>,
    /// `None`: unbounded, an explicit choice ([`InMemoryBackend::unbounded`]).
    max_sessions: Option<usize>,
    ids: Option<IdGenerator>,
    clock: Clock,
    /// The most sessions one user keeps (0: no limit), shared by clones.
    max_per_user: std::sync::atomic::AtomicUsize,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            store: RwLock::default(),
            max_sessions: Some(DEFAULT_MAX_SESSIONS),
            ids: None,
            clock: Clock::system(),
            max_per_user: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl Inner {
    /// The time now: records expire by it.
    fn now(&self) -> SystemTime {
        self.clock.now()
    }
}

/// When a record written at `now` with `ttl` expires; a TTL too large to represent is as
/// good as none.
fn expiry(now: SystemTime, ttl: Option<Duration>) -> Option<SystemTime> {
    now.checked_add(ttl?)
}

/// How many sessions [`InMemoryBackend::new`] keeps at most.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

impl fmt::Debug for InMemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryBackend")
            .field("sessions", &self.read_store().records.len())
            .field("max_sessions", &self.inner.max_sessions)
            .finish()
    }
}

impl InMemoryBackend {
    /// An empty store that keeps at most [`DEFAULT_MAX_SESSIONS`] sessions (see
    /// [`with_max_sessions`](InMemoryBackend::with_max_sessions) for what goes when it is
    /// full).
    pub fn new() -> Self {
        InMemoryBackend::default()
    }

    /// An empty store without a bound: it grows with every session a client can make, so
    /// an anonymous flood fills memory. Expired records are still purged as sessions are
    /// created. Choose it only where something else bounds the number of sessions.
    pub fn unbounded() -> Self {
        InMemoryBackend::new().configure(|inner| inner.max_sessions = None)
    }

    fn configure(self, configure: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            store: RwLock::default(),
            max_sessions: shared.max_sessions,
            ids: shared.ids.clone(),
            clock: shared.clock.clone(),
            max_per_user: std::sync::atomic::AtomicUsize::new(
                shared
                    .max_per_user
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
        });
        configure(&mut inner);
        InMemoryBackend {
            inner: Arc::new(inner),
        }
    }

    /// Keep at most `max` sessions (default [`DEFAULT_MAX_SESSIONS`]). When a new session
    /// would go over, one record is evicted: the oldest session whose client never came back
    /// (created, never written again), and only when there is none, one of those that did.
    /// Expired records are purged as sessions are created, a few each time. A flood of one-shot
    /// sessions therefore evicts its own kind before a returning user's session. Each create
    /// does a bounded amount of upkeep, never a scan of the whole store.
    ///
    /// Configure before use: calling this on a clone of a backend in use starts a new, empty
    /// store.
    #[must_use]
    pub fn with_max_sessions(self, max: usize) -> Self {
        self.configure(|inner| inner.max_sessions = Some(max.max(1)))
    }

    /// Take new ids from `ids` instead of the default generator (192 random bits).
    #[must_use]
    pub fn with_id_generator(self, ids: IdGenerator) -> Self {
        self.configure(|inner| inner.ids = Some(ids))
    }

    /// Expire records by `clock` instead of the system clock: tests give the backend and the
    /// session layer one [manual](Clock::manual) clock and advance it instead of sleeping.
    ///
    /// Configure before use: calling this on a clone of a backend in use starts a new, empty
    /// store.
    #[must_use]
    pub fn with_clock(self, clock: Clock) -> Self {
        self.configure(|inner| inner.clock = clock)
    }

    /// How many records are stored, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.read_store().records.len()
    }

    /// Whether no records are stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remove every expired record now (a scan of the whole store); returns how many went.
    /// Not needed for correctness: expired records read as missing, and creates purge them
    /// a few at a time.
    pub fn purge_expired(&self) -> usize {
        self.write_store().sweep(self.inner.now())
    }

    fn read_store(&self) -> RwLockReadGuard<'_, Store> {
        // Every update to the store completes before the guard drops, so a panic in another
        // thread cannot leave it half-changed: a poisoned lock is safe to use.
        self.inner
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// [`apply`](SessionBackend::apply) under a hold of the store's lock.
    fn apply_in(
        &self,
        store: &mut Store,
        now: SystemTime,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        let expires = expiry(now, ttl);
        let accessed = session.last_access_unix();
        let loaded_at = session.revision().and_then(Revision::as_number);
        let updated = store.update(id, now, expires, |stored, seq| {
            let merged = if loaded_at == i64::try_from(seq).ok() {
                // Not written since the session read it: the session is the stored record
                // with the changes made.
                session.clone()
            } else {
                changes.applied_to(stored, accessed)
            };
            (!merged.is_empty()).then_some(merged)
        })?;
        match (&updated, changes.binds_user()) {
            (None, _) => store.mark_ended(id, now),
            (Some(_), Some(user)) => self.cap(store, user, id),
            (Some(_), None) => {}
        }
        Ok(updated.map(|_| id.to_owned()))
    }

    fn write_store(&self) -> RwLockWriteGuard<'_, Store> {
        self.inner
            .store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn live_record<T>(&self, id: &str, f: impl FnOnce(&Record) -> T) -> Option<T> {
        let store = self.read_store();
        let record = store.records.get(id)?;
        // Only records with a TTL need the clock.
        if record.expires.is_some() && !record.live(self.inner.now()) {
            return None;
        }
        Some(f(record))
    }
}

impl InMemoryBackend {
    fn read_record(&self, id: &str) -> Option<SessionData> {
        // The write's sequence number tells a save whether the record changed since.
        self.live_record(id, |record| {
            let seq = i64::try_from(record.seq).unwrap_or(i64::MAX);
            record.data.clone().with_revision(Revision::number(seq))
        })
    }

    fn create_record(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        let now = self.inner.now();
        let mut store = self.write_store();
        let id = self.create_in(&mut store, now, data, ttl)?;
        if let Some(user) = data.user() {
            self.cap(&mut store, user, &id);
        }
        Ok(id)
    }

    /// Store `data` under a fresh id in `store` (the lock held).
    fn create_in(
        &self,
        store: &mut Store,
        now: SystemTime,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        let expires = expiry(now, ttl);
        store.make_room(&self.inner, now);
        let mut attempts = 0;
        let id = loop {
            let id = self.generate_id();
            match store.records.get(id.as_str()) {
                Some(record) if record.live(now) => {
                    attempts += 1;
                    if attempts == sessionkit_core::store::CREATE_ATTEMPTS {
                        return Err(Error::backend(
                            "memory: every fresh session id was already taken; the id \
                             generator repeats itself",
                        ));
                    }
                }
                _ => break id,
            }
        };
        store.create(Arc::from(id.as_str()), data.clone(), expires);
        Ok(id)
    }

    /// With a per-user limit, end `user`'s least recently used sessions beyond it, `keep`
    /// (the session just bound) aside (the lock held).
    fn cap(&self, store: &mut Store, user: &str, keep: &str) {
        let max = self
            .inner
            .max_per_user
            .load(std::sync::atomic::Ordering::Relaxed);
        if max == 0 {
            return;
        }
        let ids = store.ids_of(user);
        if ids.len() <= max {
            return;
        }
        let mut others: Vec<(u64, u64, Arc<str>)> = ids
            .into_iter()
            .filter(|id| &**id != keep)
            .filter_map(|id| {
                let record = store.records.get(&id)?;
                Some((record.data.last_access_unix(), record.seq, id))
            })
            .collect();
        others.sort();
        let excess = (others.len() + 1).saturating_sub(max);
        for (_, _, id) in others.into_iter().take(excess) {
            store.drop_record(&id);
        }
    }

    /// Whether a live session is stored under `id`.
    ///
    /// # Errors
    ///
    /// None: the store is in memory (the `Result` matches the other backends').
    pub async fn exists(&self, id: &str) -> Result<bool, Error> {
        Ok(self.live_record(id, |_| ()).is_some())
    }
}

/// Every operation completes without waiting: its future is ready on the first poll.
#[async_trait]
impl SessionBackend for InMemoryBackend {
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
        Ok(self.read_record(id))
    }

    /// The record, or the marker a removal or an emptying save left for
    /// [`ENDED_GRACE`](sessionkit_core::ENDED_GRACE).
    async fn lookup(&self, id: &str) -> Result<Lookup, Error> {
        if let Some(data) = self.read_record(id) {
            return Ok(Lookup::Live(data));
        }
        Ok(if self.read_store().ended_recently(id, self.inner.now()) {
            Lookup::Ended
        } else {
            Lookup::Missing
        })
    }

    async fn create(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        self.create_record(data, ttl)
    }

    /// Atomic: the changes go onto the stored record under the store's lock.
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        let now = self.inner.now();
        let mut store = self.write_store();
        self.apply_in(&mut store, now, id, session, changes, ttl)
    }

    fn check_locking(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn try_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        let now = self.inner.now();
        // A lease too long to represent never runs out.
        let until = expiry(now, Some(lease));
        let mut store = self.write_store();
        if let Some((holder, ends)) = store.locks.get(id) {
            if holder != token && ends.is_none_or(|ends| ends > now) {
                return Ok(false);
            }
        }
        store.locks.insert(Arc::from(id), (token.to_owned(), until));
        Ok(true)
    }

    async fn renew_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        let now = self.inner.now();
        let mut store = self.write_store();
        if !store.lock_held_by(id, token, now) {
            return Ok(false);
        }
        store
            .locks
            .insert(Arc::from(id), (token.to_owned(), expiry(now, Some(lease))));
        Ok(true)
    }

    async fn unlock(&self, id: &str, token: &str) -> Result<(), Error> {
        let mut store = self.write_store();
        if store
            .locks
            .get(id)
            .is_some_and(|(holder, _)| holder == token)
        {
            store.locks.remove(id);
        }
        Ok(())
    }

    /// The lock checked, the changes applied and the lock given back under one hold of the
    /// store's lock.
    async fn apply_locked(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
        token: &str,
    ) -> Result<Option<String>, Error> {
        let now = self.inner.now();
        let mut store = self.write_store();
        if !store.lock_held_by(id, token, now) {
            return Err(Error::LockLost);
        }
        let applied = self.apply_in(&mut store, now, id, session, changes, ttl);
        store.locks.remove(id);
        applied
    }

    /// Under one hold of the store's lock: the new record is stored, the old one ends (its
    /// marker left), and a per-user limit counts the session once.
    async fn move_session(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        let now = self.inner.now();
        let mut store = self.write_store();
        if !store.records.get(id).is_some_and(|record| record.live(now)) {
            return Err(Error::SessionGone);
        }
        let new_id = self.create_in(&mut store, now, &session.without_revision(), ttl)?;
        store.drop_record(id);
        store.mark_ended(id, now);
        if let Some(user) = changes.binds_user() {
            self.cap(&mut store, user, &new_id);
        }
        Ok(new_id)
    }

    fn limit_sessions_per_user(&mut self, max: usize) -> Result<(), Error> {
        self.inner
            .max_per_user
            .store(max.max(1), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Removes the record and leaves a marker where it was.
    async fn remove(&self, id: &str) -> Result<(), Error> {
        let mut store = self.write_store();
        if store.drop_record(id).is_some() {
            let now = self.inner.now();
            store.mark_ended(id, now);
        }
        Ok(())
    }

    /// The live records in the user's entry of the index (kept exact under the lock).
    async fn user_session_ids(&self, user: &str) -> Result<Vec<String>, Error> {
        let store = self.read_store();
        let now = self.inner.now();
        Ok(store.users.get(user).map_or_else(Vec::new, |ids| {
            ids.iter()
                .filter(|id| store.records.get(&***id).is_some_and(|r| r.live(now)))
                .map(|id| id.to_string())
                .collect()
        }))
    }

    /// Without holding the store's lock while it copies: the user's ids are taken under a
    /// short read lock, then their records a batch at a time (each batch a short read lock),
    /// so other users' requests go on while a long device list is made. Records found ended
    /// are purged in one short write lock at the end.
    async fn user_sessions(&self, user: &str) -> Result<Vec<UserSession>, Error> {
        const BATCH: usize = 256;
        let ids = self.read_store().ids_of(user);
        let mut sessions = Vec::with_capacity(ids.len());
        let mut ended = Vec::new();
        for batch in ids.chunks(BATCH) {
            let store = self.read_store();
            let now = self.inner.now();
            for id in batch {
                match store.records.get(id) {
                    Some(record) if record.live(now) => {
                        sessions.push((Arc::clone(id), record.data.clone()));
                    }
                    _ => ended.push(Arc::clone(id)),
                }
            }
        }
        if !ended.is_empty() {
            let mut store = self.write_store();
            let now = self.inner.now();
            for id in &ended {
                if store
                    .records
                    .get(id)
                    .is_some_and(|record| !record.live(now))
                {
                    store.drop_record(id);
                }
            }
        }
        let mut sessions: Vec<UserSession> = sessions
            .into_iter()
            .map(|(id, data)| UserSession::new(&id, data))
            .collect();
        UserSession::most_recent_first(&mut sessions);
        Ok(sessions)
    }

    /// Atomic: every session goes under one hold of the store's lock.
    async fn revoke_user_sessions(&self, user: &str, keep: Option<&str>) -> Result<usize, Error> {
        let mut store = self.write_store();
        let now = self.inner.now();
        let ids = store.ids_of(user);
        let mut revoked = 0;
        for id in ids.iter().filter(|id| Some(&***id) != keep) {
            if store.drop_record(id).is_some_and(|r| r.live(now)) {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    async fn revoke_user_session(&self, user: &str, device: &DeviceId) -> Result<bool, Error> {
        let mut store = self.write_store();
        let now = self.inner.now();
        let id = store
            .users
            .get(user)
            .and_then(|ids| ids.iter().find(|id| device.is_of(id)).cloned());
        Ok(id
            .and_then(|id| store.drop_record(&id))
            .is_some_and(|r| r.live(now)))
    }

    fn generate_id(&self) -> String {
        match &self.inner.ids {
            Some(ids) => ids(),
            None => sessionkit_core::generate_id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Replace the values of the stored session `id` with `data`'s, as a save does.
    async fn update(backend: &InMemoryBackend, id: &str, data: &SessionData) {
        let mut changes = Changes::default();
        changes.clear();
        for (key, value) in data.values() {
            changes.set(key, value.clone());
        }
        let saved = backend.apply(id, data, &changes, None).await.unwrap();
        assert!(saved.is_some(), "the update removed the session");
    }

    /// The conformance harness: every backend of one case reads one manual clock, which the
    /// TTL cases advance instead of sleeping.
    struct Memory {
        clock: Clock,
        max_sessions: Option<usize>,
    }

    impl Memory {
        fn new(max_sessions: Option<usize>) -> Self {
            Memory {
                clock: Clock::manual_from_now(),
                max_sessions,
            }
        }

        fn make(&self) -> InMemoryBackend {
            let backend = InMemoryBackend::new().with_clock(self.clock.clone());
            match self.max_sessions {
                Some(max) => backend.with_max_sessions(max),
                None => backend,
            }
        }
    }

    impl sessionkit_core::conformance::Harness for Memory {
        type Backend = InMemoryBackend;
        async fn backend(&self) -> InMemoryBackend {
            self.make()
        }
        async fn backend_with_ids(&self, ids: IdGenerator) -> Option<InMemoryBackend> {
            Some(self.make().with_id_generator(ids))
        }
        async fn pass_time(&self, by: Duration) {
            self.clock.advance(by);
        }
    }

    sessionkit_core::conformance_tests!(Memory::new(None), skip: {
        CorruptRecordReadsAsMissing: "the memory store keeps records as values, never as bytes: nothing to corrupt",
        CorruptRecordFailsWhenStrict: "the memory store keeps records as values, never as bytes: nothing to corrupt",
    });

    mod bounded {
        use super::*;
        sessionkit_core::conformance_tests!(Memory::new(Some(1000)), skip: {
            CorruptRecordReadsAsMissing: "the memory store keeps records as values, never as bytes: nothing to corrupt",
            CorruptRecordFailsWhenStrict: "the memory store keeps records as values, never as bytes: nothing to corrupt",
        });
    }

    fn data(n: u64) -> SessionData {
        let mut data = SessionData::default();
        data.values_mut().insert("n".into(), json!(n));
        data
    }

    #[test]
    fn new_is_bounded_and_unbounded_is_a_choice() {
        assert_eq!(
            InMemoryBackend::new().inner.max_sessions,
            Some(DEFAULT_MAX_SESSIONS)
        );
        assert_eq!(InMemoryBackend::unbounded().inner.max_sessions, None);
    }

    #[tokio::test]
    async fn a_flood_of_one_shot_sessions_evicts_its_own_kind_not_a_returning_user() {
        let backend = InMemoryBackend::new().with_max_sessions(100);
        let user = backend.create(&data(1), None).await.unwrap();
        // The user comes back: the record is written again.
        update(&backend, &user, &data(2)).await;
        for n in 0..10_000 {
            backend.create(&data(n), None).await.unwrap();
        }
        assert_eq!(backend.len(), 100);
        assert_eq!(
            backend.read(&user).await.unwrap().unwrap().values()["n"],
            json!(2),
            "the returning user's session was evicted by the flood"
        );
    }

    #[tokio::test]
    async fn expired_records_go_without_a_scan_as_sessions_are_created() {
        let left = left_after_expiry(false).await;
        assert!(
            left < 300,
            "creates purge expired records as they go: {left} left"
        );
    }

    /// How many records an unbounded store holds after 200 records with a 20 ms TTL expired
    /// (stored after one without a TTL, when `behind_a_live_one`) and 200 more were created.
    async fn left_after_expiry(behind_a_live_one: bool) -> usize {
        let clock = Clock::manual_from_now();
        let backend = InMemoryBackend::unbounded().with_clock(clock.clone());
        if behind_a_live_one {
            backend.create(&data(0), None).await.unwrap();
        }
        let short = Some(Duration::from_millis(20));
        for n in 0..200 {
            backend.create(&data(n), short).await.unwrap();
        }
        clock.advance(Duration::from_millis(40));
        for n in 0..200 {
            backend.create(&data(n), None).await.unwrap();
        }
        backend.len()
    }

    #[tokio::test]
    async fn a_session_moved_to_a_new_id_counts_as_come_back() {
        let backend = InMemoryBackend::new().with_max_sessions(50);
        // What regenerate_id stores: the session's record, created before its last access.
        let mut moved = data(7);
        moved.set_created(1_000);
        moved.set_last_access(2_000);
        let user = backend.create(&moved, None).await.unwrap();
        for n in 0..1_000 {
            backend.create(&data(n), None).await.unwrap();
        }
        assert!(
            backend.read(&user).await.unwrap().is_some(),
            "evicted as never returned"
        );
    }

    #[tokio::test]
    async fn a_long_lived_session_does_not_hide_expired_ones_behind_it() {
        let left = left_after_expiry(true).await;
        assert!(
            left < 300,
            "expired records behind a live one stayed: {left}"
        );
    }

    #[tokio::test]
    async fn an_id_generator_that_repeats_itself_is_an_error_not_a_hang() {
        let backend =
            InMemoryBackend::new().with_id_generator(Arc::new(|| "same-id-every-time".into()));
        backend.create(&data(1), None).await.unwrap();
        let again = backend.create(&data(2), None).await;
        assert!(matches!(again, Err(Error::Backend { .. })), "{again:?}");
    }

    #[tokio::test]
    async fn max_sessions_evicts_the_oldest_session_that_never_came_back() {
        let backend = InMemoryBackend::new().with_max_sessions(3);
        let a = backend.create(&data(1), None).await.unwrap();
        let b = backend.create(&data(2), None).await.unwrap();
        let c = backend.create(&data(3), None).await.unwrap();
        // Rewriting `a` makes `b` the least recently written.
        update(&backend, &a, &data(10)).await;
        let d = backend.create(&data(4), None).await.unwrap();
        assert_eq!(backend.len(), 3);
        assert!(
            backend.read(&b).await.unwrap().is_none(),
            "b should be evicted"
        );
        for id in [&a, &c, &d] {
            assert!(backend.read(id).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn the_user_index_follows_evictions_expiry_and_removals() {
        let clock = Clock::manual_from_now();
        let backend = InMemoryBackend::new()
            .with_max_sessions(10)
            .with_clock(clock.clone());
        let bound = |n: u64| {
            let mut data = data(n);
            data.set_user(Some(format!("user-{}", n % 20).into()));
            data
        };
        let mut ids = Vec::new();
        for n in 0..1_000 {
            ids.push(backend.create(&bound(n), None).await.unwrap());
        }
        let indexed = |backend: &InMemoryBackend| {
            let store = backend.inner.store.read().unwrap();
            store
                .users
                .values()
                .map(std::collections::HashSet::len)
                .sum::<usize>()
        };
        assert_eq!(
            indexed(&backend),
            backend.len(),
            "evicted sessions stayed indexed"
        );
        for id in &ids[990..] {
            backend.remove(id).await.unwrap();
        }
        assert_eq!(indexed(&backend), 0, "removed sessions stayed indexed");
        assert!(backend.inner.store.read().unwrap().users.is_empty());

        let short = Some(Duration::from_millis(10));
        backend.create(&bound(1), short).await.unwrap();
        let kept = backend.create(&bound(21), None).await.unwrap();
        clock.advance(Duration::from_millis(30));
        assert_eq!(backend.purge_expired(), 1);
        assert_eq!(
            backend.user_session_ids("user-1").await.unwrap(),
            vec![kept]
        );
        assert_eq!(indexed(&backend), 1, "an expired session stayed indexed");
    }

    #[tokio::test]
    async fn memory_stays_bounded_under_many_creates() {
        let backend = InMemoryBackend::new().with_max_sessions(100);
        for n in 0..5_000 {
            backend.create(&data(n), None).await.unwrap();
            assert!(backend.len() <= 100);
        }
        let store = backend.inner.store.read().unwrap();
        assert!(
            store.fresh.len() + store.returned.len() <= 2 * 100 + 1024,
            "the queues stay bounded too"
        );
    }

    #[tokio::test]
    async fn full_store_purges_expired_before_evicting_live_records() {
        let clock = Clock::manual_from_now();
        let backend = InMemoryBackend::new()
            .with_max_sessions(2)
            .with_clock(clock.clone());
        let short = Some(Duration::from_millis(30));
        backend.create(&data(1), short).await.unwrap();
        let live = backend.create(&data(2), None).await.unwrap();
        clock.advance(Duration::from_millis(60));
        backend.create(&data(3), None).await.unwrap();
        assert!(
            backend.read(&live).await.unwrap().is_some(),
            "a live record was evicted"
        );
        assert_eq!(backend.len(), 2);
    }

    #[tokio::test]
    async fn expired_records_are_purged() {
        let clock = Clock::manual_from_now();
        let backend = InMemoryBackend::new().with_clock(clock.clone());
        for n in 0..10 {
            backend
                .create(&data(n), Some(Duration::from_millis(20)))
                .await
                .unwrap();
        }
        let keep = backend.create(&data(99), None).await.unwrap();
        clock.advance(Duration::from_millis(50));
        assert_eq!(backend.purge_expired(), 10);
        assert_eq!(backend.len(), 1);
        assert!(backend.exists(&keep).await.unwrap());
    }

    #[tokio::test]
    async fn expired_records_are_purged_by_writes_without_help() {
        let clock = Clock::manual_from_now();
        let backend = InMemoryBackend::new().with_clock(clock.clone());
        for n in 0..100 {
            backend
                .create(&data(n), Some(Duration::from_millis(10)))
                .await
                .unwrap();
        }
        clock.advance(Duration::from_millis(30));
        for n in 0..200 {
            backend.create(&data(n), None).await.unwrap();
        }
        assert_eq!(backend.len(), 200, "expired records were never purged");
    }

    #[tokio::test]
    async fn clones_share_one_store() {
        let backend = InMemoryBackend::new();
        let id = backend.clone().create(&data(1), None).await.unwrap();
        assert!(backend.exists(&id).await.unwrap());
    }
}
