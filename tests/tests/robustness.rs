//! What goes wrong: failing backends, ids the backend does not know, forged cookies, a logout
//! racing a write, and many clients at once.

mod common;

use axum::routing::get;
use common::*;
use reqwest::StatusCode;
use sessionkit_core::{SessionBackend, SessionData};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::{Error, Session, SessionLayer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

// --- backend failures ------------------------------------------------------------------------

#[tokio::test]
async fn failing_read_is_returned_to_the_handler() {
    let backend = FailingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();
    backend.fail_reads(true);

    let reply = send(&client, &server.url("/load-or-report"), Some(&made.pair())).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(
        reply.body.starts_with(
            "storage unavailable: session backend error: test backend refused to read"
        ),
        "the handler did not get the backend's error: {}",
        reply.body
    );
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert!(
        backend.store.exists(&made.value).await.unwrap(),
        "a failed read lost the session"
    );

    backend.fail_reads(false);
    send(&client, &server.url("/get"), Some(&made.pair()))
        .await
        .assert_ok("1");
}

#[tokio::test]
async fn failing_read_returned_with_question_mark_is_a_500_without_details() {
    let events = CapturedEvents::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let backend = FailingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();
    backend.fail_reads(true);

    let reply = send(&client, &server.url("/count"), Some(&made.pair())).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !reply.body.contains(BACKEND_SECRET),
        "backend detail leaked: {}",
        reply.body
    );
    assert_eq!(reply.body, "", "the same empty 500 as a failed save");
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    // The cause is not lost: the error the handler returned is logged.
    assert_eq!(
        events.matching(tracing::Level::ERROR, BACKEND_SECRET).len(),
        1,
        "{:?}",
        events.events()
    );
}

/// Current-thread runtime: the server's tasks run on this thread, so the subscriber set as
/// this thread's default sees the middleware's events.
#[tokio::test]
async fn failing_write_is_a_500_without_cookie_and_logs_an_error() {
    let events = CapturedEvents::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let backend = FailingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();
    backend.fail_writes(true);

    // Creating a session and updating one both fail.
    for cookie in [None, Some(made.pair())] {
        let reply = send(&client, &server.url("/count"), cookie.as_deref()).await;
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{cookie:?}"
        );
        assert!(
            reply.set_cookies.is_empty(),
            "{cookie:?}: {:?}",
            reply.set_cookies
        );
        assert!(
            !reply.body.contains(BACKEND_SECRET),
            "backend detail leaked: {}",
            reply.body
        );
    }
    assert_eq!(
        backend.store.len(),
        1,
        "only the session made before the failure exists"
    );

    let errors = events.matching(tracing::Level::ERROR, "test backend refused to write");
    assert_eq!(
        errors.len(),
        2,
        "one error event per failed save; all events: {:?}",
        events.events()
    );
    assert!(
        errors[0].contains("saving the session failed"),
        "{}",
        errors[0]
    );

    backend.fail_writes(false);
    send(&client, &server.url("/get"), Some(&made.pair()))
        .await
        .assert_ok("1");
}

#[tokio::test]
async fn failing_remove_of_an_emptied_session_is_a_500_without_cookie() {
    let backend = FailingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();
    backend.fail_removes(true);

    let reply = send(&client, &server.url("/clear"), Some(&made.pair())).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert!(backend.store.exists(&made.value).await.unwrap());
}

#[tokio::test]
async fn requests_that_do_not_touch_the_session_ignore_a_failing_backend() {
    let backend = FailingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();
    backend.fail_everything();

    for path in ["/plain", "/extract-only"] {
        for cookie in [None, Some(made.pair())] {
            let reply = send(&client, &server.url(path), cookie.as_deref()).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{path} {cookie:?}: {}",
                reply.body
            );
            assert!(
                reply.set_cookies.is_empty(),
                "{path}: {:?}",
                reply.set_cookies
            );
        }
    }
}

