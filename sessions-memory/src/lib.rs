//! An in-memory session backend for the `sessions` workspace.
//!
//! [`InMemoryBackend`] keeps records in a map inside the process: nothing to set up, the
//! fastest backend there is, and the data is gone when the process ends. Use it for tests,
//! development, and single-process apps that can afford to log everyone out on restart.
//!
//! - Records honour their TTL: an expired record reads as missing and is purged.
//! - [`with_max_sessions`](InMemoryBackend::with_max_sessions) bounds memory: when the store
//!   is full, expired records go first, then the least recently written.
//! - Cloning is cheap and every clone shares the same store.
//!
//! ```
//! use sessions_memory::InMemoryBackend;
//! use sessions_core::{SessionBackend, SessionData};
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let backend = InMemoryBackend::new().with_max_sessions(100_000);
//! let id = backend.write(None, &SessionData::default(), None).await?;
//! assert!(backend.exists(&id).await?);
//! # Ok::<(), sessions_core::Error>(()) }).unwrap();
//! ```
//!
//! With the middleware from `sessions-tower`:
//!
//! ```ignore
//! let layer = sessions_tower::SessionLayer::new(InMemoryBackend::new());
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

use sessions_core::{
    Applied, Changes, Error, IdGenerator, Revision, SessionBackend, SessionData, async_trait,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Sessions kept in this process's memory. See the [crate docs](crate).
#[derive(Clone, Default)]
pub struct InMemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    store: RwLock<Store>,
    max_sessions: Option<usize>,
    ids: Option<IdGenerator>,
}

/// Keys are ids this store minted itself (random, 192 bits), and client-chosen values are only
/// ever looked up, never inserted, so no client can steer keys into collisions: a fast keyed
/// hasher is safe here, and far cheaper than SipHash on every request.
type Hasher = foldhash::fast::RandomState;

#[derive(Default)]
struct Store {
    records: HashMap<String, Record, Hasher>,
    /// Write order (sequence number to id), kept only when the store is bounded, so the least
    /// recently written record can be evicted in O(log n).
    order: BTreeMap<u64, String>,
    next_seq: u64,
    writes_since_sweep: usize,
}

struct Record {
    data: SessionData,
    expires: Option<Instant>,
    seq: u64,
}

impl Record {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

impl fmt::Debug for InMemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryBackend")
            .field("sessions", &self.read_store().records.len())
            .field("max_sessions", &self.inner.max_sessions)
            .finish()
    }
}

impl InMemoryBackend {
    /// An empty, unbounded store.
    pub fn new() -> Self {
        InMemoryBackend::default()
    }

    fn configure(self, configure: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            store: RwLock::default(),
            max_sessions: shared.max_sessions,
            ids: shared.ids.clone(),
        });
        configure(&mut inner);
        InMemoryBackend {
            inner: Arc::new(inner),
        }
    }

    /// Keep at most `max` sessions. When a new session would go over, expired records are
    /// purged first, then the least recently written records are evicted.
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

    /// How many records are stored, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.read_store().records.len()
    }

    /// Whether no records are stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remove every expired record now; returns how many went.
    pub fn purge_expired(&self) -> usize {
        self.write_store().sweep(Instant::now())
    }

    fn read_store(&self) -> RwLockReadGuard<'_, Store> {
        // Every update to the store completes before the guard drops, so a panic in another
        // thread cannot leave it half-changed: a poisoned lock is safe to use.
        self.inner
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
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
        if record.expires.is_some() && !record.live(Instant::now()) {
            return None;
        }
        Some(f(record))
    }
}

impl Store {
    fn bounded(&self, inner: &Inner) -> bool {
        inner.max_sessions.is_some()
    }

    fn sweep(&mut self, now: Instant) -> usize {
        let before = self.records.len();
        let order = &mut self.order;
        self.records.retain(|_, record| {
            let live = record.live(now);
            if !live {
                order.remove(&record.seq);
            }
            live
        });
        self.writes_since_sweep = 0;
        before - self.records.len()
    }

    /// Put `record` under `id`, keeping the write order when the store is bounded.
    fn put(&mut self, inner: &Inner, id: String, data: SessionData, expires: Option<Instant>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.bounded(inner) {
            self.order.insert(seq, id.clone());
        }
        if let Some(old) = self.records.insert(id, Record { data, expires, seq }) {
            self.order.remove(&old.seq);
        }
    }

