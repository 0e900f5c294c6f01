//! Sessions bound to a user, on every database: the `user_id` column each write keeps, and
//! listing and revocation beyond what the conformance suite checks (each test in a table of
//! its own).

use crate::common::{Fixture, HOUR, Kind, Raw, for_each_db, n, now_ms};
use serde_json::json;
use sessionkit_core::{Changes, DeviceId, Error, MAX_USER_LEN, SessionBackend, SessionData};
use sessionkit_sql::CorruptRecords;
use std::sync::Arc;

for_each_db!(
    the_user_id_column_follows_every_write,
    users_compare_exactly,
    a_user_over_the_limit_is_refused_and_one_at_it_is_stored,
    corrupt_rows_are_left_out_of_a_listing_as_a_read_leaves_them,
    expired_sessions_are_neither_listed_nor_revoked,
);

fn bound(n: u64, user: &str) -> SessionData {
    let mut data = crate::common::n(n);
    data.set_user(Some(user.into()));
    data
}

fn fresh_user() -> String {
    format!("user-{}", sessionkit_core::generate_id())
}

/// Apply `changes` to the session `id` as loaded now, as the session layer saves it.
async fn save<B: SessionBackend>(b: &B, id: &str, changes: &Changes) -> Result<(), Error> {
    let loaded = b.read(id).await?.ok_or(Error::SessionGone)?;
    let session = changes.applied_to(&loaded, now_ms() as u64 / 1000);
    b.apply(id, &session, changes, HOUR).await.map(drop)
}

fn binding(user: Option<&str>) -> Changes {
    let mut changes = Changes::default();
    changes.set_user(user.map(Arc::from));
    changes
}

impl<K: Kind> Fixture<K> {
    /// How many rows hold `id` with `user_id` = `user` (`None`: `NULL`).
    async fn bound_rows(&self, id: &str, user: Option<&str>) -> i64 {
        let condition = match user {
            Some(user) => format!("user_id = '{user}'"),
            None => "user_id IS NULL".to_owned(),
        };
        self.int(&format!(
            "SELECT COUNT(*) FROM {} WHERE id = '{id}' AND {condition}",
            self.t()
        ))
        .await
        .unwrap()
    }
}

async fn the_user_id_column_follows_every_write<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    let (alice, bob) = (fresh_user(), fresh_user());
    // A create.
    let id = b.create(&bound(1, &alice), HOUR).await.unwrap();
    assert_eq!(fx.bound_rows(&id, Some(&alice)).await, 1);
    let unbound = b.create(&n(1), HOUR).await.unwrap();
    assert_eq!(fx.bound_rows(&unbound, None).await, 1);
    // A save that changes only values keeps the binding.
    let mut changes = Changes::default();
    changes.set("m", json!(2));
    save(b, &id, &changes).await.unwrap();
    assert_eq!(fx.bound_rows(&id, Some(&alice)).await, 1);
    // Saves that rebind and unbind.
    save(b, &id, &binding(Some(&bob))).await.unwrap();
    assert_eq!(fx.bound_rows(&id, Some(&bob)).await, 1);
    save(b, &id, &binding(None)).await.unwrap();
    assert_eq!(fx.bound_rows(&id, None).await, 1);
    // A direct update.
    b.update(&id, &bound(3, &alice), HOUR).await.unwrap();
    assert_eq!(fx.bound_rows(&id, Some(&alice)).await, 1);
    b.update(&id, &n(4), HOUR).await.unwrap();
    assert_eq!(fx.bound_rows(&id, None).await, 1);
    // A save that must read the row again (another save came in between) binds it too.
    let loaded = b.read(&id).await.unwrap().unwrap();
    b.update(&id, &n(5), HOUR).await.unwrap();
    let changes = binding(Some(&bob));
    let session = changes.applied_to(&loaded, now_ms() as u64 / 1000);
    b.apply(&id, &session, &changes, HOUR).await.unwrap();
    assert_eq!(fx.bound_rows(&id, Some(&bob)).await, 1);
    assert_eq!(b.read(&id).await.unwrap().unwrap().values()["n"], json!(5));
    // A revoked session stays revoked: a save of it as loaded before is SessionGone.
    let loaded = b.read(&id).await.unwrap().unwrap();
    assert_eq!(b.revoke_user_sessions(&bob, None).await.unwrap(), 1);
    let mut changes = Changes::default();
    changes.set("late", json!(true));
    let session = changes.applied_to(&loaded, now_ms() as u64 / 1000);
    assert!(matches!(
        b.apply(&id, &session, &changes, HOUR).await,
        Err(Error::SessionGone)
    ));
    assert!(matches!(
        b.update(&id, &bound(6, &bob), HOUR).await,
        Err(Error::SessionGone)
    ));
    assert_eq!(fx.rows().await, 1, "only the unbound session is left");
}

