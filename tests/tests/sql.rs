//! starsessions' scenarios end to end over a real socket with the SQL backend: SQLite in a
//! temporary file (and PostgreSQL for the same checks), the rows inspected directly. A session
//! that ends (a logout, an emptied session, the old id of a regenerated one) leaves its row
//! holding an end marker, unbound, for `ENDED_GRACE`; the clean-up deletes it after that.

mod common;

use common::{Server, app, browser, plain, send};
use sessionkit_core::{ENDED_GRACE, Lookup, SessionBackend};
use sessionkit_sql::sqlx::{self, Row};
use sessionkit_sql::{PostgresBackend, SqliteBackend};
use sessionkit_tower::SessionLayer;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A SQLite file of the test's own, deleted when it ends.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> TempDb {
        let name = format!("sessions-e2e-{}.db", &sessionkit_core::generate_id()[..12]);
        TempDb(std::env::temp_dir().join(name))
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

async fn sqlite(db: &TempDb) -> SqliteBackend {
    let backend = SqliteBackend::from_url(&db.url()).expect("a SQLite URL");
    backend.migrate().await.expect("migrate");
    backend
}

async fn rows(backend: &SqliteBackend) -> Vec<(String, String)> {
    sqlx::query("SELECT id, CAST(data AS TEXT) AS data FROM sessions ORDER BY id")
        .fetch_all(backend.pool())
        .await
        .expect("the sessions table")
        .iter()
        .map(|row| (row.get("id"), row.get("data")))
        .collect()
}

/// The rows that hold a session, not an end marker (version -1).
async fn live_rows(backend: &SqliteBackend) -> Vec<(String, String)> {
    sqlx::query(
        "SELECT id, CAST(data AS TEXT) AS data FROM sessions WHERE version >= 0 ORDER BY id",
    )
    .fetch_all(backend.pool())
    .await
    .expect("the sessions table")
    .iter()
    .map(|row| (row.get("id"), row.get("data")))
    .collect()
}

/// Fail unless a row whose columns are `version`, `data`, `expires_at` and `user_id` is an
/// end marker: version -1, no data, unbound, expiring within [`ENDED_GRACE`] from now.
fn assert_end_marker(
    id: &str,
    (version, data): (i64, &[u8]),
    expires_at: Option<i64>,
    user_id: Option<&str>,
) {
    assert_eq!(version, -1, "row {id} is no end marker");
    assert!(data.is_empty(), "the end marker of {id} holds data");
    assert_eq!(user_id, None, "the end marker of {id} is bound to a user");
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("a date in range");
    let grace = i64::try_from(ENDED_GRACE.as_millis()).expect("a short grace");
    let expires_at = expires_at.expect("an end marker expires");
    assert!(
        expires_at > now && expires_at <= now + grace,
        "the end marker of {id} expires in {} ms",
        expires_at - now
    );
}

/// Fail unless the session `id` ended: its row holds the end marker, and the backend reads
/// it as no session, one that ended moments ago.
async fn assert_ended<B: SessionBackend>(backend: &B, id: &str) {
    assert!(
        backend.read(id).await.expect("read").is_none(),
        "the ended session {id} reads as a session"
    );
    let looked_up = backend.lookup(id).await.expect("lookup");
    assert!(matches!(looked_up, Lookup::Ended), "{id}: {looked_up:?}");
}

/// [`assert_ended`], and the SQLite row of `id` checked.
async fn assert_ended_row(backend: &SqliteBackend, id: &str) {
    let (version, data, expires_at, user_id): (i64, Vec<u8>, Option<i64>, Option<String>) =
        sqlx::query_as("SELECT version, data, expires_at, user_id FROM sessions WHERE id = ?1")
            .bind(id)
            .fetch_one(backend.pool())
            .await
            .expect("the ended session's row");
    assert_end_marker(id, (version, &data), expires_at, user_id.as_deref());
    assert_ended(backend, id).await;
}

#[tokio::test]
async fn sqlite_counter_logout_and_regenerate_over_http() {
    let db = TempDb::new();
    let backend = sqlite(&db).await;
    let server = Server::start(app(SessionLayer::builder(backend.clone())
        .with_secure(false)
        .build()
        .unwrap()))
    .await;
    let client = browser();
    for expected in ["1", "2", "3"] {
        send(&client, &server.url("/count"), None)
            .await
            .assert_ok(expected);
    }
    let stored = rows(&backend).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        stored[0].1.contains("\"n\":3"),
        "rows hold plain JSON: {}",
        stored[0].1
    );
    let old_id = stored[0].0.clone();

    send(&client, &server.url("/regenerate"), None).await;
    let live = live_rows(&backend).await;
    assert_eq!(live.len(), 1, "one session: {live:?}");
    assert_ne!(
        live[0].0, old_id,
        "regenerate must move the data to a new id"
    );
    let new_id = live[0].0.clone();
    // The old row holds the end marker.
    assert_ended_row(&backend, &old_id).await;
    assert_eq!(
        rows(&backend).await.len(),
        2,
        "the session and the old id's marker"
    );
    send(&client, &server.url("/count"), None)
        .await
        .assert_ok("4");

    let logout = send(&client, &server.url("/delete"), None).await;
    assert!(logout.cookie().is_expiry());
    let live = live_rows(&backend).await;
    assert!(live.is_empty(), "logout must end the session: {live:?}");
    assert_ended_row(&backend, &new_id).await;
    assert_ended_row(&backend, &old_id).await;
    assert_eq!(rows(&backend).await.len(), 2, "the two end markers");
    send(&client, &server.url("/count"), None)
        .await
        .assert_ok("1");
}