    /// Replace the live record `id` with what `f` makes of it and its write's sequence number
    /// (`None`: remove it), as the
    /// most recently written; [`Error::SessionGone`] when there is no live record, which is
    /// then not brought back.
    fn update(
        &mut self,
        inner: &Inner,
        id: &str,
        now: Instant,
        expires: Option<Instant>,
        f: impl FnOnce(&SessionData, u64) -> Option<SessionData>,
    ) -> Result<Option<SessionData>, Error> {
        let seq = self.next_seq;
        let Store { records, order, .. } = self;
        let record = match records.get_mut(id) {
            Some(record) if record.live(now) => record,
            _ => return Err(Error::SessionGone),
        };
        let Some(data) = f(&record.data, record.seq) else {
            order.remove(&record.seq);
            records.remove(id);
            return Ok(None);
        };
        record.data = data.clone();
        record.expires = expires;
        if inner.max_sessions.is_some() {
            // Now the most recently written: move it to the back of the order.
            if let Some(key) = order.remove(&record.seq) {
                order.insert(seq, key);
            }
        }
        record.seq = seq;
        self.next_seq += 1;
        Ok(Some(data))
    }

    /// Amortised upkeep before a create: purge expired records once every so many writes,
    /// and make room when the store is full.
    fn make_room(&mut self, inner: &Inner, now: Instant) {
        self.writes_since_sweep += 1;
        // Sweeping costs O(n) and happens once every n/2 creates: O(1) amortised.
        if self.writes_since_sweep >= (self.records.len() / 2).max(64) {
            self.sweep(now);
        }
        let Some(max) = inner.max_sessions else {
            return;
        };
        if self.records.len() >= max {
            self.sweep(now);
        }
        while self.records.len() >= max {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.records.remove(&oldest);
        }
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

    fn write_record(
        &self,
        id: Option<&str>,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        let now = Instant::now();
        // A TTL too large to represent is as good as none.
        let expires = ttl.and_then(|ttl| now.checked_add(ttl));
        let mut store = self.write_store();
        match id {
            Some(id) => {
                store.update(&self.inner, id, now, expires, |_, _| Some(data.clone()))?;
                Ok(id.to_owned())
            }
            None => {
                store.make_room(&self.inner, now);
                let id = loop {
                    let id = self.generate_id();
                    match store.records.get(&id) {
                        Some(record) if record.live(now) => continue,
                        _ => break id,
                    }
                };
                store.put(&self.inner, id.clone(), data.clone(), expires);
                Ok(id)
            }
        }
    }
}

/// Every operation completes without waiting: its future is ready on the first poll.
#[async_trait]
impl SessionBackend for InMemoryBackend {
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
        Ok(self.read_record(id))
    }

    async fn write(
        &self,
        id: Option<&str>,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        self.write_record(id, data, ttl)
    }

    /// Atomic: the changes go onto the stored record under the store's lock.
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Applied, Error> {
        let now = Instant::now();
        let expires = ttl.and_then(|ttl| now.checked_add(ttl));
        let accessed = session.last_access_unix();
        let loaded_at = session.revision().and_then(Revision::as_number);
        let mut store = self.write_store();
        let updated = store.update(&self.inner, id, now, expires, |stored, seq| {
            let merged = if loaded_at == i64::try_from(seq).ok() {
                // Not written since the session read it: the session is the stored record
                // with the changes made.
                session.clone()
            } else {
                changes.applied_to(stored, accessed)
            };
            (!merged.is_empty()).then_some(merged)
        })?;
        Ok(match updated {
            Some(record) => Applied::Saved {
                value: id.to_owned(),
                record,
            },
            None => Applied::Removed,
        })
    }

    async fn remove(&self, id: &str) -> Result<(), Error> {
        let mut store = self.write_store();
        if let Some(record) = store.records.remove(id) {
            store.order.remove(&record.seq);
        }
        Ok(())
    }

    async fn exists(&self, id: &str) -> Result<bool, Error> {
        Ok(self.live_record(id, |_| ()).is_some())
    }

