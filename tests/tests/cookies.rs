//! The session cookie as a client sees it: its name and attributes, the options that set them,
//! the options that are refused, and the cookie path that scopes the whole layer.

mod common;

use axum::Router;
use common::*;
use reqwest::StatusCode;
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Error, SameSite, SessionLayer};
use std::time::Duration;

const FOURTEEN_DAYS: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// The `Set-Cookie` header of a fresh session created through `layer`.
async fn first_cookie(layer: SessionLayer<InMemoryBackend>) -> SetCookie {
    let server = Server::start(app(layer)).await;
    let reply = send(&plain(), &server.url("/count"), None).await;
    reply.assert_ok("1");
    reply.cookie().clone()
}

fn assert_config_error<T>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::Config(message)) => assert!(!message.is_empty(), "{what}: empty message"),
        Err(other) => panic!("{what}: expected Error::Config, got {other:?}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

// --- defaults --------------------------------------------------------------------------------

#[tokio::test]
async fn default_cookie_attributes() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let reply = send(&plain(), &server.url("/count"), None).await;
    let cookie = reply.cookie();

    assert_eq!(cookie.name, "session", "{}", cookie.raw);
    // At least 128 bits of randomness, as URL-safe text.
    assert!(cookie.value.len() >= 22, "short id: {}", cookie.raw);
    assert_eq!(cookie.attr("Path"), Some("/"), "{}", cookie.raw);
    assert_eq!(cookie.attr("Max-Age"), Some("1209600"), "{}", cookie.raw);
    assert!(
        cookie.has("Secure"),
        "Secure is on by default: {}",
        cookie.raw
    );
    assert!(
        cookie.has("HttpOnly"),
        "HttpOnly is on by default: {}",
        cookie.raw
    );
    assert_eq!(cookie.attr("SameSite"), Some("Lax"), "{}", cookie.raw);
    assert!(
        !cookie.has("Domain"),
        "no Domain by default: {}",
        cookie.raw
    );
    assert_eq!(
        backend.ttls(),
        vec![Some(FOURTEEN_DAYS)],
        "the record's ttl follows Max-Age"
    );
}

// --- options ---------------------------------------------------------------------------------

#[tokio::test]
async fn custom_cookie_name_is_set_and_read() {
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_cookie_name("app_sid")
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();
    assert_eq!(cookie.name, "app_sid", "{}", cookie.raw);

    let with_name = format!("app_sid={}", cookie.value);
    send(&client, &server.url("/count"), Some(&with_name))
        .await
        .assert_ok("2");
    // The same value under another name is not this layer's cookie.
    let other_name = format!("session={}", cookie.value);
    let reply = send(&client, &server.url("/get"), Some(&other_name)).await;
    reply.assert_ok("none");
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
}

#[tokio::test]
async fn custom_path_is_set_on_the_cookie() {
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_path("/admin")
        .build()
        .unwrap();
    let server = Server::start(Router::new().nest("/admin", routes()).layer(layer)).await;
    let reply = send(&plain(), &server.url("/admin/count"), None).await;
    reply.assert_ok("1");
    assert_eq!(
        reply.cookie().attr("Path"),
        Some("/admin"),
        "{}",
        reply.cookie().raw
    );
}

#[tokio::test]
async fn domain_is_set_on_the_cookie() {
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_domain("example.com")
        .build()
        .unwrap();
    let cookie = first_cookie(layer).await;
    assert_eq!(cookie.attr("Domain"), Some("example.com"), "{}", cookie.raw);
}

#[tokio::test]
async fn max_age_sets_cookie_lifetime_and_record_ttl() {
    let backend = CountingBackend::new();
    let layer = SessionLayer::builder(backend.clone())
        .with_max_age(Duration::from_secs(60))
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let cookie = send(&plain(), &server.url("/count"), None)
        .await
        .cookie()
        .clone();
    assert_eq!(cookie.attr("Max-Age"), Some("60"), "{}", cookie.raw);
    assert_eq!(backend.ttls(), vec![Some(Duration::from_secs(60))]);
}

#[tokio::test]
async fn zero_max_age_makes_a_browser_session_cookie() {
    let backend = CountingBackend::new();
    let layer = SessionLayer::builder(backend.clone())
        .with_max_age(Duration::ZERO)
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let cookie = send(&plain(), &server.url("/count"), None)
        .await
        .cookie()
        .clone();
    assert!(!cookie.has("Max-Age"), "{}", cookie.raw);
    assert!(!cookie.has("Expires"), "{}", cookie.raw);
    assert_eq!(
        backend.ttls(),
        vec![None],
        "a browser-session cookie gives the record no ttl"
    );
}

