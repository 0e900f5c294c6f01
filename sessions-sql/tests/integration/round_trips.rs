//! One operation is one statement and, on a server, one round trip.
//!
//! - Statements are counted on every database from sqlx's own query log (`sqlx::query`
//!   tracing events, one per statement executed), caught by a subscriber installed for this
//!   test binary, for the statements that name the test's table.
//! - Round trips are counted on the wire for PostgreSQL and MariaDB: the backend connects
//!   through a TCP proxy in the test that counts the client's requests (each burst of bytes
//!   the client sends after the server spoke). A sqlx pool alone costs more: it pings every
//!   connection given back to it, which this test would count as a second round trip.

use crate::common::{
    DropLater, Fixture, HOUR, Kind, Raw, assert_end_marker_row, drop_table_later, for_each_db, n,
    now_ms, unique_table,
};
use sessionkit_core::{Changes, DeviceId, Error, Lookup, SessionBackend, SessionData};
use sessionkit_sql::SqlBackend;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every `sqlx::query` event whose SQL names a table made by these tests.
static STATEMENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
const MARK: &str = "sessions_rt_";

struct StatementLog;

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if matches!(field.name(), "summary" | "db.statement") {
            self.0.push_str(value);
            self.0.push(' ');
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "summary" | "db.statement") {
            self.0.push_str(&format!("{value:?} "));
        }
    }
}

impl Subscriber for StatementLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "sqlx::query"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = Text::default();
        event.record(&mut text);
        if text.0.contains(MARK) {
            STATEMENTS.lock().unwrap().push(text.0);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn install_statement_log() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(StatementLog)
            .expect("no other global tracing subscriber in this test binary");
    });
}

/// The statements on `table` logged while `operation` ran, by their first word.
async fn statements<T>(
    table: &str,
    operation: impl std::future::Future<Output = T>,
) -> (T, Vec<String>) {
    let mine = |log: &Vec<String>| log.iter().filter(|s| s.contains(table)).count();
    let before = mine(&STATEMENTS.lock().unwrap());
    let result = operation.await;
    let log = STATEMENTS.lock().unwrap();
    let words = log
        .iter()
        .filter(|s| s.contains(table))
        .skip(before)
        .map(|s| s.split_whitespace().next().unwrap_or_default().to_owned())
        .collect();
    (result, words)
}

for_each_db!(
    every_operation_is_one_statement,
    binding_a_user_costs_no_statement_and_listing_one_and_revoking_two,
    locks_cost_one_statement_and_a_locked_save_none_more
);

/// The session `id` as the session layer saves it: loaded, `changes` made.
async fn loaded_with<B: SessionBackend>(b: &B, id: &str, changes: &Changes) -> SessionData {
    let loaded = b.read(id).await.unwrap().unwrap();
    changes.applied_to(&loaded, now_ms() as u64 / 1000)
}

fn setting(value: u64) -> Changes {
    let mut changes = Changes::default();
    changes.set("n", serde_json::json!(value));
    changes
}

fn binding(user: Option<&str>) -> Changes {
    let mut changes = Changes::default();
    changes.set_user(user.map(Into::into));
    changes
}

/// A migrated backend on a table of its own (dropped at the end), whose statements the log
/// picks out by the table's name; the fixture whose pool it uses comes along, to outlive it.
async fn logged_table<K: Kind>() -> (Fixture<K>, SqlBackend<K::DB>, String, Option<DropLater>) {
    install_statement_log();
    let fx = Fixture::<K>::unmigrated();
    let table = unique_table(MARK.trim_end_matches('_'));
    let backend = fx.variant().with_table(&table).build().unwrap();
    let drop = drop_table_later::<K::DB>(&table);
    backend.migrate().await.unwrap();
    (fx, backend, table, drop)
}

