//! The cross-backend conformance suite (feature `conformance`).
//!
//! Every backend in this workspace runs it from its own tests, and a third-party backend gets
//! the same checks by implementing [`Harness`] and calling [`conformance_tests!`](crate::conformance_tests):
//!
//! ```
//! use sessionkit_core::conformance::Harness;
//! use sessionkit_core::{Error, SessionBackend, SessionData};
//! # use async_trait::async_trait;
//! # use std::time::Duration;
//! # #[derive(Default)] struct MyBackend;
//! # #[async_trait] impl SessionBackend for MyBackend {
//! #   async fn read(&self, _: &str) -> Result<Option<SessionData>, Error> { Ok(None) }
//! #   async fn create(&self, _: &SessionData, _: Option<Duration>) -> Result<String, Error> { Ok(String::new()) }
//! #   async fn apply(&self, _: &str, _: &SessionData, _: &sessionkit_core::Changes, _: Option<Duration>) -> Result<Option<String>, Error> { Ok(None) }
//! #   async fn remove(&self, _: &str) -> Result<(), Error> { Ok(()) }
//! # }
//!
//! struct MyHarness;
//!
//! impl Harness for MyHarness {
//!     type Backend = MyBackend;
//!     async fn backend(&self) -> MyBackend {
//!         MyBackend::default()
//!     }
//! }
//!
//! // In the backend crate's tests, with the cases it cannot support and why:
//! // sessionkit_core::conformance_tests!(MyHarness, skip: {
//! //     TtlHonoured: "this store keeps records until removed",
//! // });
//! ```
//!
//! Each case becomes its own `#[test]`, named `conformance_<case>`, that runs the case on a
//! fresh multi-threaded tokio runtime ([`block_on`]), so a failure names what broke. A case
//! listed as skipped is an ignored test, shown as such with its reason. [`run_all`] runs every
//! case in one go instead.

use crate::{Changes, DeviceId, Error, IdGenerator, SessionBackend, SessionData, UserSession};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a backend under test is made.
pub trait Harness: Send + Sync {
    /// The backend under test.
    type Backend: SessionBackend;

    /// A backend ready for use. Each case asks for its own; they may share storage.
    fn backend(&self) -> impl Future<Output = Self::Backend> + Send;

    /// A backend whose [`generate_id`](SessionBackend::generate_id) takes its ids from `ids`, so
    /// the suite can force an id collision. `None` (the default) fails
    /// [`Case::CreateNeverOverwrites`], which must then be in the skip list, with the reason.
    fn backend_with_ids(
        &self,
        ids: IdGenerator,
    ) -> impl Future<Output = Option<Self::Backend>> + Send {
        let _ = ids;
        async { None }
    }

    /// Store `bytes` as the raw stored form of a record under a fresh id of `backend` (a Redis
    /// `SET`, an SQL `INSERT`, a file), bypassing the serializer, and return the id: how the
    /// suite gets a record that does not decode. `None` (the default) fails
    /// [`Case::CorruptRecordReadsAsMissing`] and [`Case::CorruptRecordFailsWhenStrict`], which
    /// must then be in the skip list, with the reason.
    fn plant_raw(
        &self,
        backend: &Self::Backend,
        bytes: &[u8],
    ) -> impl Future<Output = Option<String>> + Send {
        let _ = (backend, bytes);
        async { None }
    }

    /// Let `by` pass for the backend: the cases on TTLs call it between a write and the read
    /// that checks it. By default it sleeps in real time; a harness whose backend reads a
    /// [manual clock](crate::Clock::manual) (started at the system time) advances that clock
    /// instead, and the cases take no time.
    fn pass_time(&self, by: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(by)
    }

    /// A backend on the same storage whose reads fail on a record that does not decode
    /// ([`CorruptRecords::Fail`](crate::store::CorruptRecords::Fail)). `None` (the default)
    /// fails [`Case::CorruptRecordFailsWhenStrict`], which must then be in the skip list.
    fn strict_backend(&self) -> impl Future<Output = Option<Self::Backend>> + Send {
        async { None }
    }
}

