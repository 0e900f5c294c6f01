//! The cookie backend end to end: tampering, rotation, size limits, browser-session cookies.

mod common;

use common::{CapturedEvents, Server, app, browser, plain, send};
use reqwest::StatusCode;
use sessionkit_cookie::{CookieBackend, Mode};
use sessionkit_core::{SessionBackend, SessionData};
use sessionkit_tower::{Clock, SessionLayer};
use std::time::Duration;

const KEY1: &[u8] = b"first secret key of the cookie tests, long enough";
const KEY2: &[u8] = b"second secret key of the cookie tests, also long!";

fn backend(mode: Mode, key: &[u8]) -> CookieBackend {
    match mode {
        Mode::Signed => CookieBackend::signed(key),
        Mode::Private => CookieBackend::private(key),
    }
    .expect("a long enough secret")
}

async fn serve(backend: CookieBackend) -> Server {
    Server::start(app(SessionLayer::new(backend))).await
}

#[tokio::test]
async fn with_secret_key_gives_signed_cookie_sessions() {
    let server = Server::start(app(SessionLayer::with_secret_key(KEY1).expect("long key"))).await;
    let client = plain();
    let reply = send(&client, &server.url("/put/42"), None).await;
    let value = reply.cookie().value.clone();
    // The signed payload is readable, and opens with a signed backend under the same key.
    let data = backend(Mode::Signed, KEY1)
        .read(&value)
        .await
        .expect("read");
    assert_eq!(data.expect("authentic").values()["n"], 42);
    assert!(SessionLayer::with_secret_key("short").is_err());
}

#[tokio::test]
async fn cookie_counter_and_logout_over_http() {
    for mode in [Mode::Signed, Mode::Private] {
        let server = serve(backend(mode, KEY1)).await;
        let client = browser();
        for expected in ["1", "2", "3"] {
            send(&client, &server.url("/count"), None)
                .await
                .assert_ok(expected);
        }
        let logout = send(&client, &server.url("/delete"), None).await;
        assert!(
            logout.cookie().is_expiry(),
            "{mode:?}: logout must expire the cookie"
        );
        send(&client, &server.url("/count"), None)
            .await
            .assert_ok("1");
    }
}

/// Every way of damaging a valid cookie value for `mode`.
async fn tampered_values(mode: Mode) -> Vec<(String, String)> {
    let good = backend(mode, KEY1);
    let value = good
        .create(&SessionData::default(), None)
        .await
        .expect("seal");
    let (id, sealed) = value.split_once('.').expect("key id and seal");
    let mut bad = vec![
        ("empty".to_owned(), String::new()),
        ("not base64".to_owned(), format!("{id}.%%%not*base64%%%")),
        ("truncated".to_owned(), value[..value.len() - 3].to_owned()),
        ("no key id".to_owned(), sealed.to_owned()),
        ("unknown key id".to_owned(), format!("AAAAAAAA.{sealed}")),
    ];
    let mut flipped = value.clone().into_bytes();
    let mid = id.len() + 1 + sealed.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    bad.push((
        "flipped byte".to_owned(),
        String::from_utf8(flipped).expect("ascii"),
    ));
    let other = backend(mode, KEY2)
        .create(&SessionData::default(), None)
        .await
        .expect("seal");
    bad.push(("unknown key".to_owned(), other));
    let expired = good
        .create(&SessionData::default(), Some(Duration::from_millis(1)))
        .await
        .expect("seal");
    tokio::time::sleep(Duration::from_millis(5)).await;
    bad.push(("expired".to_owned(), expired));
    let other_mode = match mode {
        Mode::Signed => Mode::Private,
        Mode::Private => Mode::Signed,
    };
    let wrong_mode = backend(other_mode, KEY1)
        .create(&SessionData::default(), None)
        .await
        .expect("seal");
    bad.push(("other mode".to_owned(), wrong_mode));
    if mode == Mode::Signed {
        // The signature of one session pasted onto another's payload.
        let mut data = SessionData::default();
        data.values_mut().insert("n".into(), 1000.into());
        let rich = good.create(&data, None).await.expect("seal");
        let (rich_signed, _) = rich.rsplit_once('.').expect("seal");
        let (_, tag) = value.rsplit_once('.').expect("seal");
        bad.push((
            "swapped signature".to_owned(),
            format!("{rich_signed}.{tag}"),
        ));
    }
    bad
}

#[tokio::test]
async fn tampered_cookies_start_fresh_sessions_and_never_reach_the_handler() {
    for mode in [Mode::Signed, Mode::Private] {
        let server = serve(backend(mode, KEY1)).await;
        let client = plain();
        for (what, value) in tampered_values(mode).await {
            let reply = send(
                &client,
                &server.url("/count"),
                Some(&format!("session={value}")),
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{mode:?} {what}: {}",
                reply.body
            );
            assert_eq!(
                reply.body, "1",
                "{mode:?} {what}: the handler saw tampered data"
            );
            let fresh = reply.cookie();
            assert_ne!(
                fresh.value, value,
                "{mode:?} {what}: the tampered value was kept"
            );
        }
    }
}

