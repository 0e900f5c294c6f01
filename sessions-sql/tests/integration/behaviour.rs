//! Expiry, concurrency, table names, migrations, the row layout and corrupt rows, on every
//! database (each test in a table of its own).

use crate::common::{Fixture, HOUR, Kind, Raw, data, for_each_db, n, now_ms};
use serde_json::json;
use sessionkit_core::store::CorruptRecord;
use sessionkit_core::{Error, JsonSerializer, SessionBackend};
use sessionkit_sql::{CorruptRecords, SqlBackend};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

for_each_db!(
    an_expired_row_reads_as_none_before_cleanup,
    ttls_set_expires_at_in_unix_milliseconds,
    expire_applies_to_writes_without_a_ttl,
    concurrent_writes_leave_one_row_per_id,
    an_unchanged_update_still_finds_its_row,
    bad_table_names_are_refused_at_construction,
    migrate_is_idempotent_and_safe_from_several_instances_at_once,
    a_save_applies_its_changes_to_the_row_as_stored,
    a_missing_table_is_a_backend_error_naming_it,
    corrupt_rows_read_as_missing_by_default_and_fail_in_strict_mode,
    rows_hold_plain_json,
    tables_keep_backends_apart,
    closing_the_pool_is_not_held_up_by_the_backend,
    accepted_ids_follow_the_id_generator,
);

/// Two sessions loaded from one row, saved one after the other: the second save finds the row
/// changed (its version moved), reads it again and keeps the first save's key.
async fn a_save_applies_its_changes_to_the_row_as_stored<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    let id = b.create(&n(1), HOUR).await.unwrap();
    let first = b.read(&id).await.unwrap().unwrap();
    let second = b.read(&id).await.unwrap().unwrap();
    let save = |loaded: &sessionkit_core::SessionData, key: &str| {
        let mut changes = sessionkit_core::Changes::default();
        changes.set(key, json!(true));
        (
            changes.applied_to(loaded, loaded.last_access_unix() + 1),
            changes,
        )
    };
    let (session, changes) = save(&first, "cart");
    b.apply(&id, &session, &changes, HOUR).await.unwrap();
    let (session, changes) = save(&second, "last_page");
    b.apply(&id, &session, &changes, HOUR).await.unwrap();
    let stored = b.read(&id).await.unwrap().unwrap();
    for key in ["n", "cart", "last_page"] {
        assert!(stored.values().contains_key(key), "{key} lost: {stored:?}");
    }
    let version = fx
        .int(&format!("SELECT version FROM {} WHERE id = '{id}'", fx.t()))
        .await;
    assert_eq!(version, Some(2), "one bump per save");
}

async fn an_expired_row_reads_as_none_before_cleanup<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    let expired = b.create(&n(1), HOUR).await.unwrap();
    let live = b.create(&n(2), HOUR).await.unwrap();
    let forever = b.create(&n(3), None).await.unwrap();
    fx.expire_now(&expired).await;

    assert!(b.read(&expired).await.unwrap().is_none());
    assert!(!b.exists(&expired).await.unwrap());
    assert!(matches!(
        b.update(&expired, &n(9), HOUR).await,
        Err(Error::SessionGone)
    ));
    // Still in the table: only the expiry condition hides it, nothing deleted it.
    assert_eq!(fx.rows().await, 3);
    assert_eq!(fx.expired_rows().await, 1);
    assert_eq!(
        b.read(&live).await.unwrap().unwrap().values()["n"],
        json!(2)
    );
    assert!(b.exists(&forever).await.unwrap());

    // A row expires on the millisecond: `expires_at` = now is expired.
    let edge = b
        .create(&n(4), Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(b.exists(&edge).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!b.exists(&edge).await.unwrap());
    assert!(b.read(&edge).await.unwrap().is_none());
}

async fn ttls_set_expires_at_in_unix_milliseconds<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    let before = now_ms();
    let id = b
        .create(&n(1), Some(Duration::from_millis(90_500)))
        .await
        .unwrap();
    let after = now_ms();
    let at = fx.expires_at(&id).await.expect("a TTL sets expires_at");
    assert!(
        (before + 90_500..=after + 90_500).contains(&at),
        "{before} {at} {after}"
    );

    // Each write sets it anew; a write without any TTL clears it.
    b.update(&id, &n(2), Some(Duration::from_secs(7200)))
        .await
        .unwrap();
    let renewed = fx.expires_at(&id).await.unwrap();
    assert!(renewed >= before + 7_200_000, "{renewed}");
    b.update(&id, &n(3), None).await.unwrap();
    assert_eq!(fx.expires_at(&id).await, None);
    // The longest TTL there is does not overflow.
    b.update(&id, &n(4), Some(Duration::MAX)).await.unwrap();
    assert_eq!(fx.expires_at(&id).await, Some(i64::MAX));
    assert!(b.exists(&id).await.unwrap());
}