macro_rules! cases {
    ($($(#[$doc:meta])* $name:ident => $fn:ident,)*) => {
        /// One check of the suite.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Case {
            $($(#[$doc])* $name,)*
        }

        impl Case {
            /// Every case, in the order [`run_all`] runs them.
            pub const ALL: &'static [Case] = &[$(Case::$name,)*];
        }

        /// Run one case against the harness's backend; panics (as a test failure) on a
        /// violation, or when the harness lacks what the case needs.
        pub async fn run_case<H: Harness>(harness: &H, case: Case) {
            match case {
                $(Case::$name => $fn(harness).await,)*
            }
        }
    };
}

cases! {
    /// A written record reads back equal, metadata included.
    RoundTrip => round_trip,
    /// An id never written reads as `None` and does not exist.
    MissingIdReadsNone => missing_id_reads_none,
    /// An update replaces the data.
    Overwrite => overwrite,
    /// An update of a server-side record keeps its id.
    UpdateKeepsId => update_keeps_id,
    /// A removed record is gone; removing a missing one is not an error.
    Remove => remove,
    /// `exists` tells live records from missing ones.
    Exists => exists,
    /// A record written with a TTL is gone after it; one without lives on.
    TtlHonoured => ttl_honoured,
    /// Each write restarts the TTL.
    TtlResetsOnWrite => ttl_resets_on_write,
    /// Generated ids are unique across 10,000 draws, and each can travel in a cookie.
    IdsUnique => ids_unique,
    /// A 1 MiB value round-trips.
    LargeValue => large_value,
    /// Keys in any script, and odd ones, round-trip.
    UnicodeKeys => unicode_keys,
    /// Nested maps and arrays and every number kind round-trip.
    NestedValues => nested_values,
    /// 100 concurrent creators get distinct ids and their own data.
    ConcurrentWriters => concurrent_writers,
    /// Garbage and forged ids read as `None` and do not exist, without a panic.
    GarbageIdsReadNone => garbage_ids_read_none,
    /// An update under an id the backend never issued stores nothing: ids are never adopted.
    UnknownIdNotAdopted => unknown_id_not_adopted,
    /// Creating under an id that is taken mints another instead of overwriting.
    CreateNeverOverwrites => create_never_overwrites,
    /// An update after a concurrent remove reports the session gone and stores nothing.
    NoResurrectionAfterRemove => no_resurrection_after_remove,
    /// Two sessions loaded from the same record, saved one after the other with changes to
    /// different keys: both changes are kept.
    ApplyKeepsOtherSavesKeys => apply_keeps_other_saves_keys,
    /// A key one save removed stays removed when a save that loaded it before changes another.
    ApplyKeepsRemovedKeysRemoved => apply_keeps_removed_keys_removed,
    /// A save after the record was removed is [`Error::SessionGone`] and stores nothing.
    ApplyAfterRemoveIsGone => apply_after_remove_is_gone,
    /// A clear applies to the record as stored: keys another save set before it go too, and
    /// a save that empties the record removes it.
    ApplyClearClearsTheStoredRecord => apply_clear_clears_the_stored_record,
    /// A save keeps the creation time and records the latest access.
    ApplyKeepsCreated => apply_keeps_created,
    /// Sixteen saves at once, each setting its own key on the same loaded record: every key
    /// is kept. A backend that cannot merge (the client holds the state) lists it as skipped.
    ApplyConcurrentSavesKeepEveryKey => apply_concurrent_saves_keep_every_key,
    /// A stored record that does not decode reads as no session by default, and is removed:
    /// no lock-out until it expires. Needs [`Harness::plant_raw`].
    CorruptRecordReadsAsMissing => corrupt_record_reads_as_missing,
    /// In strict mode a record that does not decode fails the read with
    /// [`Error::Serialization`] naming the record (its id masked), and is kept. Needs
    /// [`Harness::plant_raw`] and [`Harness::strict_backend`].
    CorruptRecordFailsWhenStrict => corrupt_record_fails_when_strict,
    /// The user a record is bound to is stored with it: by a create, by a save's changes, and
    /// unbound by a save that clears the record or the binding.
    UserBindingStored => user_binding_stored,
    /// A user's live sessions are listed (device ids, not session ids; records as stored; most recent
    /// first), and no one else's. Skipped, with the reason, for a backend that keeps no index
    /// of sessions by user ([`Error::Unsupported`]), as every `User*` case is.
    UserSessionsListed => user_sessions_listed,
    /// Revoking all of a user's sessions ends each of them and no one else's.
    UserRevokeAll => user_revoke_all,
    /// Revoking all but one ("sign out of other devices") keeps that one.
    UserRevokeOthers => user_revoke_others,
    /// One session is revoked by its device id; an unknown one, or another user's, ends none.
    UserRevokeOne => user_revoke_one,
    /// A session bound to another user since is neither listed nor revoked for the first.
    UserRebindingMovesTheSession => user_rebinding_moves_the_session,
    /// An expired session is not listed, and listing prunes it from the backend's index.
    UserExpiredSessionsPruned => user_expired_sessions_pruned,
    /// Saves racing a revocation do not bring the revoked session back.
    UserRevokeRacingSavesStaysRevoked => user_revoke_racing_saves_stays_revoked,
    /// A removed session looks up as [`Lookup::Ended`](crate::Lookup::Ended) (a marker for
    /// [`ENDED_GRACE`](crate::ENDED_GRACE)), and reads as missing; an id never stored looks
    /// up as missing.
    EndedMarkerAfterRemove => ended_marker_after_remove,
    /// A save that empties a session leaves the same marker.
    EndedMarkerAfterEmptyingSave => ended_marker_after_emptying_save,
    /// A marker is no session: a save to it is `SessionGone` and brings nothing back, and a
    /// listing of the user's sessions does not name it.
    EndedMarkerIsNoSession => ended_marker_is_no_session,
    /// [`move_session`](SessionBackend::move_session) stores the session under a new id and
    /// ends the old one.
    MoveEndsTheOldId => move_ends_the_old_id,
    /// Moving a session that ended meanwhile is `SessionGone`, and stores nothing.
    MoveAfterEndIsGone => move_after_end_is_gone,
    /// With a per-user limit ([`SessionBackend::limit_sessions_per_user`]), binding a session
    /// beyond it ends the user's least recently used other sessions.
    UserCapEndsTheLeastRecentlyUsed => user_cap_ends_the_least_recently_used,
    /// A session moving to a new id counts once against the limit: nothing else ends.
    UserCapCountsAMoveOnce => user_cap_counts_a_move_once,
    /// A session's lock ([`SessionBackend::try_lock`]) excludes every other token until its
    /// holder gives it back; its holder can take it again (a renewal); another token cannot
    /// give it back. Skipped, with the reason,
    /// for a backend that cannot lock ([`SessionBackend::check_locking`] is
    /// [`Error::Unsupported`]), as every `Lock*` case is.
    LockExcludesOthers => lock_excludes_others,
    /// A lock whose lease ran out can be taken by another token, and not renewed.
    LockLeaseRunsOut => lock_lease_runs_out,
    /// [`apply_locked`](SessionBackend::apply_locked) stores only for the lock's holder, and
    /// gives the lock back; for another token, or after the lease ran out, it is
    /// [`Error::LockLost`] and stores nothing.
    LockedApplyIsFenced => locked_apply_is_fenced,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Run every case in turn, but those in `skip` (the cases the backend cannot support).
pub async fn run_all<H: Harness>(harness: &H, skip: &[Case]) {
    for &case in Case::ALL {
        if !skip.contains(&case) {
            run_case(harness, case).await;
        }
    }
}

fn record(value: Value) -> SessionData {
    match value {
        // Created a minute ago, so no backend's absolute limit has passed.
        Value::Object(values) => {
            let now = crate::Clock::system().unix_secs();
            SessionData::from_parts(values, now - 60, now)
        }
        other => panic!("test data must be an object, got {other}"),
    }
}

async fn read_back<B: SessionBackend>(backend: &B, id: &str) -> SessionData {
    match backend.read(id).await {
        Ok(Some(data)) => data,
        Ok(None) => panic!("a record just written reads as missing"),
        Err(e) => panic!("read failed: {e}"),
    }
}

async fn create<B: SessionBackend>(
    backend: &B,
    data: &SessionData,
    ttl: Option<Duration>,
) -> String {
    match backend.create(data, ttl).await {
        Ok(id) => id,
        Err(e) => panic!("creating a record failed: {e}"),
    }
}

/// Replace every value of the record `id` with `data`'s, as a save that clears the session
/// and sets each value does.
async fn replace<B: SessionBackend>(
    backend: &B,
    id: &str,
    data: &SessionData,
    ttl: Option<Duration>,
) -> Result<Option<String>, Error> {
    let mut changes = Changes::default();
    changes.clear();
    for (key, value) in data.values() {
        changes.set(key, value.clone());
    }
    backend.apply(id, data, &changes, ttl).await
}

/// [`replace`], which must succeed and keep the record.
async fn update<B: SessionBackend>(
    backend: &B,
    id: &str,
    data: &SessionData,
    ttl: Option<Duration>,
) -> String {
    match replace(backend, id, data, ttl).await {
        Ok(Some(value)) => value,
        Ok(None) => panic!("an update that leaves values removed the record"),
        Err(e) => panic!("update failed: {e}"),
    }
}

/// Whether a live record is stored under `id`.
async fn stored<B: SessionBackend>(backend: &B, id: &str) -> Result<bool, Error> {
    backend.read(id).await.map(|record| record.is_some())
}

const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

async fn round_trip<H: Harness>(h: &H) {
    let b = h.backend().await;
    let data = record(json!({"user": "alice", "n": 42}));
    let id = create(&b, &data, HOUR).await;
    assert!(!id.is_empty(), "write returned an empty value");
    assert_eq!(
        read_back(&b, &id).await,
        data,
        "record changed on the round trip"
    );
}

async fn missing_id_reads_none<H: Harness>(h: &H) {
    let b = h.backend().await;
    let id = b.generate_id();
    assert!(
        matches!(b.read(&id).await, Ok(None)),
        "an unwritten id must read as None"
    );
    assert!(
        matches!(stored(&b, &id).await, Ok(false)),
        "an unwritten id must not exist"
    );
}

async fn overwrite<H: Harness>(h: &H) {
    let b = h.backend().await;
    let id = create(&b, &record(json!({"v": 1, "gone": true})), HOUR).await;
    let second = record(json!({"v": 2}));
    let id2 = update(&b, &id, &second, HOUR).await;
    // An apply keeps the stored creation time: the values are what must be replaced.
    assert_eq!(
        read_back(&b, &id2).await.values(),
        second.values(),
        "update did not replace the data"
    );
}

async fn update_keeps_id<H: Harness>(h: &H) {
    let b = h.backend().await;
    let id = create(&b, &record(json!({"v": 1})), HOUR).await;
    let id2 = update(&b, &id, &record(json!({"v": 2})), HOUR).await;
    assert_eq!(id, id2, "an update must keep the record's id");
}

async fn remove<H: Harness>(h: &H) {
    let b = h.backend().await;
    let id = create(&b, &record(json!({"v": 1})), HOUR).await;
    b.remove(&id).await.expect("remove failed");
    assert!(
        matches!(b.read(&id).await, Ok(None)),
        "a removed record still reads"
    );
    assert!(
        matches!(stored(&b, &id).await, Ok(false)),
        "a removed record still exists"
    );
    b.remove(&id)
        .await
        .expect("removing a missing record must not fail");
}

async fn exists<H: Harness>(h: &H) {
    let b = h.backend().await;
    let id = create(&b, &record(json!({"v": 1})), HOUR).await;
    assert!(
        matches!(stored(&b, &id).await, Ok(true)),
        "a written record must exist"
    );
    assert!(matches!(stored(&b, &b.generate_id()).await, Ok(false)));
}

async fn ttl_honoured<H: Harness>(h: &H) {
    let b = h.backend().await;
    let short = create(
        &b,
        &record(json!({"v": "short"})),
        Some(Duration::from_secs(1)),
    )
    .await;
    let forever = create(&b, &record(json!({"v": "forever"})), None).await;
    assert!(
        b.read(&short).await.expect("read failed").is_some(),
        "expired too early"
    );
    h.pass_time(Duration::from_millis(2300)).await;
    assert!(
        matches!(b.read(&short).await, Ok(None)),
        "a record outlived its TTL"
    );
    assert!(
        matches!(stored(&b, &short).await, Ok(false)),
        "an expired record still exists"
    );
    assert!(
        b.read(&forever).await.expect("read failed").is_some(),
        "a record without TTL expired"
    );
    b.remove(&forever).await.expect("remove failed");
}

async fn ttl_resets_on_write<H: Harness>(h: &H) {
    let b = h.backend().await;
    let ttl = Some(Duration::from_secs(2));
    let id = create(&b, &record(json!({"v": 1})), ttl).await;
    h.pass_time(Duration::from_millis(1300)).await;
    let id = update(&b, &id, &record(json!({"v": 2})), ttl).await;
    h.pass_time(Duration::from_millis(1300)).await;
    assert!(
        b.read(&id).await.expect("read failed").is_some(),
        "the TTL must restart on each write"
    );
}

async fn ids_unique<H: Harness>(h: &H) {
    let b = h.backend().await;
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let id = b.generate_id();
        // Whatever the id format (a backend may have its own generator), the layer must let
        // the backend's own ids through when a client sends them back.
        assert!(
            id.len() <= 4096
                && id
                    .bytes()
                    .all(|c| c.is_ascii_graphic() && !b"\",;\\".contains(&c)),
            "a generated id cannot travel in a cookie: {id:?}"
        );
        assert!(seen.insert(id), "a generated id repeated");
    }
}

async fn large_value<H: Harness>(h: &H) {
    let b = h.backend().await;
    let big: String = (0..1024 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let data = record(json!({"big": big}));
    let id = create(&b, &data, HOUR).await;
    assert_eq!(
        read_back(&b, &id).await,
        data,
        "a 1 MiB value did not round-trip"
    );
}

async fn unicode_keys<H: Harness>(h: &H) {
    let b = h.backend().await;
    let data = record(json!({
        "ключ": "значение", "键": "值", "🔑": "🔒", "": "empty key",
        "with space": 1, "quote\"and\\slash": 2, "nul\u{0}byte": 3, "Zoë": "naïve",
    }));
    let id = create(&b, &data, HOUR).await;
    assert_eq!(
        read_back(&b, &id).await,
        data,
        "unicode keys did not round-trip"
    );
}

async fn nested_values<H: Harness>(h: &H) {
    let b = h.backend().await;
    let data = record(json!({
        "user": {"id": 7, "roles": ["admin", "dev"], "profile": {"tz": "UTC", "age": null}},
        "matrix": [[1, 2], [3, [4, {"deep": true}]]],
        "min": i64::MIN, "max": u64::MAX, "float": -1.25, "zero": 0, "no": false,
        "empty_map": {}, "empty_list": [],
    }));
    let id = create(&b, &data, HOUR).await;
    assert_eq!(
        read_back(&b, &id).await,
        data,
        "nested values did not round-trip"
    );
}

async fn concurrent_writers<H: Harness>(h: &H) {
    let b = Arc::new(h.backend().await);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let b = Arc::clone(&b);
            tokio::spawn(async move {
                let id = create(&*b, &record(json!({"writer": i})), HOUR).await;
                (i, id)
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        let (i, id) = task.await.expect("a writer panicked");
        assert_eq!(
            read_back(&*b, &id).await.values()["writer"],
            json!(i),
            "data mixed up"
        );
        assert!(ids.insert(id), "two writers got the same id");
    }
}

fn garbage_ids(real: &str) -> Vec<String> {
    let mut ids: Vec<String> = [
        "",
        " ",
        "a",
        "\0",
        "../../etc/passwd",
        "' OR '1'='1",
        "\"; DROP TABLE sessions; --",
        "*",
        "session:*",
        "{}",
        "ü",
        "🔑",
        "%00",
        "\r\nSet-Cookie: x=y",
        "null",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ids.push("x".repeat(10_000));
    ids.push(real[..real.len() / 2].to_owned());
    ids.push(format!("{real}{real}"));
    ids.push(format!("{real}x"));
    let mut flipped = real.as_bytes().to_vec();
    if let Some(last) = flipped.last_mut() {
        *last = if *last == b'A' { b'B' } else { b'A' };
    }
    ids.push(String::from_utf8_lossy(&flipped).into_owned());
    let mut tail = real.as_bytes().to_vec();
    if let Some(first) = tail.first_mut() {
        *first = if *first == b'A' { b'B' } else { b'A' };
    }
    ids.push(String::from_utf8_lossy(&tail).into_owned());
    ids
}

async fn garbage_ids_read_none<H: Harness>(h: &H) {
    let b = h.backend().await;
    let real = create(&b, &record(json!({"v": 1})), HOUR).await;
    for id in garbage_ids(&real) {
        match b.read(&id).await {
            Ok(None) => {}
            Ok(Some(_)) => panic!("a garbage or forged id read as a session"),
            Err(e) => panic!("a garbage id must read as None, not fail: {e}"),
        }
        assert!(
            matches!(stored(&b, &id).await, Ok(false)),
            "a garbage id exists"
        );
    }
    assert_eq!(read_back(&b, &real).await.values()["v"], json!(1));
}

async fn unknown_id_not_adopted<H: Harness>(h: &H) {
    let b = h.backend().await;
    let made_up = b.generate_id();
    match replace(&b, &made_up, &record(json!({"v": 1})), HOUR).await {
        Err(Error::SessionGone) => {}
        Ok(_) => panic!("an update under an unknown id must fail with SessionGone, not store"),
        Err(e) => panic!("an update under an unknown id must be SessionGone, got: {e}"),
    }
    assert!(
        matches!(b.read(&made_up).await, Ok(None)),
        "an unknown id was adopted"
    );
}

async fn create_never_overwrites<H: Harness>(h: &H) {
    let first = crate::generate_id();
    let script = Arc::new(Mutex::new(vec![
        crate::generate_id(),
        first.clone(),
        first.clone(),
    ]));
    let calls = Arc::new(AtomicUsize::new(0));
    let ids: IdGenerator = {
        let script = Arc::clone(&script);
        let calls = Arc::clone(&calls);
        Arc::new(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            script
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop()
                .unwrap_or_else(crate::generate_id)
        })
    };
    let Some(b) = h.backend_with_ids(ids).await else {
        unsupported(
            Case::CreateNeverOverwrites,
            "the harness cannot script ids (Harness::backend_with_ids)",
        )
    };
    let original = record(json!({"owner": "first"}));
    let id1 = create(&b, &original, HOUR).await;
    assert_eq!(id1, first, "the backend did not use its id generator");
    let id2 = create(&b, &record(json!({"owner": "second"})), HOUR).await;
    assert_ne!(id2, id1, "a create reused a taken id");
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "the backend did not mint again after a collision"
    );
    assert_eq!(
        read_back(&b, &id1).await,
        original,
        "a create overwrote an existing record"
    );
    assert_eq!(read_back(&b, &id2).await.values()["owner"], json!("second"));
}

async fn no_resurrection_after_remove<H: Harness>(h: &H) {
    let b = h.backend().await;
    let id = create(&b, &record(json!({"v": 1})), HOUR).await;
    b.remove(&id).await.expect("remove failed");
    match replace(&b, &id, &record(json!({"v": 2})), HOUR).await {
        Err(Error::SessionGone) => {}
        Ok(_) => panic!("an update after a remove brought the session back"),
        Err(e) => panic!("an update after a remove must be SessionGone, got: {e}"),
    }
    assert!(
        matches!(b.read(&id).await, Ok(None)),
        "the removed session came back"
    );
}

/// Save `changes` made to `loaded` (as read from `id`), as the session layer does.
async fn save<B: SessionBackend>(
    b: &B,
    id: &str,
    loaded: &SessionData,
    changes: &Changes,
) -> Result<Option<String>, Error> {
    let session = changes.applied_to(loaded, loaded.last_access_unix() + 1);
    b.apply(id, &session, changes, HOUR).await
}

fn setting(key: &str, value: Value) -> Changes {
    let mut changes = Changes::default();
    changes.set(key, value);
    changes
}

/// A record stored with `value`, its id, and two copies of it as two requests load it.
async fn loaded_twice<B: SessionBackend>(
    b: &B,
    value: Value,
) -> (String, SessionData, SessionData) {
    let id = create(b, &record(value), HOUR).await;
    let first = read_back(b, &id).await;
    let second = read_back(b, &id).await;
    (id, first, second)
}

/// The cookie value a save answered, which must be a save (not a removal).
fn saved(applied: Result<Option<String>, Error>, what: &str) -> String {
    match applied {
        Ok(Some(value)) => value,
        Ok(None) => panic!("{what}: expected a save, got a removal"),
        Err(e) => panic!("{what}: the save failed: {e}"),
    }
}

async fn apply_keeps_other_saves_keys<H: Harness>(h: &H) {
    let b = h.backend().await;
    let (id, first, second) = loaded_twice(&b, json!({"a": 1})).await;
    saved(
        save(&b, &id, &first, &setting("cart", json!(["book"]))).await,
        "the first save",
    );
    let value = saved(
        save(&b, &id, &second, &setting("last_page", json!("/checkout"))).await,
        "the second save",
    );
    // The value the save answered opens the merged record (a new sealed value for cookies).
    let record = read_back(&b, &value).await;
    let stored = read_back(&b, &id).await;
    for (key, value) in [
        ("a", json!(1)),
        ("cart", json!(["book"])),
        ("last_page", json!("/checkout")),
    ] {
        assert_eq!(
            stored.values().get(key),
            Some(&value),
            "{key} was lost: {stored:?}"
        );
        assert_eq!(
            record.values().get(key),
            Some(&value),
            "apply's record lacks {key}"
        );
    }
}

async fn apply_keeps_removed_keys_removed<H: Harness>(h: &H) {
    let b = h.backend().await;
    let (id, first, second) = loaded_twice(&b, json!({"flash": "hi", "a": 1})).await;
    let mut removing = Changes::default();
    removing.remove("flash");
    saved(save(&b, &id, &first, &removing).await, "the removing save");
    saved(
        save(&b, &id, &second, &setting("b", json!(2))).await,
        "the other save",
    );
    let stored = read_back(&b, &id).await;
    assert!(
        !stored.values().contains_key("flash"),
        "a removed key came back: {stored:?}"
    );
    assert_eq!(stored.values().get("b"), Some(&json!(2)));
    assert_eq!(stored.values().get("a"), Some(&json!(1)));
}

async fn apply_after_remove_is_gone<H: Harness>(h: &H) {
    let b = h.backend().await;
    let (id, loaded, _) = loaded_twice(&b, json!({"a": 1})).await;
    b.remove(&id).await.expect("remove failed");
    match save(&b, &id, &loaded, &setting("b", json!(2))).await {
        Err(Error::SessionGone) => {}
        other => panic!("a save after a remove must be SessionGone, got {other:?}"),
    }
    assert!(
        matches!(b.read(&id).await, Ok(None)),
        "the removed session came back"
    );
}

/// What `lookup` answers for `id`, as a word for assertions.
async fn looked_up<B: SessionBackend>(backend: &B, id: &str) -> &'static str {
    match backend.lookup(id).await {
        Ok(crate::Lookup::Live(_)) => "live",
        Ok(crate::Lookup::Ended) => "ended",
        Ok(crate::Lookup::Missing) => "missing",
        Err(e) => panic!("lookup failed: {e}"),
    }
}

/// Fail `case` unless `backend` answered [`Lookup::Ended`](crate::Lookup::Ended) for `id`.
async fn assert_marked<B: SessionBackend>(backend: &B, id: &str, case: Case) {
    match looked_up(backend, id).await {
        "ended" => {}
        "missing" => unsupported(
            case,
            "the backend leaves no marker where a session ended (its `lookup` answers \
             `Missing`); the session layer then expires the cookie of requests that \
             overlapped a logout or a login",
        ),
        other => panic!("a session that just ended looks up as {other}"),
    }
}

async fn ended_marker_after_remove<H: Harness>(h: &H) {
    let b = h.backend().await;
    assert_eq!(looked_up(&b, &b.generate_id()).await, "missing");
    let id = create(&b, &record(json!({"v": 1})), HOUR).await;
    assert_eq!(looked_up(&b, &id).await, "live");
    b.remove(&id).await.expect("remove failed");
    assert_marked(&b, &id, Case::EndedMarkerAfterRemove).await;
    assert!(
        matches!(b.read(&id).await, Ok(None)),
        "a marker reads as a record"
    );
}

async fn ended_marker_after_emptying_save<H: Harness>(h: &H) {
    let b = h.backend().await;
    let (id, loaded, _) = loaded_twice(&b, json!({"a": 1})).await;
    let mut clearing = Changes::default();
    clearing.clear();
    match save(&b, &id, &loaded, &clearing).await {
        Ok(None) => {}
        other => panic!("a save that empties the session must remove it, got {other:?}"),
    }
    assert_marked(&b, &id, Case::EndedMarkerAfterEmptyingSave).await;
}

async fn ended_marker_is_no_session<H: Harness>(h: &H) {
    let b = h.backend().await;
    let user = fresh_user();
    let (id, loaded, _) = loaded_twice(&b, json!({"a": 1})).await;
    b.remove(&id).await.expect("remove failed");
    assert_marked(&b, &id, Case::EndedMarkerIsNoSession).await;
    match save(&b, &id, &loaded, &setting("b", json!(2))).await {
        Err(Error::SessionGone) => {}
        other => panic!("a save to an ended session must be SessionGone, got {other:?}"),
    }
    assert!(
        matches!(b.read(&id).await, Ok(None)),
        "the ended session came back"
    );
    assert_marked(&b, &id, Case::EndedMarkerIsNoSession).await;
    // A bound session that ended is not listed, where the backend lists.
    let bound_id = create(&b, &bound(json!({"v": 1}), &user), HOUR).await;
    b.remove(&bound_id).await.expect("remove failed");
    match b.user_sessions(&user).await {
        Ok(sessions) => assert!(sessions.is_empty(), "an ended session was listed"),
        Err(Error::Unsupported(_)) => {}
        Err(e) => panic!("listing failed: {e}"),
    }
}

async fn move_ends_the_old_id<H: Harness>(h: &H) {
    let b = h.backend().await;
    let (id, loaded, _) = loaded_twice(&b, json!({"a": 1})).await;
    let mut moving = loaded.clone();
    moving.values_mut().insert("b".into(), json!(2));
    let new = b
        .move_session(&id, &moving, &Changes::default(), HOUR)
        .await
        .expect("the move failed");
    assert_ne!(new, id, "the session kept its id");
    assert_eq!(
        read_back(&b, &new).await.values(),
        record(json!({"a": 1, "b": 2})).values(),
        "the moved session is not the one the request left"
    );
    assert!(
        matches!(b.read(&id).await, Ok(None)),
        "the old id still reads"
    );
}

async fn move_after_end_is_gone<H: Harness>(h: &H) {
    // The first id goes to the session, the second to where the move would put it.
    let scripted = crate::generate_id();
    let script = Arc::new(Mutex::new(vec![scripted.clone(), crate::generate_id()]));
    let ids: IdGenerator = Arc::new(move || {
        script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_else(crate::generate_id)
    });
    let Some(b) = h.backend_with_ids(ids).await else {
        unsupported(
            Case::MoveAfterEndIsGone,
            "the harness cannot script ids (Harness::backend_with_ids)",
        )
    };
    let id = create(&b, &record(json!({"a": 1})), HOUR).await;
    let loaded = read_back(&b, &id).await;
    b.remove(&id).await.expect("remove failed");
    match b
        .move_session(&id, &loaded, &Changes::default(), HOUR)
        .await
    {
        Err(Error::SessionGone) => {}
        other => panic!("moving an ended session must be SessionGone, got {other:?}"),
    }
    assert!(
        matches!(b.read(&scripted).await, Ok(None)),
        "a failed move left a session under the new id"
    );
}

/// A backend of the harness with at most `max` sessions per user.
async fn capped<H: Harness>(h: &H, max: usize, case: Case) -> H::Backend {
    let mut b = h.backend().await;
    match b.limit_sessions_per_user(max) {
        Ok(()) => b,
        Err(Error::Unsupported(why)) => unsupported(case, &why),
        Err(e) => panic!("the per-user limit was refused: {e}"),
    }
}

/// `value` bound to `user`, last used `ago` seconds before now.
fn bound_used(value: Value, user: &str, ago: u64) -> SessionData {
    let mut data = bound(value, user);
    let used = data.last_access_unix() - ago;
    data.set_last_access(used);
    data
}

async fn user_cap_ends_the_least_recently_used<H: Harness>(h: &H) {
    let b = capped(h, 2, Case::UserCapEndsTheLeastRecentlyUsed).await;
    let user = fresh_user();
    let oldest = create(&b, &bound_used(json!({"v": 1}), &user, 30), HOUR).await;
    let older = create(&b, &bound_used(json!({"v": 2}), &user, 20), HOUR).await;
    let newest = create(&b, &bound_used(json!({"v": 3}), &user, 0), HOUR).await;
    assert!(
        matches!(b.read(&oldest).await, Ok(None)),
        "the least recently used session outlived the limit"
    );
    for id in [&older, &newest] {
        assert!(
            b.read(id).await.expect("read failed").is_some(),
            "a session within the limit ended"
        );
    }
    if let Ok(sessions) = b.user_sessions(&user).await {
        assert_eq!(sessions.len(), 2, "the user keeps two sessions");
    }
}

async fn user_cap_counts_a_move_once<H: Harness>(h: &H) {
    let b = capped(h, 2, Case::UserCapCountsAMoveOnce).await;
    let user = fresh_user();
    let other = create(&b, &bound_used(json!({"v": 1}), &user, 30), HOUR).await;
    let moving = create(&b, &bound_used(json!({"v": 2}), &user, 20), HOUR).await;
    let loaded = read_back(&b, &moving).await;
    let moved = b
        .move_session(&moving, &loaded, &Changes::default(), HOUR)
        .await
        .expect("the move failed");
    assert!(
        b.read(&other).await.expect("read failed").is_some(),
        "a move counted twice against the limit and ended another session"
    );
    assert!(b.read(&moved).await.expect("read failed").is_some());
    assert!(matches!(b.read(&moving).await, Ok(None)));
}

async fn apply_clear_clears_the_stored_record<H: Harness>(h: &H) {
    let b = h.backend().await;
    let (id, first, second) = loaded_twice(&b, json!({"a": 1})).await;
    saved(
        save(&b, &id, &first, &setting("x", json!(1))).await,
        "the setting save",
    );
    let mut clearing = Changes::default();
    clearing.clear();
    clearing.set("y", json!(2));
    let value = saved(save(&b, &id, &second, &clearing).await, "the clearing save");
    let cleared = read_back(&b, &value).await;
    assert_eq!(
        cleared.values(),
        record(json!({"y": 2})).values(),
        "a clear keeps only what was set after it"
    );
    assert_eq!(read_back(&b, &id).await.values(), cleared.values());

    let (id, first, second) = loaded_twice(&b, json!({"a": 1})).await;
    saved(
        save(&b, &id, &first, &setting("x", json!(1))).await,
        "the setting save",
    );
    let mut emptying = Changes::default();
    emptying.clear();
    match save(&b, &id, &second, &emptying).await {
        Ok(None) => {}
        other => panic!("a save that empties the record must remove it, got {other:?}"),
    }
    assert!(
        matches!(b.read(&id).await, Ok(None)),
        "the emptied record is still there"
    );
}

async fn apply_keeps_created<H: Harness>(h: &H) {
    let b = h.backend().await;
    let (id, loaded, _) = loaded_twice(&b, json!({"a": 1})).await;
    let applied = save(&b, &id, &loaded, &setting("b", json!(2))).await;
    let Ok(Some(value)) = applied else {
        panic!("the save failed: {applied:?}")
    };
    let record = read_back(&b, &value).await;
    assert_eq!(
        record.created_unix(),
        loaded.created_unix(),
        "the creation time moved"
    );
    assert!(record.last_access_unix() > loaded.last_access_unix());
    // The cookie value the save answered: the id for stores, a new sealed value for cookies.
    let stored = read_back(&b, &value).await;
    assert_eq!(stored.created_unix(), loaded.created_unix());
    assert_eq!(stored.last_access_unix(), record.last_access_unix());
}

async fn apply_concurrent_saves_keep_every_key<H: Harness>(h: &H) {
    let b = Arc::new(h.backend().await);
    let (id, loaded, _) = loaded_twice(&*b, json!({"a": 1})).await;
    let saves: Vec<_> = (0..16)
        .map(|n| {
            let (b, id, loaded) = (Arc::clone(&b), id.clone(), loaded.clone());
            tokio::spawn(async move {
                save(&*b, &id, &loaded, &setting(&format!("k{n}"), json!(n))).await
            })
        })
        .collect();
    for task in saves {
        saved(
            task.await.expect("a save task panicked"),
            "a concurrent save",
        );
    }
    let stored = read_back(&*b, &id).await;
    for n in 0..16 {
        assert_eq!(
            stored.values().get(&format!("k{n}")),
            Some(&json!(n)),
            "k{n} was lost: {stored:?}"
        );
    }
}

/// Bytes no serializer reads as a session record.
const GARBAGE: &[u8] = b"\xff\x00 not a session record";

async fn corrupt_record_reads_as_missing<H: Harness>(h: &H) {
    let b = h.backend().await;
    let Some(id) = h.plant_raw(&b, GARBAGE).await else {
        unsupported(
            Case::CorruptRecordReadsAsMissing,
            "the harness cannot plant raw bytes (Harness::plant_raw)",
        )
    };
    match b.read(&id).await {
        Ok(None) => {}
        Ok(Some(_)) => panic!("garbage decoded as a session"),
        Err(e) => panic!("a corrupt record must read as no session by default, got: {e}"),
    }
    assert!(
        !stored(&b, &id).await.expect("exists failed"),
        "the corrupt record was not removed"
    );
    assert!(
        matches!(
            replace(&b, &id, &record(json!({"v": 1})), HOUR).await,
            Err(Error::SessionGone)
        ),
        "the id of a discarded record was adopted"
    );
}

async fn corrupt_record_fails_when_strict<H: Harness>(h: &H) {
    let Some(b) = h.strict_backend().await else {
        unsupported(
            Case::CorruptRecordFailsWhenStrict,
            "the harness has no strict backend (Harness::strict_backend)",
        )
    };
    let Some(id) = h.plant_raw(&b, GARBAGE).await else {
        unsupported(
            Case::CorruptRecordFailsWhenStrict,
            "the harness cannot plant raw bytes (Harness::plant_raw)",
        )
    };
    let error = match b.read(&id).await {
        Err(error) => error,
        Ok(found) => panic!("strict mode must fail the read of a corrupt record, got {found:?}"),
    };
    let Error::Serialization { source, .. } = &error else {
        panic!("a corrupt record must fail with Error::Serialization, got: {error}")
    };
    // `store::corrupt` names the record with its id masked; a backend may also return
    // `Error::decode` of its own. Either way the whole id, a bearer secret, is not shown.
    let location = source
        .downcast_ref::<crate::store::CorruptRecord>()
        .map_or("", |corrupt| corrupt.location());
    assert!(
        !error.to_string().contains(&id) && !location.contains(&id),
        "the error shows the whole session id: {error}"
    );
    assert!(
        b.read(&id).await.is_err(),
        "strict mode removed the record (a second read found nothing to fail on)"
    );
}

/// Fail a case the harness or the backend cannot run, saying how to declare it skipped.
/// A backend that can lock, for the `Lock*` cases.
async fn locking<H: Harness>(h: &H, case: Case) -> H::Backend {
    let b = h.backend().await;
    if let Err(Error::Unsupported(why)) = b.check_locking() {
        unsupported(case, &why);
    }
    b
}

async fn lock_excludes_others<H: Harness>(h: &H) {
    let b = locking(h, Case::LockExcludesOthers).await;
    let id = create(&b, &record(json!({"n": 1})), HOUR).await;
    let lease = Duration::from_secs(60);
    let took = |token: &'static str| {
        let (b, id) = (&b, &id);
        async move { b.try_lock(id, token, lease).await.expect("try_lock failed") }
    };
    assert!(took("a").await, "a free lock was not taken");
    assert!(
        took("a").await,
        "its holder could not take the lock again (a renewal, or a command sent again)"
    );
    assert!(!took("b").await, "a held lock was taken by another token");
    let renewed = |token: &'static str| {
        let (b, id) = (&b, &id);
        async move {
            b.renew_lock(id, token, lease)
                .await
                .expect("renew_lock failed")
        }
    };
    assert!(renewed("a").await, "its holder could not renew the lock");
    assert!(!renewed("b").await, "another token renewed the lock");
    b.unlock(&id, "b").await.expect("unlock failed");
    assert!(!took("b").await, "another token gave the lock back");
    b.unlock(&id, "a").await.expect("unlock failed");
    assert!(!renewed("a").await, "a lock given back was renewed");
    assert!(took("b").await, "a lock given back was not free");
    b.unlock(&id, "b").await.expect("unlock failed");
}

async fn lock_lease_runs_out<H: Harness>(h: &H) {
    let b = locking(h, Case::LockLeaseRunsOut).await;
    let id = create(&b, &record(json!({"n": 1})), HOUR).await;
    let lease = Duration::from_millis(300);
    assert!(b.try_lock(&id, "a", lease).await.expect("try_lock failed"));
    assert!(!b.try_lock(&id, "b", lease).await.expect("try_lock failed"));
    h.pass_time(Duration::from_millis(600)).await;
    assert!(
        !b.renew_lock(&id, "a", lease)
            .await
            .expect("renew_lock failed"),
        "a lock whose lease ran out was renewed"
    );
    assert!(
        b.try_lock(&id, "b", lease).await.expect("try_lock failed"),
        "a lock whose lease ran out was not free"
    );
    b.unlock(&id, "b").await.expect("unlock failed");
}

async fn locked_apply_is_fenced<H: Harness>(h: &H) {
    let b = locking(h, Case::LockedApplyIsFenced).await;
    let id = create(&b, &record(json!({"n": 1})), HOUR).await;
    assert!(
        b.try_lock(&id, "a", Duration::from_secs(60))
            .await
            .expect("try_lock failed")
    );
    // What a request that set `n` leaves: the record as loaded with the change made.
    let save = |loaded: &SessionData, n: i64| {
        let mut session = loaded.clone();
        session.values_mut().insert("n".into(), json!(n));
        let mut changes = Changes::default();
        changes.set("n", json!(n));
        (session, changes)
    };
    let (session, changes) = save(&read_back(&b, &id).await, 2);
    let refused = b.apply_locked(&id, &session, &changes, HOUR, "b").await;
    assert!(
        matches!(refused, Err(Error::LockLost)),
        "a save under another token's lock: {refused:?}"
    );
    assert_eq!(
        read_back(&b, &id).await.values()["n"],
        json!(1),
        "a refused save stored"
    );
    let (session, changes) = save(&read_back(&b, &id).await, 3);
    let stored = b.apply_locked(&id, &session, &changes, HOUR, "a").await;
    assert!(
        matches!(stored, Ok(Some(_))),
        "the holder's save: {stored:?}"
    );
    assert_eq!(read_back(&b, &id).await.values()["n"], json!(3));
    // The save gave the lock back.
    assert!(
        b.try_lock(&id, "c", Duration::from_millis(300))
            .await
            .expect("try_lock failed"),
        "the holder's save did not give the lock back"
    );
    h.pass_time(Duration::from_millis(600)).await;
    let (session, changes) = save(&read_back(&b, &id).await, 4);
    let late = b.apply_locked(&id, &session, &changes, HOUR, "c").await;
    assert!(
        matches!(late, Err(Error::LockLost)),
        "a save after the lease ran out: {late:?}"
    );
    assert_eq!(
        read_back(&b, &id).await.values()["n"],
        json!(3),
        "a late save stored"
    );
}

fn unsupported(case: Case, why: &str) -> ! {
    panic!(
        "conformance: {case} cannot run: {why}. A backend that cannot support it lists it as \
         skipped, with the reason: `conformance_tests!(harness, skip: {{ {case}: \"why\" }})`"
    )
}

/// A user no other case or run shares (the backends of a harness may share storage).
fn fresh_user() -> String {
    format!("user-{}", crate::generate_id())
}

/// `value` bound to `user`, as a record to store.
fn bound(value: Value, user: &str) -> SessionData {
    let mut data = record(value);
    data.set_user(Some(user.into()));
    data
}

fn binding(user: Option<&str>) -> Changes {
    let mut changes = Changes::default();
    changes.set_user(user.map(Into::into));
    changes
}

/// The backend's listing of `user`'s sessions; `None` (the case is skipped, with the reason
/// printed) when the backend keeps no index of sessions by user.
async fn listed<B: SessionBackend>(b: &B, user: &str, case: Case) -> Option<Vec<UserSession>> {
    match b.user_sessions(user).await {
        Ok(sessions) => Some(sessions),
        Err(Error::Unsupported(reason)) => unsupported(
            case,
            &format!("the backend lists no sessions by user ({reason})"),
        ),
        Err(e) => panic!("listing a user's sessions failed: {e}"),
    }
}

fn device_ids(sessions: &[UserSession]) -> HashSet<DeviceId> {
    sessions.iter().map(|s| s.id.clone()).collect()
}

fn device_ids_of(ids: &[&String]) -> HashSet<DeviceId> {
    ids.iter().map(|id| DeviceId::of(id)).collect()
}

async fn gone<B: SessionBackend>(b: &B, id: &str) -> bool {
    matches!(b.read(id).await, Ok(None))
}

async fn user_binding_stored<H: Harness>(h: &H) {
    let b = h.backend().await;
    let user = fresh_user();
    let created = create(&b, &bound(json!({"a": 1}), &user), HOUR).await;
    assert_eq!(read_back(&b, &created).await.user(), Some(user.as_str()));

    let later = create(&b, &record(json!({"a": 1})), HOUR).await;
    let loaded = read_back(&b, &later).await;
    assert_eq!(loaded.user(), None);
    let value = saved(
        save(&b, &later, &loaded, &binding(Some(&user))).await,
        "a save binding a user",
    );
    assert_eq!(read_back(&b, &value).await.user(), Some(user.as_str()));
    let loaded = read_back(&b, &later).await;
    assert_eq!(
        loaded.user(),
        Some(user.as_str()),
        "the binding was not stored"
    );
    assert_eq!(loaded.values()["a"], json!(1));

    saved(
        save(&b, &later, &loaded, &binding(None)).await,
        "an unbinding save",
    );
    assert_eq!(
        read_back(&b, &later).await.user(),
        None,
        "the unbinding was not stored"
    );

    // A record holding only a user is not empty: it stays.
    let only_user = create(&b, &bound(json!({}), &user), HOUR).await;
    assert_eq!(read_back(&b, &only_user).await.user(), Some(user.as_str()));
    // Clearing the record clears the binding too.
    let loaded = read_back(&b, &created).await;
    let mut clear = Changes::default();
    clear.clear();
    clear.set("b", json!(2));
    let value = saved(save(&b, &created, &loaded, &clear).await, "a clearing save");
    assert_eq!(read_back(&b, &value).await.user(), None);
    assert_eq!(read_back(&b, &created).await.user(), None);
    for id in [created, later, only_user] {
        b.remove(&id).await.expect("remove failed");
    }
}

async fn user_sessions_listed<H: Harness>(h: &H) {
    let b = h.backend().await;
    let (user, other) = (fresh_user(), fresh_user());
    let Some(none) = listed(&b, &user, Case::UserSessionsListed).await else {
        return;
    };
    assert!(none.is_empty(), "a user never bound has sessions: {none:?}");
    let mut first = bound(json!({"agent": "laptop"}), &user);
    first.set_created(1_700_000_000);
    first.set_last_access(1_700_000_100);
    let first_id = create(&b, &first, HOUR).await;
    // The second is bound by a save, and used more recently.
    let second_id = create(&b, &record(json!({"agent": "phone"})), HOUR).await;
    let loaded = read_back(&b, &second_id).await;
    saved(
        save(&b, &second_id, &loaded, &binding(Some(&user))).await,
        "binding",
    );
    let others = create(&b, &bound(json!({"agent": "theirs"}), &other), HOUR).await;
    let unbound = create(&b, &record(json!({"agent": "nobody"})), HOUR).await;

    let sessions = listed(&b, &user, Case::UserSessionsListed)
        .await
        .unwrap_or_default();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(
        sessions[0].id,
        DeviceId::of(&second_id),
        "most recent first"
    );
    assert_eq!(sessions[1].id, DeviceId::of(&first_id));
    assert_eq!(sessions[0].get::<String>("agent").as_deref(), Some("phone"));
    assert_eq!(
        sessions[1].record,
        read_back(&b, &first_id).await,
        "not the record as stored"
    );
    assert_eq!(sessions[1].record.created_unix(), 1_700_000_000);
    assert!(
        sessions
            .iter()
            .all(|s| !s.current && s.record.user() == Some(user.as_str()))
    );
    for session in &sessions {
        assert!(
            !session.id.as_str().contains(first_id.as_str())
                && !session.id.as_str().contains(second_id.as_str()),
            "a device id gives the session id away"
        );
    }
    let theirs = listed(&b, &other, Case::UserSessionsListed)
        .await
        .unwrap_or_default();
    assert_eq!(device_ids(&theirs), device_ids_of(&[&others]));
    for id in [first_id, second_id, others, unbound] {
        b.remove(&id).await.expect("remove failed");
    }
}

/// Three sessions of a fresh user and one of another; `None` when the backend lists none.
async fn three_of_one_user<B: SessionBackend>(
    b: &B,
    case: Case,
) -> Option<(String, Vec<String>, String)> {
    let (user, other) = (fresh_user(), fresh_user());
    listed(b, &user, case).await?;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(create(b, &bound(json!({"n": n}), &user), HOUR).await);
    }
    let others = create(b, &bound(json!({"n": 9}), &other), HOUR).await;
    Some((user, ids, others))
}