#[tokio::test]
async fn rotation_accepts_old_cookies_reissues_them_and_drops_them_with_the_key() {
    for mode in [Mode::Signed, Mode::Private] {
        let client = plain();
        let old_server = serve(backend(mode, KEY1)).await;
        let old_cookie = send(&client, &old_server.url("/count"), None)
            .await
            .cookie()
            .pair();

        let rotated = CookieBackend::builder(mode, KEY2)
            .with_old_key(KEY1)
            .build()
            .expect("long keys");
        let rotated_server = serve(rotated).await;
        let reply = send(&client, &rotated_server.url("/count"), Some(&old_cookie)).await;
        reply.assert_ok("2");
        let reissued = reply.cookie().pair();
        assert_ne!(reissued, old_cookie);

        let new_only = serve(backend(mode, KEY2)).await;
        send(&client, &new_only.url("/count"), Some(&reissued))
            .await
            .assert_ok("3");
        send(&client, &new_only.url("/count"), Some(&old_cookie))
            .await
            .assert_ok("1");
    }
}

/// The `Set-Cookie` length for a session holding a string of `len` bytes, or `None` when the
/// layer refused to send it (a 500 without `Set-Cookie`).
async fn set_cookie_len(server: &Server, len: usize) -> Option<usize> {
    let reply = send(&plain(), &server.url(&format!("/fill/{len}")), None).await;
    if reply.status == StatusCode::OK {
        Some(reply.cookie().raw.len())
    } else {
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            reply.set_cookies.is_empty(),
            "a refused session still set a cookie"
        );
        None
    }
}

fn fill_app(backend: CookieBackend) -> axum::Router {
    use axum::extract::Path;
    use sessionkit_tower::{Error, Session};
    async fn fill(session: Session, Path(len): Path<usize>) -> Result<&'static str, Error> {
        session.insert("fill", "x".repeat(len))?;
        Ok("filled")
    }
    axum::Router::new()
        .route("/fill/{len}", axum::routing::get(fill))
        .layer(SessionLayer::new(backend))
}

#[tokio::test(flavor = "current_thread")]
async fn cookie_size_limit_is_exact_and_refusal_is_a_clear_500() {
    let events = CapturedEvents::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    for mode in [Mode::Signed, Mode::Private] {
        let server = Server::start(fill_app(backend(mode, KEY1))).await;
        // The largest payload that still fits, found by bisection.
        let (mut fits, mut too_big) = (0usize, 4096usize);
        assert!(set_cookie_len(&server, fits).await.is_some());
        assert!(set_cookie_len(&server, too_big).await.is_none());
        while too_big - fits > 1 {
            let mid = (fits + too_big) / 2;
            match set_cookie_len(&server, mid).await {
                Some(_) => fits = mid,
                None => too_big = mid,
            }
        }
        let size = set_cookie_len(&server, fits).await.expect("fits");
        assert!(size <= 4096, "{mode:?}: a {size}-byte Set-Cookie was sent");
        assert!(
            size > 4096 - 4,
            "{mode:?}: the limit bites early, at {size} bytes"
        );
        // One byte of payload more: refused.
        assert!(set_cookie_len(&server, fits + 1).await.is_none());
    }
    let errors = events.matching(tracing::Level::ERROR, "4096-byte limit");
    assert!(
        !errors.is_empty(),
        "no tracing error names the size limit: {:?}",
        events.events()
    );
}

#[tokio::test]
async fn browser_session_cookies_keep_working_across_a_pause() {
    let clock = Clock::manual_from_now();
    let layer = SessionLayer::builder(backend(Mode::Signed, KEY1))
        .with_max_age(Duration::ZERO)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let first = send(&client, &server.url("/count"), None).await;
    first.assert_ok("1");
    let cookie = first.cookie().clone();
    assert!(
        !cookie.has("Max-Age") && !cookie.has("Expires"),
        "{}",
        cookie.raw
    );

    // The server-side deadline is bounded, not infinite as a zero max age could suggest: the
    // cookie backend's default lifetime for writes without a TTL, 14 days after each write.
    let day = Duration::from_secs(24 * 60 * 60);
    clock.advance(14 * day - Duration::from_secs(60));
    let later = send(&client, &server.url("/count"), Some(&cookie.pair())).await;
    later.assert_ok("2");
    clock.advance(Duration::from_secs(120));
    // The first value is past its 14 days; the one the last write sealed is not.
    send(&client, &server.url("/count"), Some(&cookie.pair()))
        .await
        .assert_ok("1");
    send(&client, &server.url("/count"), Some(&later.cookie().pair()))
        .await
        .assert_ok("3");
}

#[tokio::test]
async fn max_age_bounds_a_copied_cookie_on_the_server() {
    let clock = Clock::manual_from_now();
    let layer = SessionLayer::builder(backend(Mode::Private, KEY1))
        .with_max_age(Duration::from_secs(1))
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let copied = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    send(&client, &server.url("/get"), Some(&copied))
        .await
        .assert_ok("1");
    clock.advance(Duration::from_millis(1200));
    // The browser would have dropped it; a client that keeps sending it gets nothing.
    send(&client, &server.url("/get"), Some(&copied))
        .await
        .assert_ok("none");
}

