//! Server-side time limits, touch-based refresh, strict ids, the failure policy and the
//! `__Host-` prefix, end to end.

mod common;

use axum::Router;
use axum::routing::get;
use common::{CountingBackend, FailingBackend, Server, app, plain, routes, send};
use reqwest::StatusCode;
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Clock, Error, Session, SessionLayer};
use std::time::Duration;

/// A manual clock for a layer and its backend, started on a whole second (records keep
/// whole seconds).
fn clock() -> Clock {
    let now = Clock::system().unix_secs();
    Clock::manual(std::time::UNIX_EPOCH + Duration::from_secs(now))
}

/// The counter app plus a route that reports the session's clock.
fn clock_app<B: sessionkit_core::SessionBackend>(layer: SessionLayer<B>) -> Router {
    async fn clock(session: Session) -> Result<String, Error> {
        let remaining = session.remaining().map_or(u64::MAX, |d| d.as_secs());
        let age = session.created().elapsed().map_or(0, |d| d.as_secs());
        let idle = session.last_access().elapsed().map_or(0, |d| d.as_secs());
        Ok(format!("{remaining} {age} {idle}"))
    }
    routes().route("/clock", get(clock)).layer(layer)
}

#[tokio::test]
async fn idle_timeout_ends_unused_sessions_and_activity_extends_them() {
    let clock = clock();
    let layer = SessionLayer::builder(InMemoryBackend::new().with_clock(clock.clone()))
        .with_clock(clock.clone())
        .with_idle_timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    // Past half the window: a read refreshes the session (a new Set-Cookie).
    clock.advance(Duration::from_millis(2200));
    let read = send(&client, &server.url("/get"), Some(&cookie)).await;
    read.assert_ok("1");
    assert_eq!(read.set_cookies.len(), 1, "the refresh re-sets the cookie");
    // 4.4 s after the write: alive only because of the refresh at 2.2 s.
    clock.advance(Duration::from_millis(2200));
    send(&client, &server.url("/get"), Some(&cookie))
        .await
        .assert_ok("1");
    // 4.6 s without activity: gone, and its cookie expired.
    clock.advance(Duration::from_millis(4600));
    let gone = send(&client, &server.url("/get"), Some(&cookie)).await;
    gone.assert_ok("none");
    assert!(gone.cookie().is_expiry());
}

#[tokio::test]
async fn absolute_timeout_ends_sessions_however_active() {
    let clock = clock();
    // Limits count whole seconds from the stored (whole-second) creation time, so the
    // session lives between 3 and 4 seconds here.
    let layer = SessionLayer::builder(InMemoryBackend::new().with_clock(clock.clone()))
        .with_clock(clock.clone())
        .with_absolute_timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    clock.advance(Duration::from_millis(1200));
    send(&client, &server.url("/count"), Some(&cookie))
        .await
        .assert_ok("2");
    clock.advance(Duration::from_millis(1200));
    send(&client, &server.url("/count"), Some(&cookie))
        .await
        .assert_ok("3");
    clock.advance(Duration::from_millis(2000));
    // 4.4 s after creation: however active, it is over.
    send(&client, &server.url("/count"), Some(&cookie))
        .await
        .assert_ok("1");
}

/// A backend that ignores TTLs, so only the layer's own checks can end a session.
#[derive(Clone, Default)]
struct KeepsEverything(CountingBackend);

#[sessionkit_core::async_trait]
impl sessionkit_core::SessionBackend for KeepsEverything {
    async fn read(&self, id: &str) -> Result<Option<sessionkit_core::SessionData>, Error> {
        self.0.read(id).await
    }
    async fn create(
        &self,
        data: &sessionkit_core::SessionData,
        _ttl: Option<Duration>,
    ) -> Result<String, Error> {
        self.0.create(data, None).await
    }
    async fn apply(
        &self,
        id: &str,
        session: &sessionkit_core::SessionData,
        changes: &sessionkit_core::Changes,
        _ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        self.0.apply(id, session, changes, None).await
    }
    async fn remove(&self, id: &str) -> Result<(), Error> {
        self.0.remove(id).await
    }
}

#[tokio::test]
async fn limits_hold_even_when_the_store_keeps_the_record() {
    let clock = clock();
    let backend = KeepsEverything::default();
    let layer = SessionLayer::builder(backend.clone())
        .with_clock(clock.clone())
        .with_absolute_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    clock.advance(Duration::from_millis(2100));
    let removes = backend.0.removes();
    let reply = send(&client, &server.url("/get"), Some(&cookie)).await;
    reply.assert_ok("none");
    assert!(reply.cookie().is_expiry());
    assert_eq!(
        backend.0.removes(),
        removes + 1,
        "the expired record was left behind"
    );
}