#[tokio::test]
async fn secure_can_be_turned_off() {
    let cookie = first_cookie(
        SessionLayer::builder(InMemoryBackend::new())
            .with_secure(false)
            .build()
            .unwrap(),
    )
    .await;
    assert!(!cookie.has("Secure"), "{}", cookie.raw);
    assert!(cookie.has("HttpOnly"), "{}", cookie.raw);
}

#[tokio::test]
async fn http_only_can_be_turned_off() {
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_http_only(false)
        .build()
        .unwrap();
    let cookie = first_cookie(layer).await;
    assert!(!cookie.has("HttpOnly"), "{}", cookie.raw);
    assert!(cookie.has("Secure"), "{}", cookie.raw);
}

#[tokio::test]
async fn same_site_strict_is_sent() {
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_same_site(SameSite::Strict)
        .build();
    let cookie = first_cookie(layer.unwrap()).await;
    assert_eq!(cookie.attr("SameSite"), Some("Strict"), "{}", cookie.raw);
}

#[tokio::test]
async fn same_site_none_is_sent_with_secure() {
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_same_site(SameSite::None)
        .build();
    let cookie = first_cookie(layer.unwrap()).await;
    assert_eq!(cookie.attr("SameSite"), Some("None"), "{}", cookie.raw);
    assert!(cookie.has("Secure"), "{}", cookie.raw);
}

#[tokio::test]
async fn expiry_cookie_keeps_path_and_domain() {
    let backend = InMemoryBackend::new();
    let layer = SessionLayer::builder(backend.clone())
        .with_path("/app")
        .with_domain("example.com")
        .build()
        .unwrap();
    let server = Server::start(Router::new().nest("/app", routes()).layer(layer)).await;
    let client = plain();
    let made = send(&client, &server.url("/app/count"), None)
        .await
        .cookie()
        .clone();

    let reply = send(&client, &server.url("/app/clear"), Some(&made.pair())).await;
    reply.assert_ok("cleared");
    let expiry = reply.cookie();
    assert!(expiry.is_expiry(), "not an expiry: {}", expiry.raw);
    assert_eq!(expiry.name, "session");
    assert_eq!(expiry.attr("Path"), Some("/app"), "{}", expiry.raw);
    assert_eq!(expiry.attr("Domain"), Some("example.com"), "{}", expiry.raw);
    assert!(backend.is_empty());
}

// --- refused options -------------------------------------------------------------------------

#[test]
fn invalid_cookie_name_is_a_config_error() {
    for name in [
        "",
        "two words",
        "a;b",
        "a=b",
        "a,b",
        "quote\"",
        "tab\t",
        "caf\u{e9}",
        "x\n",
    ] {
        let layer = SessionLayer::builder(InMemoryBackend::new())
            .with_cookie_name(name)
            .build();
        assert_config_error(layer, &format!("cookie name {name:?}"));
    }
    for name in ["sid", "__Host-session", "my.session_1"] {
        let layer = SessionLayer::builder(InMemoryBackend::new())
            .with_cookie_name(name)
            .build();
        assert!(layer.is_ok(), "{name:?} refused");
    }
}

#[test]
fn invalid_path_is_a_config_error() {
    for path in ["", "admin", "/a;b", "/a\nb", "/a\0b"] {
        let layer = SessionLayer::builder(InMemoryBackend::new())
            .with_path(path)
            .build();
        assert_config_error(layer, &format!("path {path:?}"));
    }
    for path in ["/", "/admin", "/admin/"] {
        assert!(
            SessionLayer::builder(InMemoryBackend::new())
                .with_path(path)
                .build()
                .is_ok(),
            "{path:?}"
        );
    }
}

#[test]
fn invalid_domain_is_a_config_error() {
    for domain in ["", "example.com; Secure", "exa mple.com", "example.com\r\n"] {
        let layer = SessionLayer::builder(InMemoryBackend::new())
            .with_domain(domain)
            .build();
        assert_config_error(layer, &format!("domain {domain:?}"));
    }
}