#[tokio::test]
async fn sqlite_sessions_survive_an_app_restart() {
    let db = TempDb::new();
    let cookie = {
        let server = Server::start(app(SessionLayer::new(sqlite(&db).await))).await;
        send(&plain(), &server.url("/put/41"), None)
            .await
            .cookie()
            .pair()
    };
    // A new backend on the same file: a restarted app.
    let server = Server::start(app(SessionLayer::new(sqlite(&db).await))).await;
    send(&plain(), &server.url("/get"), Some(&cookie))
        .await
        .assert_ok("41");
}

#[tokio::test]
async fn sqlite_autoload_emptied_session_and_unknown_ids() {
    let db = TempDb::new();
    let backend = sqlite(&db).await;
    let layer = SessionLayer::builder(backend.clone())
        .with_autoload(true)
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let made = send(&client, &server.url("/count-without-load"), None)
        .await
        .cookie()
        .clone();
    let cookie = made.pair();
    send(&client, &server.url("/count-without-load"), Some(&cookie))
        .await
        .assert_ok("2");
    // Emptying the session ends it, its row holding the end marker, and expires the cookie.
    let cleared = send(&client, &server.url("/clear"), Some(&cookie)).await;
    assert!(cleared.cookie().is_expiry());
    assert!(live_rows(&backend).await.is_empty());
    assert_ended_row(&backend, &made.value).await;
    assert_eq!(rows(&backend).await.len(), 1, "the end marker");
    // A made-up id is not adopted: the next write gets a fresh one.
    let made_up = format!("session={}", sessionkit_core::generate_id());
    let reply = send(&client, &server.url("/count-without-load"), Some(&made_up)).await;
    reply.assert_ok("1");
    assert_ne!(reply.cookie().pair(), made_up);
}

#[tokio::test]
async fn sqlite_rows_expire_with_max_age_and_are_cleaned_up() {
    let db = TempDb::new();
    let clock = sessionkit_core::Clock::manual_from_now();
    let backend = SqliteBackend::builder_from_url(&db.url())
        .with_clock(clock.clone())
        .build()
        .expect("a SQLite URL");
    backend.migrate().await.expect("migrate");
    let layer = SessionLayer::builder(backend.clone())
        .with_clock(clock.clone())
        .with_max_age(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    clock.advance(Duration::from_millis(1300));
    // Expired: reads as a fresh session even though the row is still there.
    send(&client, &server.url("/get"), Some(&cookie))
        .await
        .assert_ok("none");
    assert_eq!(backend.delete_expired().await.expect("cleanup"), 1);
    assert!(rows(&backend).await.is_empty());
}

#[tokio::test]
async fn postgres_counter_and_logout_over_http() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let table = format!(
        "sessions_e2e_{}",
        sessionkit_core::generate_id()[..10]
            .to_lowercase()
            .replace('-', "_")
    );
    let backend = PostgresBackend::builder_from_url(&url)
        .with_table(&table)
        .build()
        .expect("a Postgres URL and a valid table name");
    backend.migrate().await.expect("migrate");
    let server = Server::start(app(SessionLayer::builder(backend.clone())
        .with_secure(false)
        .build()
        .unwrap()))
    .await;
    let client = browser();
    let first = send(&client, &server.url("/count"), None).await;
    first.assert_ok("1");
    let id = first.cookie().value.clone();
    send(&client, &server.url("/count"), None)
        .await
        .assert_ok("2");
    let count = |backend: PostgresBackend, table: String| async move {
        sqlx::query(&format!("SELECT count(*) AS n FROM {table}"))
            .fetch_one(backend.pool())
            .await
            .expect("count rows")
            .get::<i64, _>("n")
    };
    assert_eq!(count(backend.clone(), table.clone()).await, 1);
    let logout = send(&client, &server.url("/delete"), None).await;
    assert!(logout.cookie().is_expiry());
    // The one row left is the session's end marker.
    assert_eq!(count(backend.clone(), table.clone()).await, 1);
    let (version, data, expires_at, user_id): (i64, Vec<u8>, Option<i64>, Option<String>) =
        sqlx::query_as(&format!(
            "SELECT version, data, expires_at, user_id FROM {table} WHERE id = $1"
        ))
        .bind(&id)
        .fetch_one(backend.pool())
        .await
        .expect("the ended session's row");
    assert_end_marker(&id, (version, &data), expires_at, user_id.as_deref());
    assert_ended(&backend, &id).await;
    let _ = sqlx::query(&format!("DROP TABLE {table}"))
        .execute(backend.pool())
        .await;
}
