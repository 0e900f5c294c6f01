//! The session's life end to end over a real socket, through `SessionLayer` with
//! `RedisBackend` on the real Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`):
//! starsessions' scenarios with autoload off (the handler calls `load()`) and on, Redis unreachable,
//! a record deleted behind the layer's back, and made-up ids. A session that ends (a logout, an
//! emptied session, the old id of a regenerated one) leaves its key holding an end marker for
//! `ENDED_GRACE`, which reads as no session.
//!
//! Each test stores its records under a key prefix of its own and deletes every key under it
//! when it ends, failed or not. The shared Redis is never stopped or flushed.

mod common;

use axum::Router;
use axum::routing::get;
use common::*;
use reqwest::StatusCode;
use sessionkit_core::{ENDED_GRACE, Lookup, SessionBackend};
use sessionkit_redis::RedisBackend;
use sessionkit_redis::deadpool_redis::redis;
use sessionkit_tower::{Error, Session, SessionLayer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The layer's `max_age`, chosen to be unlike any default (14 days cookie, no backend expire),
/// so a TTL equal to it can only come from the layer.
const MAX_AGE: Duration = Duration::from_secs(4321);

// ---------------------------------------------------------------------------------------------
// Redis, seen from the test

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn connect() -> redis::Connection {
    let url = redis_url();
    redis::Client::open(url.as_str())
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("cannot connect to the Redis at {url}: {e}"))
}

/// One test's corner of the shared Redis: a unique key prefix, and what the test checks under
/// it. Every key under the prefix is deleted when this is dropped, also when the test fails.
struct Keys {
    prefix: String,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            prefix: format!("sessions-e2e:{}:", sessionkit_core::generate_id()),
        }
    }

    /// A backend on the shared Redis that stores under this prefix.
    fn backend(&self) -> RedisBackend {
        RedisBackend::from_url(&redis_url())
            .expect("a valid REDIS_URL")
            .with_prefix(self.prefix.as_str())
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// Whether the session's key exists (holding a record or an end marker).
    fn exists(&self, id: &str) -> bool {
        let n: i64 = redis::cmd("EXISTS")
            .arg(self.key(id))
            .query(&mut connect())
            .expect("EXISTS");
        n == 1
    }

    /// `PTTL` of the session's key: milliseconds left, -1 without expiry, -2 when absent.
    fn pttl(&self, id: &str) -> i64 {
        redis::cmd("PTTL")
            .arg(self.key(id))
            .query(&mut connect())
            .expect("PTTL")
    }

    /// The stored bytes of the session, if its key exists.
    fn raw(&self, id: &str) -> Option<Vec<u8>> {
        redis::cmd("GET")
            .arg(self.key(id))
            .query(&mut connect())
            .expect("GET")
    }

    /// The `data` object of the session's JSON record.
    fn data(&self, id: &str) -> serde_json::Value {
        let raw = self
            .raw(id)
            .unwrap_or_else(|| panic!("no record under {}", self.key(id)));
        let record: serde_json::Value =
            serde_json::from_slice(&raw).expect("a JSON session record");
        record["data"].clone()
    }

    /// Fail unless the session's key holds the end marker of a session that ended, expiring
    /// within `ENDED_GRACE`, and the backend reads it as no session that ended moments ago.
    async fn assert_ended(&self, id: &str) {
        let key = self.key(id);
        assert_eq!(
            self.raw(id).as_deref(),
            Some(ENDED_MARKER),
            "{key} holds no end marker"
        );
        let pttl = self.pttl(id);
        let grace = i64::try_from(ENDED_GRACE.as_millis()).expect("a short grace");
        assert!(
            pttl > 0 && pttl <= grace,
            "{key}: the end marker's PTTL is {pttl} ms"
        );
        let backend = self.backend();
        assert!(
            backend.read(id).await.expect("read").is_none(),
            "{key}: an end marker reads as a session"
        );
        assert!(
            !backend.exists(id).await.expect("exists"),
            "{key}: an end marker exists as a session"
        );
        let looked_up = backend.lookup(id).await.expect("lookup");
        assert!(matches!(looked_up, Lookup::Ended), "{key}: {looked_up:?}");
    }

    /// Delete the session's key behind the layer's back; how many keys went.
    fn del(&self, id: &str) -> i64 {
        redis::cmd("DEL")
            .arg(self.key(id))
            .query(&mut connect())
            .expect("DEL")
    }

    /// Every key under the prefix, sorted.
    fn all(&self) -> Vec<String> {
        let mut conn = connect();
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
                .expect("SCAN");
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        // Best effort, and never a panic while a failed test unwinds.
        let Ok(mut conn) = redis::Client::open(redis_url().as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
        else {
            return;
        };
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, batch)) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query::<(u64, Vec<Vec<u8>>)>(&mut conn)
            else {
                return;
            };
            for key in batch {
                let _ = redis::cmd("DEL").arg(key).query::<i64>(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// What a key holds for `ENDED_GRACE` after its session ended.
const ENDED_MARKER: &[u8] = b"\0sessionkit:ended";

/// A loopback port nothing listens on: bound, then let go.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("the bound address").port();
    drop(listener);
    port
}

/// A backend pointed at a closed port, failing within a short pool timeout.
fn unreachable_backend() -> RedisBackend {
    RedisBackend::from_url(&format!("redis://127.0.0.1:{}", closed_port()))
        .expect("a valid URL")
        .with_prefix("sessions-e2e:unreachable:")
        .with_pool_timeout(Duration::from_millis(300))
}

// ---------------------------------------------------------------------------------------------
// The app

/// Reads `n` without `load()`: with autoload on, the layer has loaded already.
async fn get_unloaded(session: Session) -> Result<String, Error> {
    Ok(session
        .get::<u64>("n")?
        .map_or_else(|| "none".to_owned(), |n| n.to_string()))
}

/// Empties the session without `load()`.
async fn clear_unloaded(session: Session) -> Result<&'static str, Error> {
    session.clear()?;
    Ok("cleared")
}

/// Regenerates the id without `load()`.
async fn regenerate_unloaded(session: Session) -> Result<String, Error> {
    session.regenerate_id()?;
    get_unloaded(session).await
}

/// The common routes, and the handlers above for autoload.
fn redis_routes() -> Router {
    routes()
        .route("/get-unloaded", get(get_unloaded))
        .route("/clear-unloaded", get(clear_unloaded))
        .route("/regenerate-unloaded", get(regenerate_unloaded))
}

/// How the handlers get their session loaded.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// Autoload off: every handler calls `session.load().await`.
    Explicit,
    /// Autoload on: the handlers never call `load()`.
    Auto,
}