async fn every_operation_is_one_statement<K: Kind>() {
    let (_fx, backend, table, _drop) = logged_table::<K>().await;

    let (id, sql) = statements(&table, backend.create(&n(1), HOUR)).await;
    let id = id.unwrap();
    assert_eq!(sql, ["INSERT"], "create");
    let (found, sql) = statements(&table, backend.read(&id)).await;
    assert!(found.unwrap().is_some());
    assert_eq!(sql, ["SELECT"], "read");
    let (updated, sql) = statements(&table, backend.update(&id, &n(2), HOUR)).await;
    assert_eq!(updated.unwrap(), id);
    assert_eq!(sql, ["UPDATE"], "update");
    let (exists, sql) = statements(&table, backend.exists(&id)).await;
    assert!(exists.unwrap());
    assert_eq!(sql, ["SELECT"], "exists");
    // A removal makes the row the end marker (the `update` statement) for ENDED_GRACE.
    let (removed, sql) = statements(&table, backend.remove(&id)).await;
    removed.unwrap();
    assert_eq!(sql, ["UPDATE"], "remove");
    let quoted = format!("{q}{table}{q}", q = <K::DB as Raw>::QUOTE);
    assert_end_marker_row(backend.pool(), &quoted, &id).await;
    let (missing, sql) = statements(&table, backend.read(&id)).await;
    assert!(missing.unwrap().is_none());
    assert_eq!(sql, ["SELECT"], "read of a removed session");
    let (ended, sql) = statements(&table, backend.lookup(&id)).await;
    assert!(matches!(ended, Ok(Lookup::Ended)), "{ended:?}");
    assert_eq!(sql, ["SELECT"], "lookup of a removed session");
    let never = sessionkit_core::generate_id();
    let (missing, sql) = statements(&table, backend.lookup(&never)).await;
    assert!(matches!(missing, Ok(Lookup::Missing)), "{missing:?}");
    assert_eq!(sql, ["SELECT"], "lookup of an id never stored");
    // Ids that cannot be stored cost nothing.
    let (none, sql) = statements(&table, backend.read("not an id")).await;
    assert!(none.unwrap().is_none());
    assert!(sql.is_empty(), "{sql:?}");

    // The marker is no session: `exists` says so, and an update does not bring it back.
    let (exists, sql) = statements(&table, backend.exists(&id)).await;
    assert!(!exists.unwrap(), "an end marker exists as a session");
    assert_eq!(sql, ["SELECT"], "exists of a removed session");
    let (gone, sql) = statements(&table, backend.update(&id, &n(3), HOUR)).await;
    assert!(matches!(gone, Err(Error::SessionGone)), "{gone:?}");
    assert_eq!(sql, ["UPDATE"], "update of a removed session");
    assert_end_marker_row(backend.pool(), &quoted, &id).await;
    assert!(backend.read(&id).await.unwrap().is_none());
}