async fn user_revoke_all<H: Harness>(h: &H) {
    let b = h.backend().await;
    let Some((user, ids, others)) = three_of_one_user(&b, Case::UserRevokeAll).await else {
        return;
    };
    let revoked = b
        .revoke_user_sessions(&user, None)
        .await
        .expect("revoking failed");
    assert_eq!(revoked, 3);
    for id in &ids {
        assert!(gone(&b, id).await, "a revoked session still reads");
        assert!(matches!(stored(&b, id).await, Ok(false)));
    }
    assert!(
        read_back(&b, &others).await.user().is_some(),
        "another user's session went"
    );
    assert_eq!(
        listed(&b, &user, Case::UserRevokeAll)
            .await
            .unwrap_or_default(),
        vec![]
    );
    assert_eq!(
        b.revoke_user_sessions(&user, None)
            .await
            .expect("revoking failed"),
        0
    );
    b.remove(&others).await.expect("remove failed");
}

async fn user_revoke_others<H: Harness>(h: &H) {
    let b = h.backend().await;
    let Some((user, ids, others)) = three_of_one_user(&b, Case::UserRevokeOthers).await else {
        return;
    };
    let revoked = b
        .revoke_user_sessions(&user, Some(&ids[1]))
        .await
        .expect("revoking failed");
    assert_eq!(revoked, 2);
    assert!(
        gone(&b, &ids[0]).await && gone(&b, &ids[2]).await,
        "another device kept its session"
    );
    assert_eq!(
        read_back(&b, &ids[1]).await.values()["n"],
        json!(1),
        "the kept session went"
    );
    let left = listed(&b, &user, Case::UserRevokeOthers)
        .await
        .unwrap_or_default();
    assert_eq!(device_ids(&left), device_ids_of(&[&ids[1]]));
    assert!(stored(&b, &others).await.expect("exists failed"));
    for id in [&ids[1], &others] {
        b.remove(id).await.expect("remove failed");
    }
}

