//! The session's life over real HTTP: loading, saving only what changed, ending a session,
//! regenerating its id, and `Vary: Cookie`.

mod common;

use axum::http::header::VARY;
use axum::response::IntoResponse;
use axum::routing::get;
use common::*;
use reqwest::StatusCode;
use sessionkit_core::SessionBackend;
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Error, LazySession, Session, SessionLayer};

/// A layer whose cookie a reqwest cookie store sends back over plain http.
fn insecure<B: SessionBackend>(backend: B) -> SessionLayer<B> {
    SessionLayer::builder(backend)
        .with_secure(false)
        .build()
        .unwrap()
}

// --- load is required ------------------------------------------------------------------------

#[tokio::test]
async fn counter_survives_across_requests() {
    let backend = InMemoryBackend::new();
    let server = Server::start(app(insecure(backend.clone()))).await;
    let client = browser();
    for expected in ["1", "2", "3"] {
        send(&client, &server.url("/count"), None)
            .await
            .assert_ok(expected);
    }
    assert_eq!(backend.len(), 1, "one client, one stored session");
}

#[tokio::test]
async fn a_lazy_session_never_loaded_costs_no_backend_call_and_sets_nothing() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None).await;
    let cookie = made.cookie().pair();
    let calls = backend.calls();

    for cookie in [None, Some(cookie.as_str())] {
        let reply = send(&client, &server.url("/lazy"), cookie).await;
        reply.assert_ok("untouched");
        assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
        assert!(
            reply.vary.is_empty(),
            "untouched: no Vary, {:?}",
            reply.vary
        );
    }
    assert_eq!(
        backend.calls(),
        calls,
        "a session nobody loaded must not reach the backend"
    );
}

#[tokio::test]
async fn load_is_idempotent() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    let reads = backend.reads();

    // Loads, increments to 2, loads twice more: the later loads neither re-read nor reset.
    let reply = send(&client, &server.url("/load-twice"), Some(&cookie)).await;
    reply.assert_ok("2");
    assert_eq!(backend.reads(), reads + 1, "three loads, one backend read");
    send(&client, &server.url("/get"), Some(&cookie))
        .await
        .assert_ok("2");
}

#[tokio::test]
async fn autoload_reads_the_session_before_the_inner_service() {
    let backend = CountingBackend::new();
    let layer = SessionLayer::builder(backend.clone())
        .with_secure(false)
        .with_autoload(true)
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    assert_eq!(backend.reads(), 0, "no cookie: nothing to read");
    // Every request that sends the cookie is read, whether its handler takes the session
    // (`/count`), holds it lazily and never loads it (`/lazy`), or ignores it (`/plain`):
    // starsessions' `autoload`.
    send(&client, &server.url("/count"), Some(&cookie))
        .await
        .assert_ok("2");
    send(&client, &server.url("/lazy"), Some(&cookie))
        .await
        .assert_ok("untouched");
    send(&client, &server.url("/plain"), Some(&cookie)).await;
    assert_eq!(
        backend.reads(),
        3,
        "one read per request that sent the cookie"
    );
}

// --- write only when changed -----------------------------------------------------------------

#[tokio::test]
async fn unchanged_session_sets_no_cookie_and_makes_no_write() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None).await;
    assert_eq!(backend.writes(), 1);
    let cookie = made.cookie().pair();

    let reply = send(&client, &server.url("/get"), Some(&cookie)).await;
    reply.assert_ok("1");
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert_eq!(
        backend.writes(),
        1,
        "a read-only request wrote to the backend"
    );
    assert_eq!(backend.removes(), 0);
}

#[tokio::test]
async fn changed_session_is_written_and_the_cookie_set() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None).await;
    let cookie = made.cookie().clone();
    assert!(!cookie.value.is_empty());
    assert!(backend.store.exists(&cookie.value).await.unwrap());

    let reply = send(&client, &server.url("/count"), Some(&cookie.pair())).await;
    reply.assert_ok("2");
    assert_eq!(reply.cookie().value, cookie.value, "an update keeps the id");
    assert_eq!(backend.writes(), 2);
    assert_eq!(backend.store.len(), 1);
}

#[tokio::test]
async fn inserting_an_equal_value_is_not_a_change() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let cookie = send(&client, &server.url("/put/7"), None)
        .await
        .cookie()
        .pair();
    assert_eq!(backend.writes(), 1);

    let same = send(&client, &server.url("/put/7"), Some(&cookie)).await;
    same.assert_ok("put");
    assert!(same.set_cookies.is_empty(), "{:?}", same.set_cookies);
    assert_eq!(
        backend.writes(),
        1,
        "storing an equal value wrote to the backend"
    );

    let different = send(&client, &server.url("/put/8"), Some(&cookie)).await;
    assert_eq!(different.cookie().pair(), cookie);
    assert_eq!(backend.writes(), 2);
    send(&client, &server.url("/get"), Some(&cookie))
        .await
        .assert_ok("8");
}