impl Load {
    /// The layer under test: Redis-backed, autoload as `self`, a cookie that a reqwest cookie
    /// store sends back over plain http, and [`MAX_AGE`].
    fn layer(self, backend: RedisBackend) -> SessionLayer<RedisBackend> {
        SessionLayer::builder(backend)
            .with_secure(false)
            .with_max_age(MAX_AGE)
            .with_autoload(matches!(self, Load::Auto))
            .build()
            .unwrap()
    }

    fn app(self, keys: &Keys) -> Router {
        redis_routes().layer(self.layer(keys.backend()))
    }

    /// The path of the handler doing `what` in this mode.
    fn path(self, what: &str) -> &'static str {
        match (self, what) {
            (Load::Explicit, "count") => "/count",
            (Load::Explicit, "get") => "/get",
            (Load::Explicit, "clear") => "/clear",
            (Load::Explicit, "regenerate") => "/regenerate",
            (Load::Auto, "count") => "/count-without-load",
            (Load::Auto, "get") => "/get-unloaded",
            (Load::Auto, "clear") => "/clear-unloaded",
            (Load::Auto, "regenerate") => "/regenerate-unloaded",
            // Deletes without loading first either way.
            (_, "delete") => "/delete",
            _ => panic!("no {what} handler"),
        }
    }
}

/// Start a session with one `count` request; its cookie.
async fn start_session(load: Load, server: &Server) -> SetCookie {
    let reply = send(&plain(), &server.url(load.path("count")), None).await;
    reply.assert_ok("1");
    let cookie = reply.cookie().clone();
    assert_eq!(cookie.name, "session");
    assert!(!cookie.value.is_empty(), "no id in {}", cookie.raw);
    cookie
}

