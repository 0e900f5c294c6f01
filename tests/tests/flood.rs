//! Hostile traffic: a flood of one-shot sessions (anonymous requests to a page that writes the
//! session, never coming back) against a layer with a probation. It must neither evict a
//! returning user's session nor leave long-lived records behind: memory, Redis and SQLite.
//! Bounded (2,000 requests) and on loopback.

mod common;

use axum::Router;
use axum::routing::get;
use common::{Server, plain, send};
use reqwest::StatusCode;
use sessionkit_core::SessionBackend;
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Error, Session, SessionLayer};
use std::time::Duration;

const FLOOD: usize = 2_000;
const PROBATION: Duration = Duration::from_secs(30);
const MAX_AGE: Duration = Duration::from_secs(3_600);

/// A page that writes the session: a visit counter.
fn app<B: SessionBackend>(backend: B) -> Router {
    Router::new()
        .route(
            "/visit",
            get(|session: Session| async move {
                let n: u64 = session.get("n")?.unwrap_or(0) + 1;
                session.insert("n", n)?;
                Ok::<_, Error>(n.to_string())
            }),
        )
        .route(
            "/read",
            get(|session: Session| async move {
                Ok::<_, Error>(session.get::<u64>("n")?.unwrap_or(0).to_string())
            }),
        )
        .layer(
            SessionLayer::builder(backend)
                .with_secure(false)
                .with_max_age(MAX_AGE)
                .with_probation(PROBATION)
                .build()
                .unwrap(),
        )
}

/// The user's session (created, then come back once: out of probation), then the flood.
/// Returns the user's cookie pair.
async fn user_then_flood(server: &Server) -> String {
    let http = plain();
    let first = send(&http, &server.url("/visit"), None).await;
    first.assert_ok("1");
    let cookie = first.cookie().pair();
    // Coming back with the cookie, only reading: the session is saved once more, in full.
    send(&http, &server.url("/read"), Some(&cookie))
        .await
        .assert_ok("1");
    for _ in 0..FLOOD {
        let reply = send(&http, &server.url("/visit"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    cookie
}

#[tokio::test]
async fn memory_a_flood_does_not_evict_a_returning_user() {
    let backend = InMemoryBackend::new().with_max_sessions(500);
    let server = Server::start(app(backend.clone())).await;
    let cookie = user_then_flood(&server).await;
    assert_eq!(backend.len(), 500, "the store stayed bounded");
    send(&plain(), &server.url("/visit"), Some(&cookie))
        .await
        .assert_ok("2");
}

#[tokio::test]
async fn redis_a_flood_leaves_no_long_lived_keys() {
    use sessionkit_redis::deadpool_redis::redis;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("sessions-flood:{}:", sessionkit_core::generate_id());
    let backend = sessionkit_redis::RedisBackend::from_url(&url)
        .unwrap()
        .with_prefix(prefix.as_str());
    let server = Server::start(app(backend)).await;
    let cookie = user_then_flood(&server).await;
    let user_key = format!("{prefix}{}", cookie.split_once('=').unwrap().1);

    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(keys.len(), FLOOD + 1);
    let mut long_lived = Vec::new();
    for key in &keys {
        let pttl: i64 = redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
        if *key == user_key {
            assert!(
                pttl > PROBATION.as_millis() as i64,
                "the user's key kept its probation"
            );
        } else if pttl > PROBATION.as_millis() as i64 || pttl < 0 {
            long_lived.push(pttl);
        }
    }
    for key in &keys {
        let _: i64 = redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
    }
    assert!(
        long_lived.is_empty(),
        "flood keys outlive the probation: {long_lived:?}"
    );
}

#[tokio::test]
async fn sqlite_a_flood_leaves_no_long_lived_rows() {
    use sessionkit_sql::sqlx;
    let file = std::env::temp_dir().join(format!(
        "sessions-flood-{}.db",
        &sessionkit_core::generate_id()[..12]
    ));
    let backend =
        sessionkit_sql::SqliteBackend::builder_from_url(&format!("sqlite://{}", file.display()))
            .with_max_connections(5)
            .build()
            .unwrap();
    backend.migrate().await.unwrap();
    let server = Server::start(app(backend.clone())).await;
    let cookie = user_then_flood(&server).await;
    let user = cookie.split_once('=').unwrap().1.to_owned();
    let now_ms = sessionkit_core::Clock::system().unix_millis() as i64;
    let horizon = now_ms + PROBATION.as_millis() as i64;
    let long_lived: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sessions WHERE id <> ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    )
    .bind(&user)
    .bind(horizon)
    .fetch_one(backend.pool())
    .await
    .unwrap();
    let user_expires: i64 = sqlx::query_scalar("SELECT expires_at FROM sessions WHERE id = ?1")
        .bind(&user)
        .fetch_one(backend.pool())
        .await
        .unwrap();
    drop(server);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    assert_eq!(long_lived, 0, "flood rows outlive the probation");
    assert!(user_expires > horizon, "the user's row kept its probation");
}
