//! Expiry, record layout, corrupt records, prefixes and the pool, on the shared Redis (each
//! test under a prefix of its own, deleted at the end).

use crate::common::{Cleanup, connect, redis_url, unique_prefix};
use deadpool_redis::redis;
use serde_json::json;
use sessionkit_core::store::CorruptRecord;
use sessionkit_core::{Error, SessionBackend, SessionData};
use sessionkit_redis::{CorruptRecords, RedisBackend};
use std::time::{Duration, Instant};

/// An id in the default format, naming no session: a read of it reaches the server.
const PLAUSIBLE_ID: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn data(value: serde_json::Value) -> SessionData {
    let serde_json::Value::Object(values) = value else {
        panic!("test data must be an object")
    };
    SessionData::new(values)
}

/// A backend on the shared Redis under a fresh prefix, and the guard that deletes its keys.
fn backend() -> (RedisBackend, Cleanup) {
    let prefix = unique_prefix();
    let backend = RedisBackend::from_url(&redis_url())
        .unwrap()
        .with_prefix(prefix.as_str());
    let cleanup = Cleanup {
        url: redis_url(),
        prefix,
    };
    (backend, cleanup)
}

fn pttl(key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query(&mut connect(&redis_url()))
        .unwrap()
}

#[tokio::test]
async fn expire_sets_the_key_ttl_and_every_write_resets_it() {
    let (backend, _cleanup) = backend();
    let backend = backend.with_expire(Duration::from_secs(10));
    let id = backend.create(&data(json!({"n": 1})), None).await.unwrap();
    let key = backend.key(&id);
    let first = pttl(&key);
    assert!(
        (9_000..=10_000).contains(&first),
        "PTTL after create: {first}"
    );

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let aged = pttl(&key);
    assert!(aged <= 8_600, "the TTL did not run down: {aged}");

    backend
        .update(&id, &data(json!({"n": 2})), None)
        .await
        .unwrap();
    let renewed = pttl(&key);
    assert!(
        renewed >= 9_500,
        "an update did not reset the TTL: {renewed}"
    );
}

#[tokio::test]
async fn a_writes_own_ttl_wins_over_expire() {
    let (backend, _cleanup) = backend();
    let backend = backend.with_expire(Duration::from_secs(600));
    let id = backend
        .create(&data(json!({"n": 1})), Some(Duration::from_secs(3)))
        .await
        .unwrap();
    let ttl = pttl(&backend.key(&id));
    assert!((2_000..=3_000).contains(&ttl), "PTTL: {ttl}");
}