#[tokio::test]
async fn untouched_session_makes_no_backend_call() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    let calls = backend.calls();

    for path in ["/plain", "/extract-only"] {
        for cookie in [None, Some(cookie.as_str())] {
            let reply = send(&client, &server.url(path), cookie).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(
                reply.set_cookies.is_empty(),
                "{path}: {:?}",
                reply.set_cookies
            );
        }
    }
    assert_eq!(
        backend.calls(),
        calls,
        "requests that never loaded reached the backend"
    );
}

// --- ending a session ------------------------------------------------------------------------

#[tokio::test]
async fn emptied_session_removes_record_and_expires_cookie() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();

    let reply = send(&client, &server.url("/clear"), Some(&made.pair())).await;
    reply.assert_ok("cleared");
    let expiry = reply.cookie();
    assert_eq!(expiry.name, "session");
    assert!(expiry.is_expiry(), "not an expiry: {}", expiry.raw);
    assert_eq!(expiry.attr("Path"), Some("/"));
    assert!(!backend.store.exists(&made.value).await.unwrap());
    assert!(backend.store.is_empty());
    send(&client, &server.url("/get"), Some(&made.pair()))
        .await
        .assert_ok("none");
}

#[tokio::test]
async fn removing_the_last_value_ends_the_session() {
    let backend = InMemoryBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();

    let reply = send(&client, &server.url("/remove"), Some(&made.pair())).await;
    reply.assert_ok("removed");
    assert!(
        reply.cookie().is_expiry(),
        "not an expiry: {}",
        reply.cookie().raw
    );
    assert!(backend.is_empty());
}

#[tokio::test]
async fn empty_session_of_anonymous_client_sets_no_cookie() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    for path in [
        "/get",
        "/clear",
        "/remove",
        "/insert-then-remove",
        "/delete",
    ] {
        let reply = send(&client, &server.url(path), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        assert!(
            reply.set_cookies.is_empty(),
            "{path}: {:?}",
            reply.set_cookies
        );
    }
    assert_eq!(backend.writes(), 0);
    assert_eq!(
        backend.reads(),
        0,
        "no cookie: loading needs no backend read"
    );
    assert!(backend.store.is_empty());
}

#[tokio::test]
async fn browser_drops_the_expired_cookie() {
    let server = Server::start(app(insecure(InMemoryBackend::new()))).await;
    let client = browser();
    send(&client, &server.url("/count"), None)
        .await
        .assert_ok("1");
    let cleared = send(&client, &server.url("/clear"), None).await;
    assert!(
        cleared.cookie().is_expiry(),
        "not an expiry: {}",
        cleared.cookie().raw
    );

    // The cookie store no longer sends a cookie: the client is anonymous again, so this empty
    // session gets no header at all (a stale cookie would have been expired again).
    let after = send(&client, &server.url("/get"), None).await;
    after.assert_ok("none");
    assert!(after.set_cookies.is_empty(), "{:?}", after.set_cookies);
    send(&client, &server.url("/count"), None)
        .await
        .assert_ok("1");
}

#[tokio::test]
async fn regenerate_id_moves_data_to_new_id() {
    let backend = InMemoryBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let old = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();

    let reply = send(&client, &server.url("/regenerate"), Some(&old.pair())).await;
    reply.assert_ok("1");
    let new = reply.cookie().clone();
    assert_eq!(new.name, "session");
    assert!(!new.value.is_empty());
    assert_ne!(new.value, old.value, "the id was not regenerated");
    assert!(backend.exists(&new.value).await.unwrap());
    assert!(
        !backend.exists(&old.value).await.unwrap(),
        "the old record survived"
    );
    assert_eq!(backend.len(), 1);

    send(&client, &server.url("/get"), Some(&new.pair()))
        .await
        .assert_ok("1");
    let stale = send(&client, &server.url("/get"), Some(&old.pair())).await;
    stale.assert_ok("none");
}

#[tokio::test]
async fn delete_clears_storage_and_cookie() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();

    // The handler deletes without loading first.
    let reply = send(&client, &server.url("/delete"), Some(&made.pair())).await;
    reply.assert_ok("deleted");
    assert!(
        reply.cookie().is_expiry(),
        "not an expiry: {}",
        reply.cookie().raw
    );
    assert_eq!(reply.cookie().attr("Path"), Some("/"));
    assert!(backend.store.is_empty());
    assert_eq!(backend.writes(), 1, "delete wrote to the backend");
    send(&client, &server.url("/get"), Some(&made.pair()))
        .await
        .assert_ok("none");
}