async fn expire_applies_to_writes_without_a_ttl<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = fx
        .variant()
        .with_expire(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(b.expire(), Some(Duration::from_secs(60)));
    let start = now_ms();
    let id = b.create(&n(1), None).await.unwrap();
    let at = fx.expires_at(&id).await.unwrap();
    assert!((start + 59_000..=now_ms() + 60_000).contains(&at), "{at}");
    // A write's own TTL wins.
    b.update(&id, &n(2), Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(fx.expires_at(&id).await.unwrap() <= now_ms() + 5_000);
    let zero = fx.variant().with_expire(Duration::ZERO).build().unwrap();
    assert_eq!(zero.expire(), None);
}

async fn concurrent_writes_leave_one_row_per_id<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = Arc::new(fx.backend.clone());

    let creators: Vec<_> = (0..200)
        .map(|i| {
            let b = Arc::clone(&b);
            tokio::spawn(async move { (i, b.create(&n(i), HOUR).await) })
        })
        .collect();
    let mut ids = Vec::new();
    for task in creators {
        let (i, result) = task.await.unwrap();
        let id = result.unwrap_or_else(|e| panic!("create {i} failed: {e}"));
        ids.push((i, id));
    }
    let distinct: HashSet<_> = ids.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(distinct.len(), 200);
    assert_eq!(fx.rows().await, 200);
    for (i, id) in &ids {
        assert_eq!(b.read(id).await.unwrap().unwrap().values()["n"], json!(i));
    }

    let (_, target) = ids[0].clone();
    let updaters: Vec<_> = (1000..1050)
        .map(|i| {
            let b = Arc::clone(&b);
            let target = target.clone();
            tokio::spawn(async move { (i, b.update(&target, &n(i), HOUR).await) })
        })
        .collect();
    for task in updaters {
        let (i, result) = task.await.unwrap();
        assert_eq!(
            result.unwrap_or_else(|e| panic!("update {i} failed: {e}")),
            target
        );
    }
    assert_eq!(fx.rows().await, 200, "updates must not add rows");
    let last = b.read(&target).await.unwrap().unwrap().values()["n"].clone();
    assert!(
        (1000..1050).contains(&last.as_u64().unwrap()),
        "{last}: one of the updates must have won"
    );
}

async fn an_unchanged_update_still_finds_its_row<K: Kind>() {
    // MySQL reports 0 affected rows for an update that changes nothing, unless the client
    // asks for rows *found*; a backend reading that as "gone" would drop live sessions.
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    let record = n(7);
    let id = b.create(&record, None).await.unwrap();
    for _ in 0..3 {
        assert_eq!(b.update(&id, &record, None).await.unwrap(), id);
    }
    let id = b.create(&record, HOUR).await.unwrap();
    assert_eq!(b.update(&id, &record, HOUR).await.unwrap(), id);
}

async fn bad_table_names_are_refused_at_construction<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    for bad in [
        "sessions; DROP TABLE x",
        "",
        "\"sessions\"",
        "`sessions`",
        "'sessions'",
        "sessions\"; DROP TABLE x; --",
        "a.b.c",
        "1abc",
        "sess ions",
    ] {
        let result = SqlBackend::<K::DB>::builder(fx.pool().clone())
            .with_table(bad)
            .build();
        match result {
            Err(Error::Config(message)) => assert!(message.contains("table name"), "{message}"),
            other => panic!("{bad:?}: expected a config error, got {other:?}"),
        }
    }
    // Nothing happened to the database.
    assert_eq!(fx.rows().await, 0);
    let id = fx.backend.create(&n(1), None).await.unwrap();
    assert!(fx.backend.exists(&id).await.unwrap());
}

async fn migrate_is_idempotent_and_safe_from_several_instances_at_once<K: Kind>() {
    let fx = Fixture::<K>::unmigrated();
    let instances: Vec<_> = (0..4).map(|_| fx.another_instance()).collect();
    let tasks: Vec<_> = instances
        .into_iter()
        .map(|b| tokio::spawn(async move { b.migrate().await }))
        .collect();
    for task in tasks {
        task.await.unwrap().expect("a concurrent migrate failed");
    }
    fx.backend.migrate().await.unwrap();
    let id = fx.backend.create(&n(1), HOUR).await.unwrap();
    fx.backend.migrate().await.unwrap();
    assert!(
        fx.backend.exists(&id).await.unwrap(),
        "migrate must not touch existing rows"
    );
}