/// Whether `pttl` (ms) is the layer's max age, give or take the test's own latency.
fn is_max_age(pttl: i64) -> bool {
    let max = i64::try_from(MAX_AGE.as_millis()).expect("a small max age");
    (max - 3_000..=max).contains(&pttl)
}

// ---------------------------------------------------------------------------------------------
// starsessions' scenarios, autoload off and on

async fn counter_survives_across_requests(load: Load) {
    let keys = Keys::new();
    let server = Server::start(load.app(&keys)).await;
    let client = browser();
    let first = send(&client, &server.url(load.path("count")), None).await;
    first.assert_ok("1");
    let id = first.cookie().value.clone();
    for expected in ["2", "3"] {
        send(&client, &server.url(load.path("count")), None)
            .await
            .assert_ok(expected);
    }
    send(&client, &server.url(load.path("get")), None)
        .await
        .assert_ok("3");
    assert_eq!(
        keys.all(),
        vec![keys.key(&id)],
        "one client, one record, under the first id"
    );
    assert_eq!(keys.data(&id), serde_json::json!({ "n": 3 }));
}

#[tokio::test]
async fn counter_survives_across_requests_autoload_off() {
    counter_survives_across_requests(Load::Explicit).await;
}

#[tokio::test]
async fn counter_survives_across_requests_autoload_on() {
    counter_survives_across_requests(Load::Auto).await;
}

async fn record_lives_under_prefix_and_id_with_ttl_of_max_age(load: Load) {
    let keys = Keys::new();
    let server = Server::start(load.app(&keys)).await;
    let cookie = start_session(load, &server).await;
    assert_eq!(cookie.attr("Max-Age"), Some("4321"), "{}", cookie.raw);
    assert_eq!(keys.all(), vec![keys.key(&cookie.value)]);
    assert_eq!(keys.data(&cookie.value), serde_json::json!({ "n": 1 }));
    let created = keys.pttl(&cookie.value);
    assert!(is_max_age(created), "PTTL after create: {created} ms");

    // An update renews the TTL.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let aged = keys.pttl(&cookie.value);
    assert!(
        aged < created - 1_000,
        "the TTL did not run down: {aged} ms"
    );
    let reply = send(
        &plain(),
        &server.url(load.path("count")),
        Some(&cookie.pair()),
    )
    .await;
    reply.assert_ok("2");
    assert_eq!(reply.cookie().value, cookie.value, "an update keeps the id");
    let renewed = keys.pttl(&cookie.value);
    assert!(
        is_max_age(renewed) && renewed > aged + 1_000,
        "an update did not renew the TTL: {aged} ms before, {renewed} ms after"
    );
    assert_eq!(keys.all(), vec![keys.key(&cookie.value)]);
}

#[tokio::test]
async fn record_lives_under_prefix_and_id_with_ttl_of_max_age_autoload_off() {
    record_lives_under_prefix_and_id_with_ttl_of_max_age(Load::Explicit).await;
}

#[tokio::test]
async fn record_lives_under_prefix_and_id_with_ttl_of_max_age_autoload_on() {
    record_lives_under_prefix_and_id_with_ttl_of_max_age(Load::Auto).await;
}

async fn read_only_request_neither_writes_nor_renews_ttl(load: Load) {
    let keys = Keys::new();
    let server = Server::start(load.app(&keys)).await;
    let cookie = start_session(load, &server).await;
    let stored = keys.raw(&cookie.value).expect("the record");

    // Long enough that a write would show: a renewed TTL and a new `accessed` second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let before = keys.pttl(&cookie.value);
    let reply = send(
        &plain(),
        &server.url(load.path("get")),
        Some(&cookie.pair()),
    )
    .await;
    reply.assert_ok("1");
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    let after = keys.pttl(&cookie.value);
    assert!(
        after <= before && after > 0,
        "a read-only request renewed the TTL: {before} ms before, {after} ms after"
    );
    assert_eq!(
        keys.raw(&cookie.value).as_deref(),
        Some(stored.as_slice()),
        "a read-only request rewrote the record"
    );
    assert_eq!(keys.all(), vec![keys.key(&cookie.value)]);
}