    /// Any value up to 256 bytes: a lookup in the map is harmless whatever the bytes, so the
    /// alphabet is not checked (a value that was never issued simply finds nothing). This also
    /// lets ids from [`with_id_generator`](InMemoryBackend::with_id_generator) use any
    /// characters a cookie can carry.
    fn accepts(&self, value: &str) -> bool {
        (1..=256).contains(&value.len())
    }

    fn generate_id(&self) -> String {
        match &self.inner.ids {
            Some(ids) => ids(),
            None => sessions_core::generate_id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Memory;

    impl sessions_core::conformance::Harness for Memory {
        type Backend = InMemoryBackend;
        async fn backend(&self) -> InMemoryBackend {
            InMemoryBackend::new()
        }
        async fn backend_with_ids(&self, ids: IdGenerator) -> Option<InMemoryBackend> {
            Some(InMemoryBackend::new().with_id_generator(ids))
        }
        fn merges_atomically(&self) -> bool {
            true
        }
    }

    sessions_core::conformance_tests!(Memory);

    mod bounded {
        use super::*;
        struct BoundedMemory;
        impl sessions_core::conformance::Harness for BoundedMemory {
            type Backend = InMemoryBackend;
            async fn backend(&self) -> InMemoryBackend {
                InMemoryBackend::new().with_max_sessions(1000)
            }
            async fn backend_with_ids(&self, ids: IdGenerator) -> Option<InMemoryBackend> {
                Some(
                    InMemoryBackend::new()
                        .with_max_sessions(1000)
                        .with_id_generator(ids),
                )
            }
            fn merges_atomically(&self) -> bool {
                true
            }
        }
        sessions_core::conformance_tests!(BoundedMemory);
    }

    fn data(n: u64) -> SessionData {
        let mut data = SessionData::default();
        data.values_mut().insert("n".into(), json!(n));
        data
    }

    #[tokio::test]
    async fn max_sessions_evicts_the_least_recently_written() {
        let backend = InMemoryBackend::new().with_max_sessions(3);
        let a = backend.write(None, &data(1), None).await.unwrap();
        let b = backend.write(None, &data(2), None).await.unwrap();
        let c = backend.write(None, &data(3), None).await.unwrap();
        // Rewriting `a` makes `b` the least recently written.
        backend.write(Some(&a), &data(10), None).await.unwrap();
        let d = backend.write(None, &data(4), None).await.unwrap();
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
    async fn memory_stays_bounded_under_many_creates() {
        let backend = InMemoryBackend::new().with_max_sessions(100);
        for n in 0..5_000 {
            backend.write(None, &data(n), None).await.unwrap();
            assert!(backend.len() <= 100);
        }
        assert_eq!(backend.inner.store.read().unwrap().order.len(), 100);
    }

    #[tokio::test]
    async fn full_store_purges_expired_before_evicting_live_records() {
        let backend = InMemoryBackend::new().with_max_sessions(2);
        let short = Some(Duration::from_millis(30));
        backend.write(None, &data(1), short).await.unwrap();
        let live = backend.write(None, &data(2), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        backend.write(None, &data(3), None).await.unwrap();
        assert!(
            backend.read(&live).await.unwrap().is_some(),
            "a live record was evicted"
        );
        assert_eq!(backend.len(), 2);
    }

    #[tokio::test]
    async fn expired_records_are_purged() {
        let backend = InMemoryBackend::new();
        for n in 0..10 {
            backend
                .write(None, &data(n), Some(Duration::from_millis(20)))
                .await
                .unwrap();
        }
        let keep = backend.write(None, &data(99), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(backend.purge_expired(), 10);
        assert_eq!(backend.len(), 1);
        assert!(backend.exists(&keep).await.unwrap());
    }

    #[tokio::test]
    async fn expired_records_are_purged_by_writes_without_help() {
        let backend = InMemoryBackend::new();
        for n in 0..100 {
            backend
                .write(None, &data(n), Some(Duration::from_millis(10)))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        for n in 0..200 {
            backend.write(None, &data(n), None).await.unwrap();
        }
        assert_eq!(backend.len(), 200, "expired records were never purged");
    }

    #[tokio::test]
    async fn clones_share_one_store() {
        let backend = InMemoryBackend::new();
        let id = backend.clone().write(None, &data(1), None).await.unwrap();
        assert!(backend.exists(&id).await.unwrap());
    }
}