/// A save never binding a user sends what it sent before the user index (one `UPDATE`), and
/// so does a save that binds, rebinds or unbinds one; listing and revoking all are one
/// statement each, revoking one by handle two (the ids, then the delete).
async fn binding_a_user_costs_no_statement_and_listing_one_and_revoking_two<K: Kind>() {
    let (_fx, backend, table, _drop) = logged_table::<K>().await;
    let b = &backend;
    let user = format!("user-{}", sessionkit_core::generate_id());

    let id = b.create(&n(1), HOUR).await.unwrap();
    let changes = setting(2);
    let session = loaded_with(b, &id, &changes).await;
    let (saved, sql) = statements(&table, b.apply(&id, &session, &changes, HOUR)).await;
    saved.unwrap();
    assert_eq!(sql, ["UPDATE"], "a save of a session bound to no user");
    for (changes, what) in [
        (binding(Some(&user)), "a save binding a user"),
        (setting(3), "a save of a bound session"),
        (binding(None), "an unbinding save"),
        (binding(Some(&user)), "a save binding again"),
    ] {
        let session = loaded_with(b, &id, &changes).await;
        let (saved, sql) = statements(&table, b.apply(&id, &session, &changes, HOUR)).await;
        saved.unwrap();
        assert_eq!(sql, ["UPDATE"], "{what}");
    }
    let mut data = n(4);
    data.set_user(Some(user.as_str().into()));
    let (other, sql) = statements(&table, b.create(&data, HOUR)).await;
    let other = other.unwrap();
    assert_eq!(sql, ["INSERT"], "a create of a bound session");
    let (updated, sql) = statements(&table, b.update(&other, &data, HOUR)).await;
    updated.unwrap();
    assert_eq!(sql, ["UPDATE"], "an update of a bound session");

    let (ids, sql) = statements(&table, b.user_session_ids(&user)).await;
    assert_eq!(ids.unwrap().len(), 2);
    assert_eq!(sql, ["SELECT"], "the ids of a user's sessions");
    let (listed, sql) = statements(&table, b.user_sessions(&user)).await;
    assert_eq!(listed.unwrap().len(), 2);
    assert_eq!(sql, ["SELECT"], "a user's sessions");
    let (revoked, sql) = statements(&table, b.revoke_user_sessions(&user, Some(&id))).await;
    assert_eq!(revoked.unwrap(), 1);
    assert_eq!(
        sql,
        ["DELETE", "SELECT"],
        "revoking a user's other sessions: the DELETE, and a listing that finds none left"
    );
    let (revoked, sql) = statements(&table, b.revoke_user_session(&user, &DeviceId::of(&id))).await;
    assert!(revoked.unwrap());
    assert_eq!(
        sql,
        ["SELECT", "DELETE"],
        "revoking one session by its handle"
    );
    let (revoked, sql) = statements(&table, b.revoke_user_sessions(&user, None)).await;
    assert_eq!(revoked.unwrap(), 0);
    assert_eq!(sql, ["DELETE", "SELECT"], "revoking a user's sessions");
}