#[test]
fn same_site_none_without_secure_is_a_config_error_in_either_order() {
    let secure_first = SessionLayer::builder(InMemoryBackend::new())
        .with_secure(false)
        .with_same_site(SameSite::None)
        .build();
    assert_config_error(secure_first, "SameSite=None after Secure off");
    let same_site_first = SessionLayer::builder(InMemoryBackend::new())
        .with_same_site(SameSite::None)
        .with_secure(false)
        .build();
    assert_config_error(same_site_first, "Secure off after SameSite=None");
}

// --- the cookie path scopes the layer --------------------------------------------------------

/// `/admin` is inside the layer's path; `/public` and `/administrator` are not.
async fn admin_server(backend: CountingBackend) -> Server {
    let layer = SessionLayer::builder(backend)
        .with_path("/admin")
        .build()
        .unwrap();
    let app = Router::new()
        .nest("/admin", routes())
        .nest("/public", routes())
        .nest("/administrator", routes())
        .layer(layer);
    Server::start(app).await
}

#[tokio::test]
async fn requests_inside_the_cookie_path_get_the_session() {
    let backend = CountingBackend::new();
    let server = admin_server(backend.clone()).await;
    let client = plain();
    let made = send(&client, &server.url("/admin/count"), None).await;
    made.assert_ok("1");
    let cookie = made.cookie().clone();
    assert_eq!(cookie.attr("Path"), Some("/admin"));
    send(&client, &server.url("/admin/count"), Some(&cookie.pair()))
        .await
        .assert_ok("2");
    assert_eq!(backend.store.len(), 1);
}

#[tokio::test]
async fn requests_outside_the_cookie_path_neither_read_nor_set_the_cookie() {
    let backend = CountingBackend::new();
    let server = admin_server(backend.clone()).await;
    let client = plain();
    let cookie = send(&client, &server.url("/admin/count"), None)
        .await
        .cookie()
        .pair();
    let calls = backend.calls();

    for path in ["/public/plain", "/administrator/plain"] {
        for cookie in [None, Some(cookie.as_str())] {
            let reply = send(&client, &server.url(path), cookie).await;
            reply.assert_ok("plain");
            assert!(
                reply.set_cookies.is_empty(),
                "{path}: {:?}",
                reply.set_cookies
            );
            assert!(reply.vary.is_empty(), "{path}: {:?}", reply.vary);
        }
    }
    assert_eq!(backend.calls(), calls);
}

#[tokio::test]
async fn extracting_the_session_outside_the_cookie_path_explains_the_missing_layer() {
    let backend = CountingBackend::new();
    let server = admin_server(backend.clone()).await;
    let client = plain();
    let cookie = send(&client, &server.url("/admin/count"), None)
        .await
        .cookie()
        .pair();
    let calls = backend.calls();

    for path in ["/public/count", "/administrator/count"] {
        let reply = send(&client, &server.url(path), Some(&cookie)).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(reply.body, Error::MissingLayer.to_string(), "{path}");
        assert!(reply.body.contains("SessionLayer"), "{}", reply.body);
        assert!(reply.body.contains("path"), "{}", reply.body);
        assert!(
            reply.set_cookies.is_empty(),
            "{path}: {:?}",
            reply.set_cookies
        );
    }
    assert_eq!(backend.calls(), calls);
    send(&client, &server.url("/admin/get"), Some(&cookie))
        .await
        .assert_ok("1");
}

#[tokio::test]
async fn session_extractor_without_the_layer_explains_itself() {
    let server = Server::start(routes()).await;
    let reply = send(&plain(), &server.url("/count"), None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.body, Error::MissingLayer.to_string());
    assert!(reply.body.contains("SessionLayer"), "{}", reply.body);
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
}

// --- edge cases of the options -------------------------------------------------------------

#[tokio::test]
async fn sub_second_max_age_does_not_expire_the_cookie_at_once() {
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_max_age(Duration::from_millis(500))
        .build()
        .unwrap();
    let cookie = first_cookie(layer).await;
    assert!(
        !cookie.is_expiry(),
        "a new session's cookie deletes itself: {}",
        cookie.raw
    );
    let max_age = cookie.attr("Max-Age").map(str::parse::<u64>);
    assert!(matches!(max_age, Some(Ok(1..))), "{}", cookie.raw);
}

#[test]
fn non_ascii_path_is_a_config_error() {
    // RFC 6265: path-value is ASCII. Request paths arrive percent-encoded, so a layer on
    // `/caf\u{e9}` would never cover any request.
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_path("/caf\u{e9}")
        .build();
    assert_config_error(layer, "non-ASCII path");
}