#[tokio::test]
async fn read_only_request_neither_writes_nor_renews_ttl_autoload_off() {
    read_only_request_neither_writes_nor_renews_ttl(Load::Explicit).await;
}

#[tokio::test]
async fn read_only_request_neither_writes_nor_renews_ttl_autoload_on() {
    read_only_request_neither_writes_nor_renews_ttl(Load::Auto).await;
}

async fn logout_leaves_an_end_marker_and_expires_cookie(load: Load) {
    let keys = Keys::new();
    let server = Server::start(load.app(&keys)).await;
    let cookie = start_session(load, &server).await;
    assert!(keys.exists(&cookie.value));

    let reply = send(
        &plain(),
        &server.url(load.path("delete")),
        Some(&cookie.pair()),
    )
    .await;
    reply.assert_ok("deleted");
    let expiry = reply.cookie();
    assert_eq!(expiry.name, "session");
    assert!(expiry.is_expiry(), "not an expiry: {}", expiry.raw);
    assert_eq!(expiry.attr("Path"), Some("/"));
    keys.assert_ended(&cookie.value).await;
    assert_eq!(keys.all(), vec![keys.key(&cookie.value)]);

    // The old cookie, sent again within the grace (as by a request that overlapped the
    // logout), opens nothing and creates nothing, and its cookie is left to the logout's
    // answer.
    let stale = send(
        &plain(),
        &server.url(load.path("get")),
        Some(&cookie.pair()),
    )
    .await;
    stale.assert_ok("none");
    assert!(stale.set_cookies.is_empty(), "{:?}", stale.set_cookies);
    let stale_write = send(
        &plain(),
        &server.url(load.path("count")),
        Some(&cookie.pair()),
    )
    .await;
    stale_write.assert_ok("1");
    assert!(
        stale_write.set_cookies.is_empty(),
        "{:?}",
        stale_write.set_cookies
    );
    keys.assert_ended(&cookie.value).await;
    assert_eq!(keys.all(), vec![keys.key(&cookie.value)]);
}

#[tokio::test]
async fn logout_leaves_an_end_marker_and_expires_cookie_autoload_off() {
    logout_leaves_an_end_marker_and_expires_cookie(Load::Explicit).await;
}

#[tokio::test]
async fn logout_leaves_an_end_marker_and_expires_cookie_autoload_on() {
    logout_leaves_an_end_marker_and_expires_cookie(Load::Auto).await;
}

async fn regenerate_moves_data_to_new_key_and_ends_old(load: Load) {
    let keys = Keys::new();
    let server = Server::start(load.app(&keys)).await;
    let old = start_session(load, &server).await;
    send(&plain(), &server.url(load.path("count")), Some(&old.pair()))
        .await
        .assert_ok("2");

    let reply = send(
        &plain(),
        &server.url(load.path("regenerate")),
        Some(&old.pair()),
    )
    .await;
    reply.assert_ok("2");
    let new = reply.cookie().clone();
    assert_eq!(new.name, "session");
    assert!(!new.value.is_empty(), "{}", new.raw);
    assert_ne!(new.value, old.value, "the id was not regenerated");
    // The old key holds the end marker: the record under it ended.
    keys.assert_ended(&old.value).await;
    let mut both = vec![keys.key(&new.value), keys.key(&old.value)];
    both.sort();
    assert_eq!(keys.all(), both);
    assert_eq!(keys.data(&new.value), serde_json::json!({ "n": 2 }));
    let ttl = keys.pttl(&new.value);
    assert!(is_max_age(ttl), "PTTL of the new record: {ttl} ms");

    send(&plain(), &server.url(load.path("get")), Some(&new.pair()))
        .await
        .assert_ok("2");
    // The old cookie within the grace (a request that overlapped the move): nothing, and the
    // cookie is left to the regenerating request's answer.
    let stale = send(&plain(), &server.url(load.path("get")), Some(&old.pair())).await;
    stale.assert_ok("none");
    assert!(stale.set_cookies.is_empty(), "{:?}", stale.set_cookies);
    keys.assert_ended(&old.value).await;
    assert_eq!(keys.all(), both);
}

