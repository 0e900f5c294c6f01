//! A session's own lifetime ("remember me"): set by a handler, stored with the record (in the
//! seal for cookie sessions), enforced on the server, and followed by the cookie's `Max-Age`
//! and the record's TTL, on every save after it was set.

mod common;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use common::{Server, plain, send};
use sessionkit_cookie::CookieBackend;
use sessionkit_core::{Lifetime, SessionBackend};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Clock, Error, Session, SessionLayer};
use std::time::Duration;

const THIRTY_DAYS: u64 = 30 * 24 * 60 * 60;

/// The app on a layer that reads `clock` (a cookie backend reads the layer's).
fn app<B: SessionBackend>(backend: B, clock: Clock) -> Router {
    app_with(backend, clock, None)
}

/// [`app`], with the layer's idle timeout `idle`.
fn app_with<B: SessionBackend>(backend: B, clock: Clock, idle: Option<Duration>) -> Router {
    let mut layer = SessionLayer::builder(backend)
        .with_clock(clock.clone())
        .with_secure(false)
        .with_max_age(Duration::from_secs(3600));
    if let Some(idle) = idle {
        layer = layer.with_idle_timeout(idle);
    }
    let now = clock.clone();
    Router::new()
        .route(
            "/login/{how}",
            get(|session: Session, Path(how): Path<String>| async move {
                let lifetime = match how.as_str() {
                    "remember" => Lifetime::Inactivity(Duration::from_secs(THIRTY_DAYS)),
                    "until" => Lifetime::Until(now.unix_secs() + 2),
                    _ => Lifetime::BrowserSession,
                };
                session.regenerate_id()?;
                session.insert("user", "ada")?;
                session.set_lifetime(Some(lifetime))?;
                Ok::<_, Error>("in")
            }),
        )
        .route(
            "/count",
            get(|session: Session| async move {
                let n: u64 = session.get("n")?.unwrap_or(0) + 1;
                session.insert("n", n)?;
                Ok::<_, Error>(format!("{:?} {n}", session.get::<String>("user")?))
            }),
        )
        .layer(layer.build().unwrap())
}

async fn lifetimes_follow_the_session<B: SessionBackend>(backend: B, clock: Clock) {
    let server = Server::start(app(backend, clock.clone())).await;
    let http = plain();

    let remembered = send(&http, &server.url("/login/remember"), None).await;
    let cookie = remembered.cookie().clone();
    assert_eq!(
        cookie.attr("Max-Age"),
        Some(THIRTY_DAYS.to_string().as_str()),
        "{}",
        cookie.raw
    );
    // A later save keeps the session's own Max-Age, not the layer's hour.
    let later = send(&http, &server.url("/count"), Some(&cookie.pair())).await;
    later.assert_ok("Some(\"ada\") 1");
    assert_eq!(
        later.cookie().attr("Max-Age"),
        Some(THIRTY_DAYS.to_string().as_str())
    );

    let browser = send(&http, &server.url("/login/browser"), None).await;
    let cookie = browser.cookie().clone();
    assert!(
        !cookie.has("Max-Age") && !cookie.has("Expires"),
        "{}",
        cookie.raw
    );
    let later = send(&http, &server.url("/count"), Some(&cookie.pair())).await;
    later.assert_ok("Some(\"ada\") 1");
    assert!(!later.cookie().has("Max-Age"), "{}", later.cookie().raw);

    // A fixed deadline is enforced on the server, whatever the cookie still says.
    let until = send(&http, &server.url("/login/until"), None).await;
    let cookie = until.cookie().clone();
    let age: u64 = cookie.attr("Max-Age").unwrap().parse().unwrap();
    assert!((1..=2).contains(&age), "{}", cookie.raw);
    clock.advance(Duration::from_millis(2_600));
    send(&http, &server.url("/count"), Some(&cookie.pair()))
        .await
        .assert_ok("None 1");
}

/// A remembered login ("remember me": `Inactivity(30 days)`) outlives the layer's short idle
/// timeout; an ordinary (browser-session) login does not.
async fn remembered_logins_outlive_the_idle_timeout<B: SessionBackend>(backend: B, clock: Clock) {
    let idle = Duration::from_secs(2 * 60 * 60);
    let server = Server::start(app_with(backend, clock.clone(), Some(idle))).await;
    let http = plain();
    let remembered = send(&http, &server.url("/login/remember"), None).await;
    let remembered = remembered.cookie().pair();
    let ordinary = send(&http, &server.url("/login/browser"), None).await;
    let ordinary = ordinary.cookie().pair();
    clock.advance(idle + Duration::from_secs(60));
    send(&http, &server.url("/count"), Some(&remembered))
        .await
        .assert_ok("Some(\"ada\") 1");
    send(&http, &server.url("/count"), Some(&ordinary))
        .await
        .assert_ok("None 1");
    // Thirty days without a visit end the remembered one too.
    clock.advance(Duration::from_secs(THIRTY_DAYS));
    send(&http, &server.url("/count"), Some(&remembered))
        .await
        .assert_ok("None 1");
}

#[tokio::test]
async fn memory_remembered_logins_outlive_the_idle_timeout() {
    let clock = Clock::manual_from_now();
    let backend = InMemoryBackend::new().with_clock(clock.clone());
    remembered_logins_outlive_the_idle_timeout(backend, clock).await;
}

#[tokio::test]
async fn cookie_remembered_logins_outlive_the_idle_timeout() {
    let backend = CookieBackend::builder(
        sessionkit_cookie::Mode::Private,
        b"a secret for the lifetime tests, 32+ bytes!",
    )
    .with_max_lifetime(None)
    .build()
    .unwrap();
    remembered_logins_outlive_the_idle_timeout(backend, Clock::manual_from_now()).await;
}

#[tokio::test]
async fn memory_sessions_keep_their_own_lifetime() {
    let clock = Clock::manual_from_now();
    lifetimes_follow_the_session(InMemoryBackend::new().with_clock(clock.clone()), clock).await;
}

#[tokio::test]
async fn cookie_sessions_keep_their_own_lifetime_in_the_seal() {
    let backend = CookieBackend::private(b"a secret for the lifetime tests, 32+ bytes!").unwrap();
    lifetimes_follow_the_session(backend, Clock::manual_from_now()).await;
}

#[tokio::test]
async fn the_redis_ttl_follows_a_remembered_session() {
    use sessionkit_redis::deadpool_redis::redis;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("sessions-lifetime:{}:", sessionkit_core::generate_id());
    let backend = sessionkit_redis::RedisBackend::from_url(&url)
        .unwrap()
        .with_prefix(prefix.as_str());
    let server = Server::start(app(backend, Clock::system())).await;
    let reply = send(&plain(), &server.url("/login/remember"), None).await;
    let key = format!("{prefix}{}", reply.cookie().value);
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
    let _: i64 = redis::cmd("DEL").arg(&key).query(&mut conn).unwrap();
    assert!(
        pttl > (THIRTY_DAYS as i64 - 60) * 1000,
        "the record's TTL is the layer's hour, not the session's 30 days: {pttl} ms"
    );
}
