//! Databases that cannot be reached, connections that die under a running backend, and calls
//! made where they cannot work: errors that name the cause, never a panic.

use crate::common::{HOUR, n};
use sessionkit_core::{Error, SessionBackend};
use sessionkit_sql::SqlBackend;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// An id in the default format, naming no session: a read of it reaches the server.
const PLAUSIBLE_ID: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// A loopback port nothing listens on.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
    // dropped here: the port is closed again
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn assert_backend_error<T: std::fmt::Debug>(result: Result<T, Error>, starts: &str, what: &str) {
    match result {
        Err(Error::Backend { message, .. }) => {
            assert!(message.starts_with(starts), "{what}: {message}")
        }
        other => panic!("{what}: expected a backend error, got {other:?}"),
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn unreachable<DB: sessionkit_sql::SqlDatabase>(backend: SqlBackend<DB>, name: &str) {
    let started = Instant::now();
    let expected = format!("{name}: could not connect to the database within 500ms: ");
    assert_backend_error(backend.read(PLAUSIBLE_ID).await, &expected, "read");
    assert_backend_error(backend.create(&n(1), HOUR).await, &expected, "create");
    assert_backend_error(backend.update("id", &n(1), HOUR).await, &expected, "update");
    assert_backend_error(backend.remove("some-id").await, &expected, "remove");
    assert_backend_error(backend.exists("some-id").await, &expected, "exists");
    assert_backend_error(backend.migrate().await, &expected, "migrate");
    assert_backend_error(backend.delete_expired().await, &expected, "delete_expired");
    let message = backend.read(PLAUSIBLE_ID).await.unwrap_err().to_string();
    assert!(message.contains("refused"), "the cause is named: {message}");

    // Many requests at once while the database is down: all fail, none waits long.
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.read(PLAUSIBLE_ID).await })
        })
        .collect();
    for task in tasks {
        // Also those that waited for a connection slot name the cause.
        assert_backend_error(task.await.unwrap(), &expected, "concurrent read");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "failing took {:?}",
        started.elapsed()
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_fails_fast_naming_the_cause() {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&format!(
            "postgres://postgres@127.0.0.1:{}/test",
            closed_port()
        ))
        .unwrap();
    unreachable(SqlBackend::from_pool(pool), "postgres").await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_mysql_fails_fast_naming_the_cause() {
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&format!("mysql://root@127.0.0.1:{}/test", closed_port()))
        .unwrap();
    unreachable(SqlBackend::from_pool(pool), "mysql").await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_sqlite_file_that_cannot_be_opened_is_a_backend_error() {
    let backend =
        sessionkit_sql::SqliteBackend::from_url("sqlite:///nonexistent-dir/for/sure/sessions.db")
            .unwrap();
    let err = backend.read(PLAUSIBLE_ID).await.unwrap_err();
    match &err {
        Error::Backend { message, .. } => {
            assert!(message.starts_with("sqlite: "), "{message}");
            assert!(
                message.contains("unable to open database file"),
                "{message}"
            );
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_sqlite_file_survives_a_restart_of_the_app() {
    use crate::common::{Fixture, SqliteFile};
    let fx = Fixture::<SqliteFile>::new().await;
    let id = fx.backend.create(&n(5), HOUR).await.unwrap();
    fx.backend.pool().close().await;
    // A new process would build a new backend on the same file.
    let again = sessionkit_sql::SqliteBackend::builder_from_url(&fx.url)
        .with_table(&fx.table)
        .build()
        .unwrap();
    again.migrate().await.unwrap();
    assert_eq!(
        again.read(&id).await.unwrap().unwrap().values()["n"],
        serde_json::json!(5)
    );
}

#[test]
fn from_url_and_spawn_cleanup_outside_a_runtime_are_config_errors() {
    #[cfg(feature = "sqlite")]
    {
        match sessionkit_sql::SqliteBackend::from_url("sqlite::memory:") {
            Err(Error::Config(message)) => assert!(message.contains("tokio runtime"), "{message}"),
            other => panic!("expected a config error, got {other:?}"),
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let backend = runtime.block_on(async {
            sessionkit_sql::SqliteBackend::from_url("sqlite::memory:").unwrap()
        });
        assert!(matches!(
            backend.spawn_cleanup(Duration::from_secs(1)),
            Err(Error::Config(_))
        ));
    }
}

#[test]
fn urls_that_cannot_be_parsed_are_config_errors() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    #[cfg(feature = "postgres")]
    for url in ["not a url", "postgres://[::1"] {
        match sessionkit_sql::PostgresBackend::from_url(url) {
            Err(Error::Config(message)) => assert!(message.starts_with("postgres: "), "{message}"),
            other => panic!("{url}: expected a config error, got {other:?}"),
        }
    }
    #[cfg(feature = "mysql")]
    for url in ["not a url", "mysql://[::1"] {
        match sessionkit_sql::MySqlBackend::from_url(url) {
            Err(Error::Config(message)) => assert!(message.starts_with("mysql: "), "{message}"),
            other => panic!("{url}: expected a config error, got {other:?}"),
        }
    }
    #[cfg(feature = "sqlite")]
    match sessionkit_sql::SqliteBackend::from_url("sqlite://x.db?mode=bogus") {
        Err(Error::Config(message)) => assert!(message.starts_with("sqlite: "), "{message}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// Connections the backend holds are killed on the server (as a database restart would): the
/// next operations get new connections and succeed; none fails.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_replaced_without_failing_requests() {
    use crate::common::{Fixture, Postgres, Raw, random_u64};
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use std::str::FromStr;

    let fx = Fixture::<Postgres>::new().await;
    let app = format!("sessions_sql_kill_{:x}", random_u64());
    let options = PgConnectOptions::from_str(&crate::common::postgres_url())
        .unwrap()
        .application_name(&app);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_lazy_with(options);
    let backend = SqlBackend::builder(pool)
        .with_max_connections(4)
        .with_table(&fx.table)
        .build()
        .unwrap();

    let mut ids = Vec::new();
    for round in 0..3 {
        // Use several connections at once, so the backend holds more than one.
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let b = backend.clone();
                tokio::spawn(async move { b.create(&n(i), HOUR).await })
            })
            .collect();
        for task in tasks {
            ids.push(task.await.unwrap().expect("a create failed"));
        }
        let killed = sqlx::Postgres::int(
            fx.pool(),
            &format!(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = '{app}'"
            ),
        )
        .await
        .unwrap();
        assert!(killed >= 1, "round {round}: no connection to kill");
        tokio::time::sleep(Duration::from_millis(100)).await;
        for id in &ids {
            assert!(
                backend
                    .exists(id)
                    .await
                    .expect("a request failed after the kill"),
                "round {round}"
            );
        }
    }
}

/// Every connection the backend may use is stuck (here: waiting on a SQLite file another
/// process holds locked): a further request fails after the acquire timeout and says why;
/// the stuck one completes once the lock is gone.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_with_every_connection_busy_says_so() {
    use crate::common::{Fixture, SqliteFile};
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use sqlx::{Connection, Executor};
    use std::str::FromStr;

    let fx = Fixture::<SqliteFile>::new().await;
    let pool = SqlitePoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&fx.url)
        .unwrap();
    let backend = SqlBackend::builder(pool)
        .with_max_connections(1)
        .with_table(&fx.table)
        .build()
        .unwrap();
    backend.create(&n(0), HOUR).await.unwrap();

    let mut locker =
        sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::from_str(&fx.url).unwrap())
            .await
            .unwrap();
    locker.execute("BEGIN EXCLUSIVE").await.unwrap();
    let stuck = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.create(&n(1), HOUR).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    match backend.read(PLAUSIBLE_ID).await {
        Err(Error::Backend { message, .. }) => assert!(
            message.starts_with(
                "sqlite: no connection became free within 500ms (the pool's acquire timeout): \
                 all 1 connections this backend may hold are busy"
            ),
            "{message}"
        ),
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    locker.execute("COMMIT").await.unwrap();
    stuck
        .await
        .unwrap()
        .expect("the stuck write completes once the lock is gone");
}