#[tokio::test]
async fn regenerate_moves_data_to_new_key_and_ends_old_autoload_off() {
    regenerate_moves_data_to_new_key_and_ends_old(Load::Explicit).await;
}

#[tokio::test]
async fn regenerate_moves_data_to_new_key_and_ends_old_autoload_on() {
    regenerate_moves_data_to_new_key_and_ends_old(Load::Auto).await;
}

async fn emptied_session_leaves_an_end_marker(load: Load) {
    let keys = Keys::new();
    let server = Server::start(load.app(&keys)).await;
    let cookie = start_session(load, &server).await;
    assert!(keys.exists(&cookie.value));

    let reply = send(
        &plain(),
        &server.url(load.path("clear")),
        Some(&cookie.pair()),
    )
    .await;
    reply.assert_ok("cleared");
    assert!(
        reply.cookie().is_expiry(),
        "not an expiry: {}",
        reply.cookie().raw
    );
    keys.assert_ended(&cookie.value).await;
    assert_eq!(keys.all(), vec![keys.key(&cookie.value)]);
}

#[tokio::test]
async fn emptied_session_leaves_an_end_marker_autoload_off() {
    emptied_session_leaves_an_end_marker(Load::Explicit).await;
}

#[tokio::test]
async fn emptied_session_leaves_an_end_marker_autoload_on() {
    emptied_session_leaves_an_end_marker(Load::Auto).await;
}

// ---------------------------------------------------------------------------------------------
// Redis unreachable

