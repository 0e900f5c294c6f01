//! Redis unreachable, and Redis stopped and restarted under a running backend. The servers
//! here are this test's own: the shared Redis is never stopped.

use crate::common::{RedisServer, free_port};
use serde_json::json;
use sessionkit_core::{Error, SessionBackend, SessionData};
use sessionkit_redis::RedisBackend;
use std::time::{Duration, Instant};

/// An id in the default format, naming no session: a read of it reaches the server.
const PLAUSIBLE_ID: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn data(n: u64) -> SessionData {
    let mut data = SessionData::default();
    data.values_mut().insert("n".into(), json!(n));
    data
}

fn assert_unreachable<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::Backend { message, .. }) => assert!(
            message.starts_with("redis: could not get a connection from the pool"),
            "{what}: {message}"
        ),
        other => panic!("{what}: expected a backend error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_fails_fast_with_a_backend_error() {
    let port = free_port(false);
    let backend = RedisBackend::from_url(&format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .with_pool_timeout(Duration::from_millis(500));
    let started = Instant::now();
    assert_unreachable(backend.read(PLAUSIBLE_ID).await, "read");
    assert_unreachable(backend.create(&data(1), None).await, "create");
    assert_unreachable(backend.update("id", &data(1), None).await, "update");
    assert_unreachable(backend.remove("id").await, "remove");
    assert_unreachable(backend.exists("id").await, "exists");
    let err = backend.read(PLAUSIBLE_ID).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("refused") || text.contains("Connection"),
        "the cause is named: {text}"
    );

    // Many requests at once while Redis is down: all fail, none waits long.
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.read(PLAUSIBLE_ID).await })
        })
        .collect();
    for task in tasks {
        assert_unreachable(task.await.unwrap(), "concurrent read");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "failing took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_reconnected_without_rebuilding_the_backend() {
    let server = RedisServer::start(&[]);
    let port = server.port();
    let backend = RedisBackend::from_url(&server.url())
        .unwrap()
        .with_pool_timeout(Duration::from_secs(1));
    let id = backend.create(&data(1), None).await.unwrap();
    assert!(backend.read(&id).await.unwrap().is_some());

    // Stopped mid-run: clear errors, quickly.
    server.stop();
    let started = Instant::now();
    match backend.read(&id).await {
        Err(Error::Backend { message, .. }) => assert!(message.starts_with("redis: "), "{message}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_unreachable(backend.create(&data(2), None).await, "create while down");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Back on the same port (empty: it keeps nothing on disk): the same backend works again,
    // from the first operation on.
    let server = RedisServer::start_on(port, &[]);
    assert!(backend.read(&id).await.unwrap().is_none());
    let id = backend.create(&data(3), None).await.unwrap();
    assert_eq!(
        backend.read(&id).await.unwrap().unwrap().values()["n"],
        json!(3)
    );

    // Restarted between two operations, with no failed operation in between to notice: the
    // dead connection is replaced and the next operation still succeeds.
    server.stop();
    let server = RedisServer::start_on(port, &[]);
    let id = backend.create(&data(4), None).await.unwrap();
    assert!(backend.exists(&id).await.unwrap());
    server.stop();
}