#[tokio::test]
async fn backend_ttl_is_the_smallest_limit() {
    let backend = CountingBackend::new();
    let layer = SessionLayer::builder(backend.clone())
        .with_idle_timeout(Duration::from_secs(60))
        .with_absolute_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    send(&plain(), &server.url("/count"), None)
        .await
        .assert_ok("1");
    assert_eq!(backend.ttls(), vec![Some(Duration::from_secs(60))]);

    let backend = CountingBackend::new();
    let layer = SessionLayer::builder(backend.clone())
        .with_max_age(Duration::from_secs(30))
        .with_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    send(&plain(), &server.url("/count"), None)
        .await
        .assert_ok("1");
    assert_eq!(backend.ttls(), vec![Some(Duration::from_secs(30))]);
}

#[tokio::test]
async fn reads_within_the_refresh_interval_cause_no_backend_write() {
    let backend = CountingBackend::new();
    let layer = SessionLayer::builder(backend.clone())
        .with_idle_timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    for _ in 0..20 {
        let reply = send(&client, &server.url("/get"), Some(&cookie)).await;
        reply.assert_ok("1");
        assert!(reply.set_cookies.is_empty());
    }
    assert_eq!(backend.writes(), 1, "only the first request wrote");
}

#[tokio::test]
async fn refresh_interval_is_configurable() {
    let backend = CountingBackend::new();
    let layer = SessionLayer::builder(backend.clone())
        .with_idle_timeout(Duration::from_secs(600))
        .with_refresh_after(Duration::ZERO)
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    send(&client, &server.url("/get"), Some(&cookie))
        .await
        .assert_ok("1");
    assert_eq!(
        backend.writes(),
        2,
        "a zero interval refreshes on every request"
    );
}

#[tokio::test]
async fn handlers_read_created_last_access_and_remaining_time() {
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_idle_timeout(Duration::from_secs(100))
        .with_absolute_timeout(Duration::from_secs(1000))
        .build()
        .unwrap();
    let server = Server::start(clock_app(layer)).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    let reply = send(&client, &server.url("/clock"), Some(&cookie)).await;
    let parts: Vec<u64> = reply
        .body
        .split(' ')
        .map(|p| p.parse().expect("numbers"))
        .collect();
    assert!((99..=100).contains(&parts[0]), "remaining {}", parts[0]);
    assert!(parts[1] <= 1 && parts[2] <= 1, "{parts:?}");
}

#[tokio::test]
async fn cookie_values_no_backend_issued_start_a_fresh_session() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    for bad in [
        "has space",
        "semi%3Bcolon",
        "x",
        &"a".repeat(300),
        "ümlaut",
        "a.b.c",
    ] {
        let reply = send(
            &client,
            &server.url("/get"),
            Some(&format!("session={bad}")),
        )
        .await;
        reply.assert_ok("none");
        assert!(
            reply.cookie().is_expiry(),
            "{bad}: the stale cookie should be expired"
        );
    }
    // A value longer than any cookie can be reaches no backend at all.
    let reads = backend.reads();
    let reply = send(
        &client,
        &server.url("/get"),
        Some(&format!("session={}", "a".repeat(5000))),
    )
    .await;
    reply.assert_ok("none");
    assert!(reply.cookie().is_expiry());
    assert_eq!(
        backend.reads(),
        reads,
        "an oversized value reached the backend"
    );
}

#[tokio::test]
async fn fail_open_continues_with_an_unsaved_session() {
    let backend = FailingBackend::new();
    let server = Server::start(app(SessionLayer::builder(backend.clone())
        .with_fail_open(true)
        .build()
        .unwrap()))
    .await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    backend.fail_everything();
    let reply = send(&client, &server.url("/count"), Some(&cookie)).await;
    reply.assert_ok("1");
    assert!(
        reply.set_cookies.is_empty(),
        "an unsaved session must not touch the cookie"
    );
    let fresh = send(&client, &server.url("/count"), None).await;
    fresh.assert_ok("1");
    assert!(
        fresh.set_cookies.is_empty(),
        "a failed save must not set a cookie"
    );
}

#[tokio::test]
async fn fail_closed_is_the_default() {
    let backend = FailingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    backend.fail_everything();
    let reply = send(&plain(), &server.url("/count"), None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn host_prefix_names_the_cookie_and_forbids_domain_and_path() {
    let host = || SessionLayer::builder(InMemoryBackend::new()).with_host_prefix();
    let layer = host().build().expect("defaults allow __Host-");
    let server = Server::start(app(layer)).await;
    let client = plain();
    let first = send(&client, &server.url("/count"), None).await;
    let cookie = first.cookie().clone();
    assert_eq!(cookie.name, "__Host-session");
    assert!(cookie.has("Secure") && cookie.attr("Path") == Some("/") && !cookie.has("Domain"));
    send(&client, &server.url("/count"), Some(&cookie.pair()))
        .await
        .assert_ok("2");
    assert!(host().with_domain("example.com").build().is_err());
    assert!(host().with_path("/admin").build().is_err());
    assert!(host().with_secure(false).build().is_err());
}