#[tokio::test]
async fn unreachable_redis_fails_session_requests_with_500_and_spares_the_rest() {
    let server = Server::start(app(Load::Explicit.layer(unreachable_backend()))).await;
    let client = plain();
    let made_up = format!("session={}", sessionkit_core::generate_id());
    let started = Instant::now();

    // Creating a session: the save fails.
    let create = send(&client, &server.url("/count"), None).await;
    assert_eq!(create.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(create.set_cookies.is_empty(), "{:?}", create.set_cookies);

    // Loading one: the read fails, the handler's `?` answers.
    for path in ["/get", "/count"] {
        let reply = send(&client, &server.url(path), Some(&made_up)).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(
            reply.body, "",
            "{path}: the same empty 500 as a failed save"
        );
        assert!(!reply.body.contains("127.0.0.1"), "{path}: {}", reply.body);
        assert!(
            reply.set_cookies.is_empty(),
            "{path}: {:?}",
            reply.set_cookies
        );
    }

    // Requests that never touch the session do not notice.
    for path in ["/plain", "/extract-only"] {
        for cookie in [None, Some(made_up.as_str())] {
            let reply = send(&client, &server.url(path), cookie).await;
            assert_eq!(reply.status, StatusCode::OK, "{path} {cookie:?}");
            assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failing took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unreachable_redis_load_error_reaches_the_handler_naming_the_cause() {
    let server = Server::start(app(Load::Explicit.layer(unreachable_backend()))).await;
    let client = plain();
    let made_up = format!("session={}", sessionkit_core::generate_id());

    let reply = send(&client, &server.url("/load-or-report"), Some(&made_up)).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(
        reply.body.starts_with("storage unavailable: "),
        "{}",
        reply.body
    );
    let cause = reply.body.to_lowercase();
    assert!(
        cause.contains("redis"),
        "the error names Redis: {}",
        reply.body
    );
    assert!(
        cause.contains("connection"),
        "the error names the connection: {}",
        reply.body
    );
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);

    // Without a cookie there is nothing to read: loading succeeds without Redis.
    send(&client, &server.url("/load-or-report"), None)
        .await
        .assert_ok("loaded");
}

#[tokio::test]
async fn unreachable_redis_with_autoload_fails_every_route_with_a_cookie_only() {
    let server = Server::start(redis_routes().layer(Load::Auto.layer(unreachable_backend()))).await;
    let client = plain();
    let made_up = format!("session={}", sessionkit_core::generate_id());

    // Autoload reads before the inner service: every route fails alike, whether its handler
    // takes the session or not.
    for path in [
        "/get-unloaded",
        "/count-without-load",
        "/load-or-report",
        "/plain",
    ] {
        let reply = send(&client, &server.url(path), Some(&made_up)).await;
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{path}: autoload failed, the handler must not run: {}",
            reply.body
        );
        assert_eq!(
            reply.body, "",
            "{path}: the same empty 500 as a failed save, naming no infrastructure"
        );
        assert!(
            reply.set_cookies.is_empty(),
            "{path}: {:?}",
            reply.set_cookies
        );
    }

    // No cookie: nothing to load, and a read-only request works.
    send(&client, &server.url("/get-unloaded"), None)
        .await
        .assert_ok("none");
    send(&client, &server.url("/load-or-report"), None)
        .await
        .assert_ok("loaded");
    send(&client, &server.url("/plain"), None)
        .await
        .assert_ok("plain");
}

// ---------------------------------------------------------------------------------------------
// A record removed behind the layer's back

/// Lets a test act between a handler's `load()` and the rest of it.
#[derive(Clone, Default)]
struct Gate {
    loaded: Arc<Notify>,
    proceed: Arc<Notify>,
}

/// The common routes, and `/gated-count`: loads, waits for the test, then counts.
fn gated_app(keys: &Keys, gate: &Gate) -> Router {
    let gate = gate.clone();
    let gated = get(move |session: Session| {
        let gate = gate.clone();
        async move {
            gate.loaded.notify_one();
            gate.proceed.notified().await;
            let n: u64 = session.get("n")?.unwrap_or(0) + 1;
            session.insert("n", n)?;
            Ok::<_, Error>(n.to_string())
        }
    });
    redis_routes()
        .route("/gated-count", gated)
        .layer(Load::Explicit.layer(keys.backend()))
}

/// Send `/gated-count` with `cookie`, run `meanwhile` once the handler has loaded, let the
/// handler finish; its reply.
async fn gated_count<F: Future<Output = ()>>(
    server: &Server,
    gate: &Gate,
    cookie: &SetCookie,
    meanwhile: F,
) -> Reply {
    let url = server.url("/gated-count");
    let pair = cookie.pair();
    let pending = tokio::spawn(async move { send(&plain(), &url, Some(&pair)).await });
    tokio::time::timeout(Duration::from_secs(5), gate.loaded.notified())
        .await
        .expect("the gated handler never loaded");
    meanwhile.await;
    gate.proceed.notify_one();
    tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the gated request never finished")
        .expect("the gated request panicked")
}

#[tokio::test]
async fn session_deleted_in_redis_is_not_resurrected_by_the_next_write() {
    let keys = Keys::new();
    let gate = Gate::default();
    let server = Server::start(gated_app(&keys, &gate)).await;
    let cookie = start_session(Load::Explicit, &server).await;

    // An admin deletes the record while a request that loaded it is still running.
    let reply = gated_count(&server, &gate, &cookie, async {
        assert_eq!(
            keys.del(&cookie.value),
            1,
            "the record was not there to delete"
        );
    })
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Its save finds the record gone, as when another request ended the session: nothing is
    // written back, and the cookie is left alone (the next request finds nothing under it).
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert!(!keys.exists(&cookie.value), "the removed record came back");
    assert!(keys.all().is_empty(), "{:?}", keys.all());

    // Nor by a later request with the old cookie: that one starts afresh.
    let after = send(&plain(), &server.url("/count"), Some(&cookie.pair())).await;
    after.assert_ok("1");
    let fresh = after.cookie().value.clone();
    assert_ne!(fresh, cookie.value, "the removed id was reused");
    assert!(!keys.exists(&cookie.value), "the removed record came back");
    assert_eq!(keys.all(), vec![keys.key(&fresh)]);
}

#[tokio::test]
async fn parallel_logout_is_not_undone_by_a_slower_write() {
    let keys = Keys::new();
    let gate = Gate::default();
    let server = Server::start(gated_app(&keys, &gate)).await;
    let cookie = start_session(Load::Explicit, &server).await;

    // The same client logs out in another tab while the slow request is still running.
    let reply = gated_count(&server, &gate, &cookie, async {
        let logout = send(&plain(), &server.url("/delete"), Some(&cookie.pair())).await;
        logout.assert_ok("deleted");
        assert!(logout.cookie().is_expiry(), "{}", logout.cookie().raw);
        keys.assert_ended(&cookie.value).await;
    })
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // The slow request's changes are dropped, and its answer leaves the cookie to the
    // logout's.
    assert!(
        reply.set_cookies.is_empty(),
        "the overlapping request answered a cookie: {:?}",
        reply.set_cookies
    );
    keys.assert_ended(&cookie.value).await;
    assert_eq!(
        keys.all(),
        vec![keys.key(&cookie.value)],
        "the logout was undone"
    );
}

// ---------------------------------------------------------------------------------------------
// Made-up ids

#[tokio::test]
async fn made_up_id_is_never_adopted() {
    let keys = Keys::new();
    let server = Server::start(Load::Explicit.app(&keys)).await;
    let client = plain();
    // One shaped like a real id, one that is not.
    for made_up in [sessionkit_core::generate_id(), "admin".to_owned()] {
        let cookie = format!("session={made_up}");

        // Reading: nothing there, the stale cookie is expired, nothing is stored.
        let read = send(&client, &server.url("/get"), Some(&cookie)).await;
        read.assert_ok("none");
        assert!(
            read.cookie().is_expiry(),
            "{made_up}: not an expiry: {}",
            read.cookie().raw
        );
        assert!(keys.all().is_empty(), "{made_up}: {:?}", keys.all());

        // Writing: a fresh id, and no record under the made-up one.
        let write = send(&client, &server.url("/count"), Some(&cookie)).await;
        write.assert_ok("1");
        let fresh = write.cookie().value.clone();
        assert!(!fresh.is_empty(), "{}", write.cookie().raw);
        assert_ne!(fresh, made_up, "the made-up id was adopted");
        assert!(!keys.exists(&made_up), "a record was made under {made_up}");
        assert_eq!(keys.all(), vec![keys.key(&fresh)], "{made_up}");
        assert_eq!(keys.data(&fresh), serde_json::json!({ "n": 1 }));

        // The fresh session works; the made-up cookie still opens nothing.
        send(
            &client,
            &server.url("/get"),
            Some(&format!("session={fresh}")),
        )
        .await
        .assert_ok("1");
        send(&client, &server.url("/get"), Some(&cookie))
            .await
            .assert_ok("none");
        assert_eq!(keys.del(&fresh), 1);
    }
}

/// A record that no longer decodes (a stored type changed, another app wrote under the
/// prefix): the client gets a fresh session and a 200, not a 500 until the key expires, and
/// the bad key is gone. Both load modes.
async fn corrupt_record_gives_a_fresh_session(load: Load) {
    let keys = Keys::new();
    let server = Server::start(load.app(&keys)).await;
    let cookie = start_session(load, &server).await;
    let _: () = redis::cmd("SET")
        .arg(keys.key(&cookie.value))
        .arg("{\"created\": \"not a number\"}")
        .query(&mut connect())
        .unwrap();
    let reply = send(
        &plain(),
        &server.url(load.path("count")),
        Some(&cookie.pair()),
    )
    .await;
    reply.assert_ok("1");
    let fresh = reply.cookie().value.clone();
    assert_ne!(fresh, cookie.value, "the corrupt record's id was adopted");
    assert!(
        !keys.exists(&cookie.value),
        "the corrupt key was not deleted"
    );
    assert_eq!(keys.all(), vec![keys.key(&fresh)]);
}

#[tokio::test]
async fn corrupt_record_gives_a_fresh_session_autoload_off() {
    corrupt_record_gives_a_fresh_session(Load::Explicit).await;
}

#[tokio::test]
async fn corrupt_record_gives_a_fresh_session_autoload_on() {
    corrupt_record_gives_a_fresh_session(Load::Auto).await;
}