#[tokio::test]
async fn failing_autoload_is_a_500_and_the_handler_does_not_run() {
    let backend = FailingBackend::new();
    let layer = SessionLayer::builder(backend.clone())
        .with_autoload(true)
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let client = plain();
    let made = send(&client, &server.url("/count-without-load"), None)
        .await
        .cookie()
        .clone();
    backend.fail_reads(true);

    let reply = send(
        &client,
        &server.url("/count-without-load"),
        Some(&made.pair()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert!(
        !reply.body.contains(BACKEND_SECRET),
        "backend detail leaked: {}",
        reply.body
    );

    backend.fail_reads(false);
    send(&client, &server.url("/get"), Some(&made.pair()))
        .await
        .assert_ok("1");
}

#[tokio::test]
async fn huge_max_age_does_not_panic_the_server() {
    let layer = SessionLayer::builder(InMemoryBackend::new())
        .with_max_age(Duration::MAX)
        .build()
        .unwrap();
    let server = Server::start(app(layer)).await;
    let response = plain().get(server.url("/count")).send().await;
    // A panic in the middleware drops the connection instead of answering.
    let reply = Reply::read(response.expect("the server answered")).await;
    reply.assert_ok("1");
    assert!(
        reply.cookie().attr("Max-Age").is_some(),
        "{}",
        reply.cookie().raw
    );
}

// --- ids the backend does not know -----------------------------------------------------------

#[tokio::test]
async fn made_up_cookie_id_is_never_adopted() {
    let backend = InMemoryBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let made_up = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    let reply = send(
        &plain(),
        &server.url("/count"),
        Some(&format!("session={made_up}")),
    )
    .await;
    reply.assert_ok("1");
    let cookie = reply.cookie();
    assert!(!cookie.value.is_empty(), "{}", cookie.raw);
    assert_ne!(cookie.value, made_up, "the client's id was adopted");
    assert!(!backend.exists(made_up).await.unwrap());
    assert!(backend.exists(&cookie.value).await.unwrap());
    assert_eq!(backend.len(), 1);
}

#[tokio::test]
async fn stale_cookie_is_expired_when_nothing_is_written() {
    let backend = CountingBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let reply = send(
        &plain(),
        &server.url("/get"),
        Some("session=no-such-session"),
    )
    .await;
    reply.assert_ok("none");
    assert!(
        reply.cookie().is_expiry(),
        "not an expiry: {}",
        reply.cookie().raw
    );
    assert_eq!(reply.cookie().attr("Path"), Some("/"));
    assert_eq!(backend.writes(), 0);
}

#[tokio::test]
async fn expired_record_is_not_adopted() {
    let backend = InMemoryBackend::new();
    let mut data = SessionData::default();
    data.values_mut()
        .insert("n".to_owned(), serde_json::json!(41));
    let expired = backend
        .create(&data, Some(Duration::from_millis(20)))
        .await
        .unwrap();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    // Ordering only: let the record's 20 ms ttl run out.
    tokio::time::sleep(Duration::from_millis(60)).await;

    let cookie = format!("session={expired}");
    let stale = send(&client, &server.url("/get"), Some(&cookie)).await;
    stale.assert_ok("none");
    assert!(
        stale.cookie().is_expiry(),
        "not an expiry: {}",
        stale.cookie().raw
    );

    let reply = send(&client, &server.url("/count"), Some(&cookie)).await;
    reply.assert_ok("1");
    assert_ne!(
        reply.cookie().value,
        expired,
        "an expired id was brought back"
    );
    assert!(!backend.exists(&expired).await.unwrap());
}

// --- forged cookies --------------------------------------------------------------------------

#[tokio::test]
async fn garbled_cookie_values_start_a_fresh_session() {
    let backend = InMemoryBackend::new();
    let server = Server::start(app(SessionLayer::new(backend.clone()))).await;
    let client = plain();
    let long = format!("session={}", "A".repeat(8000));
    let cookies: &[&[u8]] = &[
        b"session=garbage!!",
        long.as_bytes(),
        b"session=%E2%82%AC%00%FF%ZZ%",
        b"session=%F0%9F%92%A9%C3%28",
        "session=caf\u{e9}\u{20ac}\u{1f600}".as_bytes(),
        b"session=\xff\xfe\x80",
        b"session=",
        b"session=\"\"",
        b"session=\"",
        b"session",
        b"=; ;;; session===",
        b"session=../../../etc/passwd",
        b"session=a; session=b",
        b"session= ",
    ];
    for &cookie in cookies {
        let shown = String::from_utf8_lossy(cookie);
        let shown = shown.chars().take(60).collect::<String>();
        let reply = send_raw_cookie(&client, &server.url("/count"), cookie).await;
        assert_eq!(reply.status, StatusCode::OK, "{shown:?}: {}", reply.body);
        assert_eq!(reply.body, "1", "{shown:?} did not start a fresh session");
        let new = reply.cookie();
        assert_eq!(new.name, "session", "{shown:?}: {}", new.raw);
        assert!(!new.value.is_empty(), "{shown:?}: {}", new.raw);
        assert!(backend.exists(&new.value).await.unwrap(), "{shown:?}");

        let read = send_raw_cookie(&client, &server.url("/get"), cookie).await;
        read.assert_ok("none");
    }
    // The server is still healthy.
    send(&client, &server.url("/plain"), None)
        .await
        .assert_ok("plain");
}

// --- a logout racing a write -----------------------------------------------------------------

#[tokio::test]
async fn session_removed_by_a_parallel_logout_is_not_written_back() {
    struct Gate {
        loaded: Notify,
        proceed: Notify,
    }
    let gate = Arc::new(Gate {
        loaded: Notify::new(),
        proceed: Notify::new(),
    });
    let slow_count = get({
        let gate = Arc::clone(&gate);
        move |session: Session| async move {
            gate.loaded.notify_one();
            gate.proceed.notified().await;
            let n: u64 = session.get("n")?.unwrap_or(0) + 1;
            session.insert("n", n)?;
            Ok::<_, Error>(n.to_string())
        }
    });
    let backend = CountingBackend::new();
    let app = routes()
        .route("/slow-count", slow_count)
        .layer(SessionLayer::new(backend.clone()));
    let server = Server::start(app).await;
    let client = plain();
    let made = send(&client, &server.url("/count"), None)
        .await
        .cookie()
        .clone();

    // Request A loads the session and waits.
    let slow = tokio::spawn({
        let (client, url, cookie) = (client.clone(), server.url("/slow-count"), made.pair());
        async move { send(&client, &url, Some(&cookie)).await }
    });
    gate.loaded.notified().await;

    // Request B logs out meanwhile.
    let logout = send(&client, &server.url("/delete"), Some(&made.pair())).await;
    logout.assert_ok("deleted");
    assert!(logout.cookie().is_expiry());
    assert!(backend.store.is_empty());

    // Request A now writes: the session must stay gone, and A's answer leaves the cookie to
    // the logout's (it sends none).
    gate.proceed.notify_one();
    let reply = slow.await.expect("request A");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        reply.set_cookies.is_empty(),
        "A's response answered a cookie: {:?}",
        reply.set_cookies
    );
    assert!(
        backend.store.is_empty(),
        "the logged-out session was written back"
    );
    assert!(!backend.store.exists(&made.value).await.unwrap());
    send(&client, &server.url("/get"), Some(&made.pair()))
        .await
        .assert_ok("none");
}

// --- concurrency -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients_keep_their_own_counters() {
    const CLIENTS: usize = 50;
    const REQUESTS: usize = 20;
    let backend = InMemoryBackend::new();
    let layer = SessionLayer::builder(backend.clone())
        .with_secure(false)
        .build()
        .unwrap();
    let server = Arc::new(Server::start(app(layer)).await);

    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        let server = Arc::clone(&server);
        clients.spawn(async move {
            let client = browser();
            let mut counts = Vec::with_capacity(REQUESTS);
            for _ in 0..REQUESTS {
                let reply = send(&client, &server.url("/count"), None).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                counts.push(reply.body.parse::<usize>().expect("a count"));
            }
            let last = send(&client, &server.url("/get"), None).await;
            (counts, last.body)
        });
    }
    let mut finished = 0;
    while let Some(result) = clients.join_next().await {
        let (counts, last) = result.expect("a client task");
        assert_eq!(counts, (1..=REQUESTS).collect::<Vec<_>>());
        assert_eq!(last, REQUESTS.to_string());
        finished += 1;
    }
    assert_eq!(finished, CLIENTS);
    assert_eq!(backend.len(), CLIENTS, "one stored session per client");
}
