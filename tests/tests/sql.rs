//! starsessions' scenarios end to end over a real socket with the SQL backend: SQLite in a
//! temporary file (and PostgreSQL for the same checks), the rows inspected directly.

mod common;

use common::{Server, app, browser, plain, send};
use sessionkit_sql::sqlx::{self, Row};
use sessionkit_sql::{PostgresBackend, SqliteBackend};
use sessionkit_tower::SessionLayer;
use std::path::PathBuf;
use std::time::Duration;

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
    let stored = rows(&backend).await;
    assert_eq!(stored.len(), 1, "the old row must go: {stored:?}");
    assert_ne!(
        stored[0].0, old_id,
        "regenerate must move the data to a new id"
    );
    send(&client, &server.url("/count"), None)
        .await
        .assert_ok("4");

    let logout = send(&client, &server.url("/delete"), None).await;
    assert!(logout.cookie().is_expiry());
    assert!(
        rows(&backend).await.is_empty(),
        "logout must delete the row"
    );
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
    let cookie = send(&client, &server.url("/count-without-load"), None)
        .await
        .cookie()
        .pair();
    send(&client, &server.url("/count-without-load"), Some(&cookie))
        .await
        .assert_ok("2");
    // Emptying the session deletes its row and expires the cookie.
    let cleared = send(&client, &server.url("/clear"), Some(&cookie)).await;
    assert!(cleared.cookie().is_expiry());
    assert!(rows(&backend).await.is_empty());
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
    for expected in ["1", "2"] {
        send(&client, &server.url("/count"), None)
            .await
            .assert_ok(expected);
    }
    let count = |backend: PostgresBackend, table: String| async move {
        sqlx::query(&format!("SELECT count(*) AS n FROM {table}"))
            .fetch_one(backend.pool())
            .await
            .expect("count rows")
            .get::<i64, _>("n")
    };
    assert_eq!(count(backend.clone(), table.clone()).await, 1);
    send(&client, &server.url("/delete"), None).await;
    assert_eq!(count(backend.clone(), table.clone()).await, 0);
    let _ = sqlx::query(&format!("DROP TABLE {table}"))
        .execute(backend.pool())
        .await;
}