#[tokio::test]
async fn inserting_after_delete_starts_a_fresh_session() {
    let backend = InMemoryBackend::new();
    let relogin = get(|session: Session| async move {
        session.delete().await?;
        session.insert("n", 100)?;
        Ok::<_, Error>("fresh")
    });
    let server = Server::start(
        routes()
            .route("/relogin", relogin)
            .layer(SessionLayer::new(backend.clone())),
    )
    .await;
    let client = plain();
    let old = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();

    let reply = send(&client, &server.url("/relogin"), Some(&old.pair())).await;
    reply.assert_ok("fresh");
    let new = reply.cookie();
    assert!(
        !new.value.is_empty(),
        "expected a new session, got {}",
        new.raw
    );
    assert_ne!(new.value, old.value);
    assert!(!backend.exists(&old.value).await.unwrap());
    assert_eq!(backend.len(), 1);
    send(&client, &server.url("/get"), Some(&new.pair()))
        .await
        .assert_ok("100");
}

// --- Vary: Cookie ----------------------------------------------------------------------------

#[tokio::test]
async fn vary_cookie_on_responses_that_used_the_session() {
    let server = Server::start(app(SessionLayer::new(InMemoryBackend::new()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None).await;
    assert!(made.varies_on_cookie(), "write: {:?}", made.vary);
    let cookie = made.cookie().pair();

    let cases = [
        ("/get", Some(cookie.as_str())),   // loaded, unchanged
        ("/get", None),                    // loaded, empty, anonymous
        ("/count", Some(cookie.as_str())), // updated
        ("/clear", Some(cookie.as_str())), // ended
    ];
    for (path, cookie) in cases {
        let reply = send(&client, &server.url(path), cookie).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            reply.varies_on_cookie(),
            "{path} {cookie:?}: {:?}",
            reply.vary
        );
    }
}

#[tokio::test]
async fn no_vary_on_responses_that_did_not_use_the_session() {
    let server = Server::start(app(SessionLayer::new(InMemoryBackend::new()))).await;
    let client = plain();
    let cookie = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .pair();
    for path in ["/plain", "/extract-only"] {
        for cookie in [None, Some(cookie.as_str())] {
            let reply = send(&client, &server.url(path), cookie).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(reply.vary.is_empty(), "{path} {cookie:?}: {:?}", reply.vary);
        }
    }
}

#[tokio::test]
async fn vary_cookie_joins_the_handlers_own_vary() {
    let own_vary = get(|_session: Session| async move {
        Ok::<_, Error>(([(VARY, "Accept-Encoding")], "own vary").into_response())
    });
    let already_cookie = get(|_session: Session| async move {
        Ok::<_, Error>(([(VARY, "cookie")], "already").into_response())
    });
    let app = routes()
        .route("/own-vary", own_vary)
        .route("/already-cookie", already_cookie)
        .layer(SessionLayer::new(InMemoryBackend::new()));
    let server = Server::start(app).await;
    let client = plain();

    let reply = send(&client, &server.url("/own-vary"), None).await;
    reply.assert_ok("own vary");
    assert!(
        reply.vary.iter().any(|v| v == "Accept-Encoding"),
        "{:?}",
        reply.vary
    );
    assert!(reply.varies_on_cookie(), "{:?}", reply.vary);

    let reply = send(&client, &server.url("/already-cookie"), None).await;
    reply.assert_ok("already");
    let cookies = reply
        .vary
        .iter()
        .filter(|v| v.eq_ignore_ascii_case("cookie"))
        .count();
    assert_eq!(cookies, 1, "Vary: Cookie duplicated: {:?}", reply.vary);
}

// --- plain hyper, no axum ----------------------------------------------------------------------

/// A hyper server whose service is the layer around a `service_fn`: the service finds the
/// session in the request's extensions.
#[tokio::test]
async fn a_plain_hyper_service_reads_the_session_from_the_request_extensions() {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceBuilder;

    let service = ServiceBuilder::new()
        .layer(insecure(InMemoryBackend::new()))
        .service(tower::service_fn(
            |req: axum::http::Request<hyper::body::Incoming>| async move {
                let lazy = req
                    .extensions()
                    .get::<LazySession>()
                    .cloned()
                    .ok_or(Error::MissingLayer)?;
                let session = lazy.load().await?;
                let n: u64 = session.get("n")?.unwrap_or(0) + 1;
                session.insert("n", n)?;
                Ok::<_, Error>(axum::http::Response::new(n.to_string()))
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    for expected in ["1", "2", "3"] {
        let body = client
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, expected);
    }
    server.abort();
}