async fn a_missing_table_is_a_backend_error_naming_it<K: Kind>() {
    let fx = Fixture::<K>::unmigrated();
    let b = &fx.backend;
    let check = |result: Result<(), Error>, what: &str| match result {
        Err(Error::Backend { message, .. }) => {
            assert!(message.contains(&fx.table), "{what}: {message}");
            assert!(message.contains("does not exist"), "{what}: {message}");
            assert!(message.contains("migrate()"), "{what}: {message}");
        }
        other => panic!("{what}: expected a backend error, got {other:?}"),
    };
    let id = sessionkit_core::generate_id();
    check(b.read(&id).await.map(drop), "read");
    check(b.exists(&id).await.map(drop), "exists");
    check(b.create(&n(1), None).await.map(drop), "create");
    check(b.update(&id, &n(1), None).await.map(drop), "update");
    check(b.remove(&id).await, "remove");
    check(b.delete_expired().await.map(drop), "delete_expired");
    // And once created, the same backend works.
    b.migrate().await.unwrap();
    assert!(b.read(&id).await.unwrap().is_none());
}

async fn corrupt_rows_read_as_missing_by_default_and_fail_in_strict_mode<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    let strict = fx
        .variant()
        .with_corrupt_records(CorruptRecords::Fail)
        .build()
        .unwrap();
    let garbage = K::DB::bytes_literal(b"\xff\x00 not a session");
    let plant = |id: &str| format!("UPDATE {} SET data = {garbage} WHERE id = '{id}'", fx.t());

    // Strict: the read fails, names the table and the masked id, and keeps the row.
    let id = b.create(&n(1), HOUR).await.unwrap();
    fx.exec(&plant(&id)).await;
    let err = strict.read(&id).await.unwrap_err();
    let message = err.to_string();
    let masked = format!("{}…", &id[..6]);
    assert!(message.contains(&masked), "{message}");
    assert!(message.contains(&fx.table), "{message}");
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
        .expect("the source names the row");
    assert!(corrupt.location().contains(&masked));
    assert!(corrupt.location().contains(&fx.table));
    assert!(b.exists(&id).await.unwrap(), "strict mode keeps the row");
    b.update(&id, &n(2), HOUR).await.unwrap();
    assert_eq!(
        strict.read(&id).await.unwrap().unwrap().values()["n"],
        json!(2)
    );

    // Default: the same row reads as missing and is deleted.
    fx.exec(&plant(&id)).await;
    assert!(b.read(&id).await.unwrap().is_none());
    assert_eq!(fx.rows().await, 0, "the corrupt row was deleted");
    assert!(matches!(
        b.update(&id, &n(3), HOUR).await,
        Err(Error::SessionGone)
    ));

    #[cfg(feature = "bincode")]
    {
        // A row from another serializer is corrupt to this one, in both modes.
        let binary = fx
            .variant()
            .with_serializer(sessionkit_core::BincodeSerializer)
            .build()
            .unwrap();
        let id = b.create(&n(4), HOUR).await.unwrap();
        let strict_binary = fx
            .variant()
            .with_serializer(sessionkit_core::BincodeSerializer)
            .with_corrupt_records(CorruptRecords::Fail)
            .build()
            .unwrap();
        assert!(matches!(
            strict_binary.read(&id).await,
            Err(Error::Serialization { .. })
        ));
        assert!(binary.read(&id).await.unwrap().is_none());
        assert!(!b.exists(&id).await.unwrap(), "deleted");
        let other = binary.create(&n(5), HOUR).await.unwrap();
        assert!(strict.read(&other).await.is_err());
        assert_eq!(
            binary.read(&other).await.unwrap().unwrap().values()["n"],
            json!(5)
        );
    }
}

async fn rows_hold_plain_json<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let id = fx
        .backend
        .create(&data(json!({"user_id": 42})), None)
        .await
        .unwrap();
    let raw = K::DB::bytes(
        fx.pool(),
        &format!("SELECT data FROM {} WHERE id = '{id}'", fx.t()),
    )
    .await;
    let stored: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(stored["data"], json!({"user_id": 42}));
    assert!(stored["created"].is_u64());
    let _: &JsonSerializer = fx.backend.serializer();
    assert_eq!(fx.backend.table(), fx.table);
    let debug = format!("{:?}", fx.backend);
    assert!(debug.contains(&fx.table), "{debug}");
}

async fn tables_keep_backends_apart<K: Kind>() {
    let a = Fixture::<K>::new().await;
    let b = Fixture::<K>::new().await;
    let id = a.backend.create(&n(1), None).await.unwrap();
    assert!(b.backend.read(&id).await.unwrap().is_none());
    assert!(!b.backend.exists(&id).await.unwrap());
    assert!(matches!(
        b.backend.update(&id, &n(2), None).await,
        Err(Error::SessionGone)
    ));
    b.backend.remove(&id).await.unwrap();
    assert!(a.backend.exists(&id).await.unwrap());
}

