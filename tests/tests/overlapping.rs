//! Overlapping requests on one session lose nothing: 50 clients each send 8 requests at once
//! with the same session cookie, each setting a key of its own, and every key is there
//! afterwards. The 8 requests all load the session before any of them saves (a barrier holds
//! them), the worst case for a store that writes whole records. Over a real socket, on every
//! server-side backend: memory, Redis, SQLite, PostgreSQL and MariaDB.

mod common;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use common::{Server, plain, send};
use reqwest::StatusCode;
use sessionkit_core::SessionBackend;
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Error, Session, SessionLayer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

const CLIENTS: usize = 50;
const OVERLAPPING: usize = 8;

/// Counts the backends' "another save came in between" events, by store: how often a save
/// had to apply its changes again. Installed once for the whole test binary.
#[derive(Default)]
struct Retries(Mutex<HashMap<String, u64>>);

impl Retries {
    fn global() -> &'static Retries {
        static RETRIES: std::sync::OnceLock<&'static Retries> = std::sync::OnceLock::new();
        RETRIES.get_or_init(|| {
            let retries: &'static Retries = Box::leak(Box::default());
            let _ = tracing::subscriber::set_global_default(RetryCounter(retries));
            retries
        })
    }

    fn of(&self, store: &str) -> u64 {
        self.0.lock().unwrap().get(store).copied().unwrap_or(0)
    }
}

struct RetryCounter(&'static Retries);

/// The `store` field of a retry event.
#[derive(Default)]
struct StoreField(Option<String>, bool);

impl tracing::field::Visit for StoreField {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "store" {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.1 = format!("{value:?}").contains("another save came in between");
        }
    }
}

impl tracing::Subscriber for RetryCounter {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_event()
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = StoreField::default();
        event.record(&mut fields);
        if let StoreField(Some(store), true) = fields {
            *self.0.0.lock().unwrap().entry(store).or_default() += 1;
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// One barrier per client: its requests wait there, loaded, until all of them are.
#[derive(Clone, Default)]
struct Barriers(Arc<Mutex<HashMap<String, Arc<Barrier>>>>);

impl Barriers {
    fn of(&self, client: &str) -> Arc<Barrier> {
        let mut map = self.0.lock().expect("the barrier map");
        Arc::clone(
            map.entry(client.to_owned())
                .or_insert_with(|| Arc::new(Barrier::new(OVERLAPPING))),
        )
    }
}

fn routes<B: SessionBackend>(layer: SessionLayer<B>) -> Router {
    let barriers = Barriers::default();
    Router::new()
        .route(
            "/start",
            get(|session: Session| async move {
                session.insert("start", true)?;
                Ok::<_, Error>("started")
            }),
        )
        .route(
            "/set/{client}/{key}",
            get(
                move |session: Session, Path((client, key)): Path<(String, String)>| {
                    let barrier = barriers.of(&client);
                    async move {
                        // Every request of this client has loaded the same record now.
                        barrier.wait().await;
                        session.insert(&key, true)?;
                        Ok::<_, Error>("set")
                    }
                },
            ),
        )
        .route(
            "/keys",
            get(|session: Session| async move { Ok::<_, Error>(session.keys().join(",")) }),
        )
        .layer(layer)
}

/// Run the clients against `layer`'s backend; every key each client set must be there. Prints
/// how many times a save had to apply its changes again (`store` names the backend's events).
async fn overlapping_saves_keep_every_key<B: SessionBackend>(backend: B, store: &str) {
    let retries_before = Retries::global().of(store);
    let server = Arc::new(
        Server::start(routes(
            SessionLayer::builder(backend)
                .with_secure(false)
                .build()
                .unwrap(),
        ))
        .await,
    );
    let mut clients = JoinSet::new();
    for client in 0..CLIENTS {
        let server = Arc::clone(&server);
        clients.spawn(async move {
            let http = plain();
            let started = send(&http, &server.url("/start"), None).await;
            assert_eq!(started.status, StatusCode::OK, "{}", started.body);
            let cookie = started.cookie().pair();
            let mut requests = JoinSet::new();
            for key in 0..OVERLAPPING {
                let (http, url, cookie) = (
                    http.clone(),
                    server.url(&format!("/set/c{client}/k{key}")),
                    cookie.clone(),
                );
                requests.spawn(async move { send(&http, &url, Some(&cookie)).await });
            }
            while let Some(reply) = requests.join_next().await {
                let reply = reply.expect("a request task");
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            }
            let keys = send(&http, &server.url("/keys"), Some(&cookie)).await;
            assert_eq!(keys.status, StatusCode::OK, "{}", keys.body);
            let mut expected: Vec<String> = (0..OVERLAPPING).map(|k| format!("k{k}")).collect();
            expected.push("start".to_owned());
            expected.sort();
            assert_eq!(keys.body, expected.join(","), "client {client} lost keys");
        });
    }
    let mut done = 0;
    while let Some(result) = clients.join_next().await {
        result.expect("a client task");
        done += 1;
    }
    assert_eq!(done, CLIENTS);
    let saves = CLIENTS * OVERLAPPING;
    let retries = Retries::global().of(store) - retries_before;
    println!(
        "{store}: {saves} overlapping saves, {retries} applied again ({:.2} a save)",
        retries as f64 / saves as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    overlapping_saves_keep_every_key(InMemoryBackend::new(), "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("sessions-overlap:{}:", sessionkit_core::generate_id());
    let backend = sessionkit_redis::RedisBackend::from_url(&url)
        .unwrap()
        .with_prefix(prefix.as_str());
    overlapping_saves_keep_every_key(backend, "redis").await;
    // Clean up this test's keys.
    let client = sessionkit_redis::deadpool_redis::redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys: Vec<String> = sessionkit_redis::deadpool_redis::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(keys.len(), CLIENTS, "one key per client's session");
    for key in keys {
        let _: i64 = sessionkit_redis::deadpool_redis::redis::cmd("DEL")
            .arg(key)
            .query(&mut conn)
            .unwrap();
    }
}

/// A table of the test's own, dropped at the end.
async fn sql<DB: sessionkit_sql::SqlDatabase>(url: &str, quote: char)
where
    for<'c> &'c mut DB::Connection: sessionkit_sql::sqlx::Executor<'c, Database = DB>,
{
    let table = format!(
        "overlap_{}",
        &sessionkit_core::generate_id()[..10]
            .to_lowercase()
            .replace('-', "_")
    );
    let backend = sessionkit_sql::SqlBackend::<DB>::builder_from_url(url)
        .with_table(&table)
        // Leave the pool a connection for the test's own DROP TABLE.
        .with_max_connections(5)
        .build()
        .unwrap();
    backend.migrate().await.unwrap();
    overlapping_saves_keep_every_key(backend.clone(), DB::LABEL).await;
    let drop = format!("DROP TABLE {quote}{table}{quote}");
    sessionkit_sql::sqlx::raw_sql(&drop)
        .execute(backend.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let file = std::env::temp_dir().join(format!(
        "sessions-overlap-{}.db",
        &sessionkit_core::generate_id()[..12]
    ));
    sql::<sessionkit_sql::sqlx::Sqlite>(&format!("sqlite://{}", file.display()), '"').await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    sql::<sessionkit_sql::sqlx::Postgres>(&url, '"').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb() {
    let url =
        std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    sql::<sessionkit_sql::sqlx::MySql>(&url, '`').await;
}