async fn user_revoke_one<H: Harness>(h: &H) {
    let b = h.backend().await;
    let Some((user, ids, others)) = three_of_one_user(&b, Case::UserRevokeOne).await else {
        return;
    };
    let revoke = |device: DeviceId| {
        let (b, user) = (&b, &user);
        async move {
            b.revoke_user_session(user, &device)
                .await
                .expect("revoking failed")
        }
    };
    assert!(
        revoke(DeviceId::of(&ids[2])).await,
        "the session was not found"
    );
    assert!(gone(&b, &ids[2]).await);
    assert!(!revoke(DeviceId::of(&ids[2])).await, "revoked twice");
    assert!(!revoke(DeviceId::from("not-a-device-id".to_owned())).await);
    assert!(
        !revoke(DeviceId::of(&others)).await,
        "another user's session was revoked"
    );
    assert!(stored(&b, &others).await.expect("exists failed"));
    let left = listed(&b, &user, Case::UserRevokeOne)
        .await
        .unwrap_or_default();
    assert_eq!(device_ids(&left), device_ids_of(&[&ids[0], &ids[1]]));
    for id in [&ids[0], &ids[1], &others] {
        b.remove(id).await.expect("remove failed");
    }
}

async fn user_rebinding_moves_the_session<H: Harness>(h: &H) {
    let b = h.backend().await;
    let (first, second) = (fresh_user(), fresh_user());
    if listed(&b, &first, Case::UserRebindingMovesTheSession)
        .await
        .is_none()
    {
        return;
    }
    let id = create(&b, &bound(json!({"a": 1}), &first), HOUR).await;
    let loaded = read_back(&b, &id).await;
    saved(
        save(&b, &id, &loaded, &binding(Some(&second))).await,
        "rebinding",
    );
    let of_first = listed(&b, &first, Case::UserRebindingMovesTheSession)
        .await
        .unwrap_or_default();
    assert!(
        of_first.is_empty(),
        "listed under its former user: {of_first:?}"
    );
    assert_eq!(
        b.revoke_user_sessions(&first, None)
            .await
            .expect("revoking failed"),
        0
    );
    assert!(
        !b.revoke_user_session(&first, &DeviceId::of(&id))
            .await
            .expect("revoking failed"),
        "revoked as its former user's"
    );
    assert!(
        stored(&b, &id).await.expect("exists failed"),
        "revoked as its former user's"
    );
    let of_second = listed(&b, &second, Case::UserRebindingMovesTheSession)
        .await
        .unwrap_or_default();
    assert_eq!(device_ids(&of_second), device_ids_of(&[&id]));
    b.remove(&id).await.expect("remove failed");
}