async fn closing_the_pool_is_not_held_up_by_the_backend<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    // Several connections in use at once, so the backend holds more than one.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let b = fx.backend.clone();
            tokio::spawn(async move { b.create(&n(i), HOUR).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), fx.pool().close())
        .await
        .expect("pool.close() waited for connections the backend holds");
    match fx.backend.read(&sessionkit_core::generate_id()).await {
        Err(Error::Backend { message, .. }) => assert!(message.contains("closed"), "{message}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

async fn accepted_ids_follow_the_id_generator<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    let id = b.create(&n(1), HOUR).await.unwrap();
    assert!(b.read(&id).await.unwrap().is_some());
    // Values the default generator never makes read as no session (without a statement).
    for other in [
        "short",
        "has space in it at all",
        "ü-ü-ü-ü-ü-ü-ü-ü-ü",
        &"x".repeat(129),
    ] {
        assert!(b.read(other).await.unwrap().is_none(), "{other:?}");
    }

    // A custom generator's format is read, as long as it can be stored.
    let custom = fx
        .variant()
        .with_id_generator(Arc::new(|| format!("u.{}", sessionkit_core::generate_id())))
        .build()
        .unwrap();
    let id = custom.create(&n(2), HOUR).await.unwrap();
    assert!(id.starts_with("u."));
    assert_eq!(
        custom.read(&id).await.unwrap().unwrap().values()["n"],
        json!(2)
    );

    // One that makes ids the table cannot hold is refused, and nothing is stored.
    let bad = fx
        .variant()
        .with_id_generator(Arc::new(|| "white space".to_owned()))
        .build()
        .unwrap();
    assert!(matches!(
        bad.create(&n(3), HOUR).await,
        Err(Error::Config(_))
    ));
    assert_eq!(fx.rows().await, 2);
}

/// `migrate` makes SQLite tables `WITHOUT ROWID`; a table with a rowid (as a hand-written
/// migration may make it) serves the same operations.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_table_with_a_rowid_serves_every_operation() {
    let fx = Fixture::<crate::common::SqliteFile>::unmigrated();
    fx.exec(&format!(
        "CREATE TABLE {} (id TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL, \
         expires_at INTEGER, version INTEGER NOT NULL DEFAULT 0, accessed_at INTEGER, \
         user_id TEXT)",
        fx.t()
    ))
    .await;
    fx.backend.migrate().await.unwrap();
    let layout = table_sql(&fx).await;
    assert!(!layout.contains("WITHOUT ROWID"), "{layout}");

    let b = &fx.backend;
    let id = b.create(&n(1), HOUR).await.unwrap();
    assert_eq!(b.read(&id).await.unwrap(), Some(n(1)));
    assert_eq!(b.update(&id, &n(2), HOUR).await.unwrap(), id);
    assert_eq!(b.read(&id).await.unwrap(), Some(n(2)));
    assert!(b.exists(&id).await.unwrap());
    let gone = b.create(&n(3), HOUR).await.unwrap();
    fx.expire_now(&gone).await;
    assert_eq!(b.delete_expired().await.unwrap(), 1);
    // A removal leaves the end marker, which is no session, until the clean-up after its
    // grace.
    b.remove(&id).await.unwrap();
    fx.assert_end_marker(&id).await;
    assert_eq!(fx.rows().await, 1, "the end marker");
    assert!(b.read(&id).await.unwrap().is_none());
    assert!(matches!(
        b.lookup(&id).await.unwrap(),
        sessionkit_core::Lookup::Ended
    ));
    assert!(
        !b.exists(&id).await.unwrap(),
        "an end marker exists as a session"
    );
    assert_eq!(
        b.delete_expired().await.unwrap(),
        0,
        "a marker went before its grace"
    );
    fx.expire_now(&id).await;
    assert_eq!(b.delete_expired().await.unwrap(), 1);
    assert_eq!(fx.rows().await, 0);
}

/// What `migrate` creates on SQLite by default: the table is `WITHOUT ROWID`.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_makes_sqlite_tables_without_rowid() {
    let fx = Fixture::<crate::common::SqliteFile>::new().await;
    let layout = table_sql(&fx).await;
    assert!(layout.ends_with("WITHOUT ROWID"), "{layout}");
}

/// The `CREATE TABLE` statement SQLite keeps for the fixture's table.
#[cfg(feature = "sqlite")]
async fn table_sql(fx: &Fixture<crate::common::SqliteFile>) -> String {
    let (sql,): (String,) =
        sqlx::query_as("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .bind(&fx.table)
            .fetch_one(fx.pool())
            .await
            .unwrap();
    sql
}