/// Taking a lock is one `UPDATE` (and a `SELECT` when it is not taken, telling a held lock
/// from no row), giving it back one `UPDATE`, and a locked save is the save's one `UPDATE`,
/// which gives the lock back too; a locked save that matches no row costs a `SELECT` of the
/// lock to say why.
async fn locks_cost_one_statement_and_a_locked_save_none_more<K: Kind>() {
    let (_fx, backend, table, _drop) = logged_table::<K>().await;
    let b = &backend;
    let lease = Duration::from_secs(60);
    let id = b.create(&n(1), HOUR).await.unwrap();
    let value =
        |id: String| async move { b.read(&id).await.unwrap().unwrap().values()["n"].clone() };

    let (taken, sql) = statements(&table, b.try_lock(&id, "a", lease)).await;
    assert!(taken.unwrap());
    assert_eq!(sql, ["UPDATE"], "a free lock taken");
    let (taken, sql) = statements(&table, b.try_lock(&id, "a", lease)).await;
    assert!(taken.unwrap(), "the holder takes its lock again");
    assert_eq!(sql, ["UPDATE"], "a lock taken again by its holder");
    let (taken, sql) = statements(&table, b.try_lock(&id, "b", lease)).await;
    assert!(!taken.unwrap(), "a held lock was taken");
    assert_eq!(sql, ["UPDATE", "SELECT"], "a held lock");
    let never = sessionkit_core::generate_id();
    let (taken, sql) = statements(&table, b.try_lock(&never, "b", lease)).await;
    assert!(taken.unwrap(), "no row: nothing to lock");
    assert_eq!(sql, ["UPDATE", "SELECT"], "the lock of an id never stored");
    let (taken, sql) = statements(&table, b.try_lock("not an id", "b", lease)).await;
    assert!(taken.unwrap());
    assert!(sql.is_empty(), "{sql:?}");

    // Another token's save is refused; the holder's is stored and gives the lock back.
    let changes = setting(2);
    let session = loaded_with(b, &id, &changes).await;
    let (lost, sql) = statements(&table, b.apply_locked(&id, &session, &changes, HOUR, "b")).await;
    assert!(matches!(lost, Err(Error::LockLost)), "{lost:?}");
    assert_eq!(sql, ["UPDATE", "SELECT"], "a save under another's lock");
    assert_eq!(value(id.clone()).await, 1);
    let (saved, sql) = statements(&table, b.apply_locked(&id, &session, &changes, HOUR, "a")).await;
    assert_eq!(saved.unwrap(), Some(id.clone()));
    assert_eq!(sql, ["UPDATE"], "a locked save");
    assert_eq!(value(id.clone()).await, 2);
    assert!(
        b.try_lock(&id, "b", lease).await.unwrap(),
        "the save did not give the lock back"
    );
    let (unlocked, sql) = statements(&table, b.unlock(&id, "a")).await;
    unlocked.unwrap();
    assert_eq!(sql, ["UPDATE"], "an unlock by another token");
    assert!(
        !b.try_lock(&id, "c", lease).await.unwrap(),
        "another token gave the lock back"
    );
    let (unlocked, sql) = statements(&table, b.unlock(&id, "b")).await;
    unlocked.unwrap();
    assert_eq!(sql, ["UPDATE"], "an unlock");
    assert!(
        b.try_lock(&id, "c", lease).await.unwrap(),
        "the unlock did not give the lock back"
    );

    // A save of an unlocked route in between: the locked save re-applies its changes on it.
    let changes = setting(3);
    let session = loaded_with(b, &id, &changes).await;
    let mut other = Changes::default();
    other.set("m", serde_json::json!(7));
    let between = loaded_with(b, &id, &other).await;
    b.apply(&id, &between, &other, HOUR).await.unwrap();
    let (saved, sql) = statements(&table, b.apply_locked(&id, &session, &changes, HOUR, "c")).await;
    assert_eq!(saved.unwrap(), Some(id.clone()));
    assert_eq!(
        sql,
        ["UPDATE", "SELECT", "SELECT", "UPDATE"],
        "a locked save meeting an unlocked one: the lock's state, the row read again, the save"
    );
    let stored = b.read(&id).await.unwrap().unwrap();
    assert_eq!(stored.values()["n"], 3);
    assert_eq!(stored.values()["m"], 7, "the unlocked save was lost");
    assert!(
        b.try_lock(&id, "d", Duration::from_millis(1))
            .await
            .unwrap()
    );

    // A lease that ran out: the save is refused, and nothing stored.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let changes = setting(4);
    let session = loaded_with(b, &id, &changes).await;
    let (lost, sql) = statements(&table, b.apply_locked(&id, &session, &changes, HOUR, "d")).await;
    assert!(matches!(lost, Err(Error::LockLost)), "{lost:?}");
    assert_eq!(sql, ["UPDATE", "SELECT"], "a save after the lease ran out");
    assert_eq!(value(id.clone()).await, 3);

    // An emptying locked save leaves the end marker and gives the lock back.
    assert!(
        b.try_lock(&id, "e", lease).await.unwrap(),
        "a lease that ran out is free"
    );
    let mut clear = Changes::default();
    clear.clear();
    let session = loaded_with(b, &id, &clear).await;
    let (ended, sql) = statements(&table, b.apply_locked(&id, &session, &clear, HOUR, "e")).await;
    assert_eq!(ended.unwrap(), None);
    assert_eq!(sql, ["UPDATE"], "an emptying locked save");
    assert!(matches!(b.lookup(&id).await, Ok(Lookup::Ended)));
    assert!(b.try_lock(&id, "f", lease).await.unwrap());
    b.unlock(&id, "f").await.unwrap();

    // A row deleted while locked (a revocation): gone, not lost.
    let mut bound = n(5);
    bound.set_user(Some("lock-user".into()));
    let id = b.create(&bound, HOUR).await.unwrap();
    assert!(b.try_lock(&id, "g", lease).await.unwrap());
    let changes = setting(6);
    let session = loaded_with(b, &id, &changes).await;
    assert_eq!(b.revoke_user_sessions("lock-user", None).await.unwrap(), 1);
    let (gone, sql) = statements(&table, b.apply_locked(&id, &session, &changes, HOUR, "g")).await;
    assert!(matches!(gone, Err(Error::SessionGone)), "{gone:?}");
    assert_eq!(sql, ["UPDATE", "SELECT"], "a locked save of a deleted row");
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
mod wire {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A TCP proxy to a database that counts client requests: bursts of bytes from the client
    /// that follow bytes from the server (or start the connection).
    pub struct Proxy {
        pub port: u16,
        requests: Arc<AtomicU64>,
    }

    #[derive(Default)]
    struct Direction {
        server_spoke_last: AtomicBool,
    }

    impl Proxy {
        pub async fn start(upstream: (String, u16)) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let requests = Arc::new(AtomicU64::new(0));
            let counter = Arc::clone(&requests);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)).await
                    else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let direction = Arc::new(Direction {
                        server_spoke_last: AtomicBool::new(true),
                    });
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let (counter, up) = (Arc::clone(&counter), Arc::clone(&direction));
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(read @ 1..) = client_read.read(&mut buf).await {
                            if up.server_spoke_last.swap(false, Ordering::SeqCst) {
                                counter.fetch_add(1, Ordering::SeqCst);
                            }
                            if server_write.write_all(&buf[..read]).await.is_err() {
                                break;
                            }
                        }
                    });
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(read @ 1..) = server_read.read(&mut buf).await {
                            // Marked before the client can see the answer and ask again.
                            direction.server_spoke_last.store(true, Ordering::SeqCst);
                            if client_write.write_all(&buf[..read]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            Proxy { port, requests }
        }

        pub fn requests(&self) -> u64 {
            self.requests.load(Ordering::SeqCst)
        }

        /// Client requests made by `operation`, and any made in the 200 ms after it (a
        /// connection given back to a sqlx pool would be pinged then).
        pub async fn count<T>(&self, operation: impl std::future::Future<Output = T>) -> (T, u64) {
            let before = self.requests();
            let result = operation.await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            (result, self.requests() - before)
        }
    }

    pub async fn one_round_trip_each<DB: sessionkit_sql::SqlDatabase>(
        proxy: &Proxy,
        backend: sessionkit_sql::SqlBackend<DB>,
    ) {
        backend.migrate().await.unwrap();
        // The first use of each statement on a connection prepares it (one more round trip,
        // once per connection).
        let warm = backend.create(&n(0), HOUR).await.unwrap();
        backend.update(&warm, &n(0), HOUR).await.unwrap();
        backend.read(&warm).await.unwrap();
        backend.exists(&warm).await.unwrap();
        let changes = binding(Some("warm"));
        let session = loaded_with(&backend, &warm, &changes).await;
        backend
            .apply(&warm, &session, &changes, HOUR)
            .await
            .unwrap();
        backend.user_sessions("warm").await.unwrap();
        backend
            .revoke_user_sessions("warm", Some(&warm))
            .await
            .unwrap();
        backend
            .revoke_user_session("warm", &DeviceId::of(&warm))
            .await
            .unwrap();
        backend.revoke_user_sessions("warm", None).await.unwrap();
        let warm = backend.create(&n(0), HOUR).await.unwrap();
        let lease = Duration::from_secs(60);
        assert!(backend.try_lock(&warm, "warm", lease).await.unwrap());
        let changes = setting(0);
        let session = loaded_with(&backend, &warm, &changes).await;
        backend
            .apply_locked(&warm, &session, &changes, HOUR, "warm")
            .await
            .unwrap();
        backend.unlock(&warm, "warm").await.unwrap();
        backend.remove(&warm).await.unwrap();

        let (id, trips) = proxy.count(backend.create(&n(1), HOUR)).await;
        let id = id.unwrap();
        assert_eq!(trips, 1, "create");
        let (found, trips) = proxy.count(backend.read(&id)).await;
        assert!(found.unwrap().is_some());
        assert_eq!(trips, 1, "read");
        let (updated, trips) = proxy.count(backend.update(&id, &n(2), HOUR)).await;
        updated.unwrap();
        assert_eq!(trips, 1, "update");
        let (exists, trips) = proxy.count(backend.exists(&id)).await;
        assert!(exists.unwrap());
        assert_eq!(trips, 1, "exists");
        let (removed, trips) = proxy.count(backend.remove(&id)).await;
        removed.unwrap();
        assert_eq!(trips, 1, "remove");
        let (missing, trips) = proxy.count(backend.read(&id)).await;
        assert!(missing.unwrap().is_none());
        assert_eq!(trips, 1, "read of a removed session");
        let (ended, trips) = proxy.count(backend.lookup(&id)).await;
        assert!(matches!(ended, Ok(Lookup::Ended)), "{ended:?}");
        assert_eq!(trips, 1, "lookup of a removed session");
        let removed_id = id;

        // Saves, bound to a user or not, and the user's listing and revocation.
        let id = backend.create(&n(4), HOUR).await.unwrap();
        for (changes, what) in [
            (setting(5), "a save of a session bound to no user"),
            (binding(Some("rt-user")), "a save binding a user"),
            (setting(6), "a save of a bound session"),
        ] {
            let session = loaded_with(&backend, &id, &changes).await;
            let (saved, trips) = proxy
                .count(backend.apply(&id, &session, &changes, HOUR))
                .await;
            saved.unwrap();
            assert_eq!(trips, 1, "{what}");
        }
        // A locked route's lock, its save (which gives the lock back), and an unlock.
        let (taken, trips) = proxy.count(backend.try_lock(&id, "rt", lease)).await;
        assert!(taken.unwrap());
        assert_eq!(trips, 1, "a lock taken");
        let changes = setting(7);
        let session = loaded_with(&backend, &id, &changes).await;
        let (saved, trips) = proxy
            .count(backend.apply_locked(&id, &session, &changes, HOUR, "rt"))
            .await;
        saved.unwrap();
        assert_eq!(trips, 1, "a locked save");
        let (unlocked, trips) = proxy.count(backend.unlock(&id, "rt")).await;
        unlocked.unwrap();
        assert_eq!(trips, 1, "an unlock");
        let (listed, trips) = proxy.count(backend.user_sessions("rt-user")).await;
        assert_eq!(listed.unwrap().len(), 1);
        assert_eq!(trips, 1, "a user's sessions");
        let (revoked, trips) = proxy
            .count(backend.revoke_user_sessions("rt-user", None))
            .await;
        assert_eq!(revoked.unwrap(), 1);
        assert_eq!(
            trips, 2,
            "revoking a user's sessions: the DELETE and the check"
        );

        // An update of the removed session (its row the end marker): refused, one round trip.
        let (gone, trips) = proxy.count(backend.update(&removed_id, &n(3), HOUR)).await;
        assert!(matches!(gone, Err(Error::SessionGone)), "{gone:?}");
        assert_eq!(trips, 1, "update of a removed session");
        assert!(backend.read(&removed_id).await.unwrap().is_none());
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_postgres_operation_is_one_round_trip() {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use std::str::FromStr;
    let options = PgConnectOptions::from_str(&crate::common::postgres_url()).unwrap();
    let proxy = wire::Proxy::start((options.get_host().to_owned(), options.get_port())).await;
    let pool = PgPoolOptions::new().connect_lazy_with(options.host("127.0.0.1").port(proxy.port));
    let table = unique_table("sessions_test");
    let backend = sessionkit_sql::PostgresBackend::builder(pool)
        .with_table(&table)
        .build()
        .unwrap();
    let _drop = drop_table_later::<sqlx::Postgres>(&table);
    wire::one_round_trip_each(&proxy, backend).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mysql_operation_is_one_round_trip() {
    use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
    use std::str::FromStr;
    let options = MySqlConnectOptions::from_str(&crate::common::mysql_url()).unwrap();
    let proxy = wire::Proxy::start((options.get_host().to_owned(), options.get_port())).await;
    let pool =
        MySqlPoolOptions::new().connect_lazy_with(options.host("127.0.0.1").port(proxy.port));
    let table = unique_table("sessions_test");
    let backend = sessionkit_sql::MySqlBackend::builder(pool)
        .with_table(&table)
        .build()
        .unwrap();
    let _drop = drop_table_later::<sqlx::MySql>(&table);
    wire::one_round_trip_each(&proxy, backend).await;
}