async fn user_expired_sessions_pruned<H: Harness>(h: &H) {
    let b = h.backend().await;
    let user = fresh_user();
    if listed(&b, &user, Case::UserExpiredSessionsPruned)
        .await
        .is_none()
    {
        return;
    }
    let short = create(
        &b,
        &bound(json!({"v": "short"}), &user),
        Some(Duration::from_secs(1)),
    )
    .await;
    let long = create(&b, &bound(json!({"v": "long"}), &user), HOUR).await;
    // Removed without the user index knowing (a logout's `remove`).
    let removed = create(&b, &bound(json!({"v": "removed"}), &user), HOUR).await;
    b.remove(&removed).await.expect("remove failed");
    h.pass_time(Duration::from_millis(2300)).await;
    let sessions = listed(&b, &user, Case::UserExpiredSessionsPruned)
        .await
        .unwrap_or_default();
    assert_eq!(
        device_ids(&sessions),
        device_ids_of(&[&long]),
        "an ended session was listed"
    );
    let indexed = b
        .user_session_ids(&user)
        .await
        .expect("the index could not be read");
    assert!(
        !indexed.contains(&short) && !indexed.contains(&removed),
        "listing left ended sessions in the index: {indexed:?}"
    );
    assert!(indexed.contains(&long), "the live session left the index");
    assert_eq!(
        b.revoke_user_sessions(&user, None)
            .await
            .expect("revoking failed"),
        1
    );
}