#[tokio::test]
async fn path_and_domain_attributes_apply_to_cookie_sessions() {
    let layer = SessionLayer::builder(backend(Mode::Signed, KEY1))
        .with_path("/admin")
        .with_domain("example.test")
        .build()
        .expect("valid options");
    let server = Server::start(
        axum::Router::new()
            .nest("/admin", common::routes())
            .layer(layer),
    )
    .await;
    let client = plain();
    let reply = send(&client, &server.url("/admin/count"), None).await;
    reply.assert_ok("1");
    assert_eq!(reply.cookie().attr("Path"), Some("/admin"));
    assert_eq!(reply.cookie().attr("Domain"), Some("example.test"));
    let again = send(
        &client,
        &server.url("/admin/count"),
        Some(&reply.cookie().pair()),
    )
    .await;
    again.assert_ok("2");
}

/// A value minted by `from` (as its cookie `from_name`) and sent to `to` as the cookie
/// `to_name`: the reply of `/count` there.
async fn replay(
    from: CookieBackend,
    from_name: &str,
    to: CookieBackend,
    to_name: &str,
) -> common::Reply {
    let minting = Server::start(app(SessionLayer::builder(from)
        .with_cookie_name(from_name)
        .build()
        .unwrap()))
    .await;
    let target = Server::start(app(SessionLayer::builder(to)
        .with_cookie_name(to_name)
        .build()
        .unwrap()))
    .await;
    let client = plain();
    let minted = send(&client, &minting.url("/put/42"), None).await;
    let value = minted.cookie().value.clone();
    // The value opens where it was minted.
    send(
        &client,
        &minting.url("/get"),
        Some(&format!("{from_name}={value}")),
    )
    .await
    .assert_ok("42");
    send(
        &client,
        &target.url("/count"),
        Some(&format!("{to_name}={value}")),
    )
    .await
}

#[tokio::test]
async fn a_value_replayed_under_another_cookie_name_starts_a_fresh_session() {
    for mode in [Mode::Signed, Mode::Private] {
        let reply = replay(backend(mode, KEY1), "user", backend(mode, KEY1), "admin").await;
        assert_eq!(reply.status, StatusCode::OK, "{mode:?}: {}", reply.body);
        assert_eq!(
            reply.body, "1",
            "{mode:?}: the `user` value opened as `admin`"
        );
    }
}

#[tokio::test]
async fn a_value_moved_between_signed_and_private_layers_starts_a_fresh_session() {
    for (from, to) in [(Mode::Signed, Mode::Private), (Mode::Private, Mode::Signed)] {
        let reply = replay(backend(from, KEY1), "session", backend(to, KEY1), "session").await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{from:?} -> {to:?}: {}",
            reply.body
        );
        assert_eq!(reply.body, "1", "{from:?} -> {to:?}: the value opened");
    }
}

#[tokio::test]
async fn a_value_sealed_under_an_unknown_key_starts_a_fresh_session() {
    for mode in [Mode::Signed, Mode::Private] {
        let reply = replay(
            backend(mode, KEY2),
            "session",
            backend(mode, KEY1),
            "session",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{mode:?}: {}", reply.body);
        assert_eq!(reply.body, "1", "{mode:?}: a value of another key opened");
    }
}

/// With no absolute timeout set, cookie sessions still end 30 days after their creation:
/// a copied cookie re-sealed on every visit is not good forever.
#[tokio::test]
async fn cookie_sessions_get_a_default_absolute_limit() {
    let now = sessionkit_core::Clock::system().unix_secs();
    let days = |d: u64| d * 24 * 60 * 60;
    let mut values = sessionkit_core::Values::new();
    values.insert("n".into(), 7.into());
    let old = SessionData::from_parts(values, now - days(31), now - 60);
    for mode in [Mode::Signed, Mode::Private] {
        // Sealed without a limit, so that only the reading side's limit decides (a backend
        // with one never seals a deadline past it).
        let minted = CookieBackend::builder(mode, KEY1)
            .with_max_lifetime(None)
            .build()
            .expect("a long enough secret")
            .create(&old, None)
            .await
            .unwrap();
        let default = serve(backend(mode, KEY1)).await;
        send(
            &plain(),
            &default.url("/get"),
            Some(&format!("session={minted}")),
        )
        .await
        .assert_ok("none");
        // The application's own absolute limit replaces the default.
        let longer = Server::start(app(SessionLayer::builder(backend(mode, KEY1))
            .with_absolute_timeout(Duration::from_secs(days(60)))
            .build()
            .unwrap()))
        .await;
        send(
            &plain(),
            &longer.url("/get"),
            Some(&format!("session={minted}")),
        )
        .await
        .assert_ok("7");
        // And so does turning the backend's default off.
        let unlimited = serve(
            CookieBackend::builder(mode, KEY1)
                .with_max_lifetime(None)
                .build()
                .expect("a long enough secret"),
        )
        .await;
        send(
            &plain(),
            &unlimited.url("/get"),
            Some(&format!("session={minted}")),
        )
        .await
        .assert_ok("7");
    }
}