/// Users are compared byte for byte on every database: no case folding, no trailing-space
/// padding (MySQL's `_bin` collations of a character set pad; `VARBINARY` does not).
async fn users_compare_exactly<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    let base = fresh_user();
    let users = [
        base.clone(),
        format!("{base} "),
        base.to_uppercase(),
        format!("{base}\u{e9}"),
    ];
    let mut ids = Vec::new();
    for user in &users {
        ids.push(b.create(&bound(1, user), HOUR).await.unwrap());
    }
    for (user, id) in users.iter().zip(&ids) {
        assert_eq!(
            b.user_session_ids(user).await.unwrap(),
            [id.as_str()],
            "{user:?}"
        );
        let listed = b.user_sessions(user).await.unwrap();
        assert_eq!(listed.len(), 1, "{user:?}");
        assert_eq!(listed[0].id, DeviceId::of(id));
    }
    assert_eq!(b.revoke_user_sessions(&base, None).await.unwrap(), 1);
    assert!(b.read(&ids[0]).await.unwrap().is_none());
    for id in &ids[1..] {
        assert!(b.exists(id).await.unwrap(), "another user's session went");
    }
    // Revoking one by handle needs the user it is bound to.
    assert!(
        !b.revoke_user_session(&base, &DeviceId::of(&ids[1]))
            .await
            .unwrap()
    );
    assert!(
        b.revoke_user_session(&users[1], &DeviceId::of(&ids[1]))
            .await
            .unwrap()
    );
    // A kept id the table cannot hold keeps nothing (and is never sent).
    let other = b.create(&bound(2, &users[2]), HOUR).await.unwrap();
    assert_eq!(
        b.revoke_user_sessions(&users[2], Some("not an id ü"))
            .await
            .unwrap(),
        2
    );
    assert!(!b.exists(&other).await.unwrap());
    assert_eq!(fx.rows().await, 1);
}

async fn a_user_over_the_limit_is_refused_and_one_at_it_is_stored<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    // 255 bytes, of two-byte characters: the limit is in bytes.
    let longest = format!("{}x", "\u{e9}".repeat((MAX_USER_LEN - 1) / 2));
    assert_eq!(longest.len(), MAX_USER_LEN);
    let id = b.create(&bound(1, &longest), HOUR).await.unwrap();
    assert_eq!(
        b.read(&id).await.unwrap().unwrap().user(),
        Some(longest.as_str())
    );
    assert_eq!(b.user_session_ids(&longest).await.unwrap(), [id.as_str()]);

    let over = format!("{longest}y");
    let refused = |result: Result<String, Error>| {
        assert!(
            matches!(result, Err(Error::InvalidUser { len }) if len == MAX_USER_LEN + 1),
            "{result:?}"
        )
    };
    refused(b.create(&bound(2, &over), HOUR).await);
    refused(b.update(&id, &bound(2, &over), HOUR).await);
    match save(b, &id, &binding(Some(&over))).await {
        Err(Error::InvalidUser { len }) => assert_eq!(len, MAX_USER_LEN + 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.rows().await, 1);
    assert_eq!(
        b.read(&id).await.unwrap().unwrap().user(),
        Some(longest.as_str())
    );
    // Nothing is bound to such a user, and no statement is needed to say so.
    assert!(b.user_sessions(&over).await.unwrap().is_empty());
    assert_eq!(b.revoke_user_sessions(&over, None).await.unwrap(), 0);
}