async fn user_revoke_racing_saves_stays_revoked<H: Harness>(h: &H) {
    let b = Arc::new(h.backend().await);
    let user = fresh_user();
    if listed(&*b, &user, Case::UserRevokeRacingSavesStaysRevoked)
        .await
        .is_none()
    {
        return;
    }
    // A save of a session loaded before the revocation, arriving after it.
    let id = create(&*b, &bound(json!({"a": 1}), &user), HOUR).await;
    let loaded = read_back(&*b, &id).await;
    assert_eq!(
        b.revoke_user_sessions(&user, None)
            .await
            .expect("revoking failed"),
        1
    );
    match save(&*b, &id, &loaded, &setting("a", json!(2))).await {
        Err(Error::SessionGone) => {}
        other => panic!("a save after the revocation must be SessionGone, got {other:?}"),
    }
    assert!(
        gone(&*b, &id).await,
        "a save brought a revoked session back"
    );

    // Saves at the same instant as the revocation: whichever comes first, the session ends.
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for n in 0..4 {
            ids.push(create(&*b, &bound(json!({"n": n}), &user), HOUR).await);
        }
        ids
    };
    let mut tasks = Vec::new();
    for id in &ids {
        let loaded = read_back(&*b, id).await;
        for n in 0..4 {
            let (b, id, loaded) = (Arc::clone(&b), id.clone(), loaded.clone());
            tasks.push(tokio::spawn(async move {
                match save(&*b, &id, &loaded, &setting(&format!("k{n}"), json!(n))).await {
                    Ok(_) | Err(Error::SessionGone) => {}
                    Err(e) => panic!("a save racing a revocation failed: {e}"),
                }
            }));
        }
    }
    let revoke = {
        let (b, user) = (Arc::clone(&b), user.clone());
        tokio::spawn(async move { b.revoke_user_sessions(&user, None).await })
    };
    for task in tasks {
        task.await.expect("a save task panicked");
    }
    let revoked = revoke
        .await
        .expect("the revoke task panicked")
        .expect("revoking failed");
    assert_eq!(revoked, ids.len(), "a session was missed by the revocation");
    for id in &ids {
        assert!(
            gone(&*b, id).await,
            "a save racing the revocation brought a session back"
        );
    }
}