#[tokio::test]
async fn a_write_without_any_ttl_leaves_no_expiry() {
    let (backend, _cleanup) = backend();
    let id = backend
        .create(&data(json!({"n": 1})), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(pttl(&backend.key(&id)) > 0);
    // No KEEPTTL: a write without a TTL stores a record without expiry.
    backend
        .update(&id, &data(json!({"n": 2})), None)
        .await
        .unwrap();
    assert_eq!(pttl(&backend.key(&id)), -1);
    // The longest TTL there is does not overflow Redis' clock.
    backend
        .update(&id, &data(json!({"n": 3})), Some(Duration::MAX))
        .await
        .unwrap();
    assert!(pttl(&backend.key(&id)) > 0);
}

#[tokio::test]
async fn records_are_gone_after_expiry() {
    let (backend, _cleanup) = backend();
    let backend = backend.with_expire(Duration::from_millis(1_000));
    let id = backend.create(&data(json!({"n": 1})), None).await.unwrap();
    assert!(backend.exists(&id).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert!(backend.read(&id).await.unwrap().is_none());
    assert!(!backend.exists(&id).await.unwrap());
    assert!(matches!(
        backend.update(&id, &data(json!({"n": 2})), None).await,
        Err(Error::SessionGone)
    ));
    let raw: i64 = redis::cmd("EXISTS")
        .arg(backend.key(&id))
        .query(&mut connect(&redis_url()))
        .unwrap();
    assert_eq!(raw, 0, "an expired session was brought back");
}

#[tokio::test]
async fn records_are_plain_json_under_prefix_and_id() {
    let (backend, _cleanup) = backend();
    assert!(backend.prefix().starts_with("sessions-test:"));
    let id = backend
        .create(&data(json!({"user_id": 42})), None)
        .await
        .unwrap();
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(format!("{}{id}", backend.prefix()))
        .query(&mut connect(&redis_url()))
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(stored["data"], json!({"user_id": 42}));
    assert!(stored["created"].is_u64());
}

#[test]
fn the_default_prefix_is_session() {
    let backend = RedisBackend::from_url("redis://127.0.0.1:6379").unwrap();
    assert_eq!(backend.prefix(), "session:");
    assert_eq!(backend.key("abc"), "session:abc");
    let debug = format!("{backend:?}");
    assert!(
        debug.contains("RedisBackend") && debug.contains("session:"),
        "{debug}"
    );
}

/// Overwrite the record of `id` with bytes no serializer reads.
fn corrupt(backend: &RedisBackend<impl sessionkit_core::Serializer>, id: &str) {
    let _: () = redis::cmd("SET")
        .arg(backend.key(id))
        .arg(b"\xff\x00 not a session")
        .query(&mut connect(&redis_url()))
        .unwrap();
}

fn key_exists(key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(&mut connect(&redis_url()))
        .unwrap()
        > 0
}

#[tokio::test]
async fn a_corrupt_record_reads_as_missing_and_is_deleted_by_default() {
    let (backend, _cleanup) = backend();
    let id = backend.create(&data(json!({"n": 1})), None).await.unwrap();
    corrupt(&backend, &id);
    assert!(backend.read(&id).await.unwrap().is_none());
    assert!(
        !key_exists(&backend.key(&id)),
        "the corrupt key was deleted"
    );
    // The id is not adopted: an update finds nothing to update.
    assert!(matches!(
        backend.update(&id, &data(json!({"n": 2})), None).await,
        Err(Error::SessionGone)
    ));
}

#[tokio::test]
async fn in_strict_mode_a_corrupt_record_fails_the_read_and_names_the_masked_key() {
    let (backend, _cleanup) = backend();
    let backend = backend.with_corrupt_records(CorruptRecords::Fail);
    let id = backend.create(&data(json!({"n": 1})), None).await.unwrap();
    corrupt(&backend, &id);

    let err = backend.read(&id).await.unwrap_err();
    let message = err.to_string();
    let masked = format!("{}{}…", backend.prefix(), &id[..6]);
    assert!(message.contains(&masked), "{message}");
    assert!(
        !message.contains(&id),
        "the error shows the whole id: {message}"
    );
    let Error::Serialization { action, source } = &err else {
        panic!("expected a serialization error, got {err:?}")
    };
    assert_eq!(*action, "decoded");
    let corrupt = source
        .downcast_ref::<CorruptRecord>()
        .expect("the source names the record");
    assert_eq!(corrupt.location(), format!("redis key {masked}"));

    // Nothing was thrown away: the record is still there, and a write replaces it.
    assert!(backend.exists(&id).await.unwrap());
    backend
        .update(&id, &data(json!({"n": 2})), None)
        .await
        .unwrap();
    assert_eq!(
        backend.read(&id).await.unwrap().unwrap().values()["n"],
        json!(2)
    );
}

#[cfg(feature = "bincode")]
#[tokio::test]
async fn a_record_from_another_serializer_is_corrupt_to_this_one_in_either_mode() {
    use sessionkit_core::BincodeSerializer;
    let (json_backend, _cleanup) = backend();
    let bincode_backend = json_backend.clone().with_serializer(BincodeSerializer);
    for (writer, reader) in [
        (
            &json_backend,
            bincode_backend
                .clone()
                .with_corrupt_records(CorruptRecords::Fail),
        ),
        (&json_backend, bincode_backend.clone()),
    ] {
        let id = writer.create(&data(json!({"n": 1})), None).await.unwrap();
        match reader.read(&id).await {
            Err(err) => {
                assert!(matches!(err, Error::Serialization { .. }), "{err:?}");
                assert!(err.to_string().contains(&id[..6]), "{err}");
                assert!(key_exists(&writer.key(&id)), "strict mode keeps the record");
            }
            Ok(found) => {
                assert!(found.is_none());
                assert!(!key_exists(&writer.key(&id)), "the record was deleted");
            }
        }
    }
    // The other way round: JSON cannot read bincode, strict and lenient.
    let id = bincode_backend
        .create(&data(json!({"n": 2})), None)
        .await
        .unwrap();
    assert!(
        json_backend
            .clone()
            .with_corrupt_records(CorruptRecords::Fail)
            .read(&id)
            .await
            .is_err()
    );
    assert_eq!(
        bincode_backend.read(&id).await.unwrap().unwrap().values()["n"],
        json!(2)
    );
    assert!(json_backend.read(&id).await.unwrap().is_none());
    assert!(
        bincode_backend.read(&id).await.unwrap().is_none(),
        "deleted"
    );
}

#[tokio::test]
async fn prefixes_keep_backends_apart() {
    let (a, _cleanup_a) = backend();
    let (b, _cleanup_b) = backend();
    let id = a.create(&data(json!({"n": 1})), None).await.unwrap();
    assert!(b.read(&id).await.unwrap().is_none());
    assert!(!b.exists(&id).await.unwrap());
    assert!(matches!(
        b.update(&id, &data(json!({"n": 2})), None).await,
        Err(Error::SessionGone)
    ));
    b.remove(&id).await.unwrap();
    assert!(a.exists(&id).await.unwrap());
}

#[test]
fn a_url_that_cannot_be_parsed_is_a_config_error() {
    for url in ["not a url", "http://127.0.0.1:6379", ""] {
        match RedisBackend::from_url(url) {
            Err(Error::Config(message)) => assert!(message.starts_with("redis:"), "{message}"),
            other => panic!("{url:?}: expected a config error, got {other:?}"),
        }
    }
}

fn pool_of_one() -> deadpool_redis::Pool {
    deadpool_redis::Config {
        url: Some(redis_url()),
        connection: None,
        pool: Some(deadpool_redis::PoolConfig::new(1)),
    }
    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
    .unwrap()
}

#[tokio::test]
async fn the_pool_timeout_bounds_the_wait_for_a_connection() {
    let pool = pool_of_one();
    let (configured, _cleanup) = backend();
    let backend = RedisBackend::from_pool(pool.clone())
        .with_prefix(configured.prefix())
        .with_pool_timeout(Duration::from_millis(300));

    // Someone else holds the pool's only connection.
    let held = pool.get().await.unwrap();
    let started = Instant::now();
    let err = backend.read(PLAUSIBLE_ID).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match &err {
        Error::Backend { message, .. } => {
            assert!(
                message.starts_with("redis: could not get a connection from the pool within 300ms"),
                "{message}"
            );
        }
        other => panic!("expected a backend error, got {other:?}"),
    }

    // Once it is given back, the same backend works.
    drop(held);
    let id = backend.create(&data(json!({"n": 1})), None).await.unwrap();
    assert!(backend.exists(&id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operations_share_one_connection() {
    let pool = deadpool_redis::Config::from_url(redis_url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let (configured, _cleanup) = backend();
    let backend = RedisBackend::from_pool(pool.clone()).with_prefix(configured.prefix());
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let id = backend.create(&data(json!({"n": n})), None).await.unwrap();
                backend.read(&id).await.unwrap().unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let status = pool.status();
    assert_eq!(
        status.size, 1,
        "{status:?}: more than one connection was made"
    );
    assert_eq!(
        status.available, 0,
        "{status:?}: the backend keeps its connection"
    );
}

/// A user's index lives as long as their longest-lived session and no longer; a logout
/// takes the session out of it; once every session expired, no key of the user is left.
#[tokio::test]
async fn a_users_index_follows_their_sessions() {
    let (backend, _cleanup) = backend();
    let user = format!("hygiene-{}", sessionkit_core::generate_id());
    let bound = |n: u64| {
        let mut session = data(json!({ "n": n }));
        session.set_user(Some(user.as_str().into()));
        session
    };
    let index = backend.user_key(&user);
    let short = backend
        .create(&bound(1), Some(Duration::from_millis(1_000)))
        .await
        .unwrap();
    let first = pttl(&index);
    assert!(
        (1..=1_000).contains(&first),
        "a new index takes its session's TTL: {first}"
    );
    let long = backend
        .create(&bound(2), Some(Duration::from_millis(1_500)))
        .await
        .unwrap();
    let longer = pttl(&index);
    assert!(
        (1_000..=1_500).contains(&longer),
        "extended to the longer session: {longer}"
    );
    let shorter = backend
        .create(&bound(3), Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(
        pttl(&index) > 1_000,
        "a shorter session shortened the index"
    );

    // A logout takes its session out of the index.
    backend.remove(&shorter).await.unwrap();
    let ids = backend.user_session_ids(&user).await.unwrap();
    assert!(
        !ids.contains(&shorter),
        "the logged-out session stayed indexed: {ids:?}"
    );
    assert!(ids.contains(&short) && ids.contains(&long));

    // Everything expires: no key of the user is left.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let mut conn = connect(&redis_url());
    for key in [index, backend.key(&short), backend.key(&long)] {
        let exists: i64 = redis::cmd("EXISTS").arg(&key).query(&mut conn).unwrap();
        assert_eq!(exists, 0, "{key} outlived every session of its user");
    }
}