async fn corrupt_rows_are_left_out_of_a_listing_as_a_read_leaves_them<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    let user = fresh_user();
    let good = b.create(&bound(1, &user), HOUR).await.unwrap();
    let corrupt = sessionkit_core::generate_id();
    fx.exec(&format!(
        "INSERT INTO {} (id, data, expires_at, user_id) VALUES ('{corrupt}', {}, NULL, '{user}')",
        fx.t(),
        K::DB::bytes_literal(b"\xff not a record")
    ))
    .await;
    // A row whose column says the user but whose record does not (a hand edit): left out.
    let mislabelled = b.create(&n(2), HOUR).await.unwrap();
    fx.exec(&format!(
        "UPDATE {} SET user_id = '{user}' WHERE id = '{mislabelled}'",
        fx.t()
    ))
    .await;

    let strict = fx
        .variant()
        .with_corrupt_records(CorruptRecords::Fail)
        .build()
        .unwrap();
    match strict.user_sessions(&user).await {
        Err(Error::Serialization { .. }) => {}
        other => panic!("strict mode must fail the listing: {other:?}"),
    }
    assert_eq!(fx.rows().await, 3, "strict mode deleted a row");

    let listed = b.user_sessions(&user).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, DeviceId::of(&good));
    assert!(
        !b.exists(&corrupt).await.unwrap(),
        "the undecodable row was kept"
    );
    assert!(b.exists(&mislabelled).await.unwrap());
    assert_eq!(fx.rows().await, 2);
}

async fn expired_sessions_are_neither_listed_nor_revoked<K: Kind>() {
    let fx = Fixture::<K>::new().await;
    let b = &fx.backend;
    let user = fresh_user();
    let expired = b.create(&bound(1, &user), HOUR).await.unwrap();
    let live = b.create(&bound(2, &user), HOUR).await.unwrap();
    fx.expire_now(&expired).await;
    assert_eq!(b.user_session_ids(&user).await.unwrap(), [live.as_str()]);
    assert_eq!(b.user_sessions(&user).await.unwrap().len(), 1);
    assert!(
        !b.revoke_user_session(&user, &DeviceId::of(&expired))
            .await
            .unwrap()
    );
    assert_eq!(b.revoke_user_sessions(&user, Some(&live)).await.unwrap(), 0);
    assert_eq!(b.revoke_user_sessions(&user, None).await.unwrap(), 1);
    // The expired row is the cleanup's.
    assert_eq!(fx.rows().await, 1);
    assert_eq!(b.delete_expired().await.unwrap(), 1);
}

/// SQLite finds a user's sessions through the partial index on `user_id`, for every
/// statement that searches by user (the revocation of one session goes by its id).
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_searches_by_user_through_the_index() {
    let fx = Fixture::<crate::common::SqliteFile>::new().await;
    // Some rows, bound and not, so the plan is not of an empty table.
    for i in 0..50 {
        let data = if i % 5 == 0 {
            bound(i, &fresh_user())
        } else {
            n(i)
        };
        fx.backend.create(&data, HOUR).await.unwrap();
    }
    let index = format!("{}_user_id_idx", fx.table);
    let t = fx.t();
    let live = "(expires_at IS NULL OR expires_at > ?2)";
    let live3 = "(expires_at IS NULL OR expires_at > ?3)";
    // The statements of sessionkit-sql's driver for SQLite, as its docs show them.
    for (sql, kept) in [
        (
            format!("SELECT id FROM {t} WHERE user_id = ?1 AND {live}"),
            None,
        ),
        (
            format!("SELECT id, data, version FROM {t} WHERE user_id = ?1 AND {live}"),
            None,
        ),
        (
            format!("DELETE FROM {t} WHERE user_id = ?1 AND {live}"),
            None,
        ),
        (
            format!("DELETE FROM {t} WHERE user_id = ?1 AND id <> ?2 AND {live3}"),
            Some("an-id"),
        ),
        // Revoking one by handle deletes by id: the primary key serves it.
        (
            format!("DELETE FROM {t} WHERE user_id = ?1 AND id = ?2 AND {live3}"),
            Some("an-id"),
        ),
    ] {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain).bind("someone");
        if let Some(id) = kept {
            query = query.bind(id);
        }
        let plan = query.bind(now_ms()).fetch_all(fx.pool()).await.unwrap();
        let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        let by = if sql.contains("id = ?2") {
            "PRIMARY KEY (id=?)"
        } else {
            index.as_str()
        };
        assert!(details.iter().any(|d| d.contains(by)), "{sql}: {details:?}");
    }
}