/// Generate one `#[test]` per conformance [`Case`] for a [`Harness`] expression, in the
/// module it is called in.
///
/// Cases the backend cannot support are listed after `skip:`, each with its reason: their
/// tests are marked `#[ignore]` with that reason, so the test output shows them as ignored
/// and why (and `cargo test -- --ignored` runs them anyway). Every other case must pass; one
/// that needs what the harness or backend lacks (scripted ids, raw bytes, a user index)
/// fails and says to list it.
///
/// ```
/// # use sessionkit_core::conformance::Harness;
/// # #[derive(Default)] struct MyHarness;
/// # impl MyHarness { fn new() -> Self { MyHarness } }
/// # impl Harness for MyHarness {
/// #     type Backend = sessionkit_memory::InMemoryBackend;
/// #     async fn backend(&self) -> Self::Backend { sessionkit_memory::InMemoryBackend::new() }
/// # }
/// sessionkit_core::conformance_tests!(MyHarness::new(), skip: {
///     CreateNeverOverwrites: "this harness cannot script ids",
///     CorruptRecordReadsAsMissing: "records are kept as values: nothing to corrupt",
///     CorruptRecordFailsWhenStrict: "records are kept as values: nothing to corrupt",
/// });
/// # fn main() {}
/// ```
///
/// The expression is evaluated once per test. Put each call in its own module to run the
/// suite for several configurations in one file.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr $(, skip: { $($skip:ident: $reason:literal),* $(,)? })? $(,)?) => {
        $crate::conformance_tests!(@with ($) $harness; $($($skip: $reason,)*)?);
    };
    (@with ($d:tt) $harness:expr; $($skip:ident: $reason:literal,)*) => {
        macro_rules! __conformance_case {
            $(
                ($d test:ident, $skip) => {
                    #[test]
                    #[ignore = $reason]
                    fn $d test() {
                        // The harness is made inside the runtime: it may need one.
                        $crate::conformance::block_on(async {
                            let case = $crate::conformance::Case::$skip;
                            $crate::conformance::run_case(&$harness, case).await;
                        });
                    }
                };
            )*
            ($d test:ident, $d case:ident) => {
                #[test]
                fn $d test() {
                    // The harness is made inside the runtime: it may need one.
                    $crate::conformance::block_on(async {
                        let case = $crate::conformance::Case::$d case;
                        $crate::conformance::run_case(&$harness, case).await;
                    });
                }
            };
        }
        __conformance_case!(conformance_round_trip, RoundTrip);
        __conformance_case!(conformance_missing_id_reads_none, MissingIdReadsNone);
        __conformance_case!(conformance_overwrite, Overwrite);
        __conformance_case!(conformance_update_keeps_id, UpdateKeepsId);
        __conformance_case!(conformance_remove, Remove);
        __conformance_case!(conformance_exists, Exists);
        __conformance_case!(conformance_ttl_honoured, TtlHonoured);
        __conformance_case!(conformance_ttl_resets_on_write, TtlResetsOnWrite);
        __conformance_case!(conformance_ids_unique, IdsUnique);
        __conformance_case!(conformance_large_value, LargeValue);
        __conformance_case!(conformance_unicode_keys, UnicodeKeys);
        __conformance_case!(conformance_nested_values, NestedValues);
        __conformance_case!(conformance_concurrent_writers, ConcurrentWriters);
        __conformance_case!(conformance_garbage_ids_read_none, GarbageIdsReadNone);
        __conformance_case!(conformance_unknown_id_not_adopted, UnknownIdNotAdopted);
        __conformance_case!(conformance_create_never_overwrites, CreateNeverOverwrites);
        __conformance_case!(conformance_no_resurrection_after_remove, NoResurrectionAfterRemove);
        __conformance_case!(conformance_apply_keeps_other_saves_keys, ApplyKeepsOtherSavesKeys);
        __conformance_case!(conformance_apply_keeps_removed_keys_removed, ApplyKeepsRemovedKeysRemoved);
        __conformance_case!(conformance_apply_after_remove_is_gone, ApplyAfterRemoveIsGone);
        __conformance_case!(conformance_apply_clear_clears_the_stored_record, ApplyClearClearsTheStoredRecord);
        __conformance_case!(conformance_apply_keeps_created, ApplyKeepsCreated);
        __conformance_case!(conformance_apply_concurrent_saves_keep_every_key, ApplyConcurrentSavesKeepEveryKey);
        __conformance_case!(conformance_corrupt_record_reads_as_missing, CorruptRecordReadsAsMissing);
        __conformance_case!(conformance_corrupt_record_fails_when_strict, CorruptRecordFailsWhenStrict);
        __conformance_case!(conformance_user_binding_stored, UserBindingStored);
        __conformance_case!(conformance_user_sessions_listed, UserSessionsListed);
        __conformance_case!(conformance_user_revoke_all, UserRevokeAll);
        __conformance_case!(conformance_user_revoke_others, UserRevokeOthers);
        __conformance_case!(conformance_user_revoke_one, UserRevokeOne);
        __conformance_case!(conformance_user_rebinding_moves_the_session, UserRebindingMovesTheSession);
        __conformance_case!(conformance_user_expired_sessions_pruned, UserExpiredSessionsPruned);
        __conformance_case!(conformance_user_revoke_racing_saves_stays_revoked, UserRevokeRacingSavesStaysRevoked);
        __conformance_case!(conformance_ended_marker_after_remove, EndedMarkerAfterRemove);
        __conformance_case!(conformance_ended_marker_after_emptying_save, EndedMarkerAfterEmptyingSave);
        __conformance_case!(conformance_ended_marker_is_no_session, EndedMarkerIsNoSession);
        __conformance_case!(conformance_move_ends_the_old_id, MoveEndsTheOldId);
        __conformance_case!(conformance_move_after_end_is_gone, MoveAfterEndIsGone);
        __conformance_case!(conformance_user_cap_ends_the_least_recently_used, UserCapEndsTheLeastRecentlyUsed);
        __conformance_case!(conformance_user_cap_counts_a_move_once, UserCapCountsAMoveOnce);
        __conformance_case!(conformance_lock_excludes_others, LockExcludesOthers);
        __conformance_case!(conformance_lock_lease_runs_out, LockLeaseRunsOut);
        __conformance_case!(conformance_locked_apply_is_fenced, LockedApplyIsFenced);
    };
}

/// Run a future to completion on a fresh multi-threaded tokio runtime (two workers, every
/// driver enabled), as each generated conformance test does.
pub fn block_on<F: Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => panic!("could not start a tokio runtime for the conformance suite: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_macro_lists_every_case() {
        // The macro's list is written out by hand; keep it in step with `Case::ALL`.
        let source = include_str!("conformance.rs");
        for case in Case::ALL {
            assert!(
                source.contains(&format!(", {case});")),
                "conformance_tests! does not run {case}"
            );
        }
    }
}
