//! One backend operation is one Redis command, counted with `INFO commandstats` on a server
//! of this test's own (so nobody else's commands are counted), with every command logged to
//! its slowlog so the exact arguments can be checked too.

use crate::common::{RedisServer, command_calls, connect};
use deadpool_redis::redis::{self, Value};
use serde_json::json;
use sessionkit_core::{ENDED_GRACE, Error, Lookup, SessionBackend, SessionData};
use sessionkit_redis::RedisBackend;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

/// What one operation sent: the commands counted, and the arguments of each.
struct Observed {
    counts: BTreeMap<String, u64>,
    commands: Vec<Vec<String>>,
}

/// The commands not sent by the backend: those of the test's own observing connection.
fn observer_command(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "info" || name.starts_with("slowlog")
}

async fn observe<T>(
    conn: &mut redis::Connection,
    operation: impl std::future::Future<Output = T>,
) -> (T, Observed) {
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(conn).unwrap();
    let before = command_calls(conn);
    let result = operation.await;
    let after = command_calls(conn);
    let counts = delta(&before, &after);
    let entries: Vec<Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(100)
        .query(conn)
        .unwrap();
    let mut commands: Vec<Vec<String>> = entries
        .iter()
        .filter_map(|entry| match entry {
            // Commands a script ran are logged too, from the client "?:0": not sent.
            Value::Array(fields)
                if matches!(fields.get(4), Some(Value::BulkString(client)) if client == b"?:0") =>
            {
                None
            }
            Value::Array(fields) => match fields.get(3) {
                Some(Value::Array(args)) => Some(
                    args.iter()
                        .map(|arg| match arg {
                            Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                            Value::SimpleString(s) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            },
            _ => None,
        })
        .filter(|args| args.first().is_some_and(|name| !observer_command(name)))
        .collect();
    commands.reverse(); // the slowlog lists the newest first
    (result, Observed { counts, commands })
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| !observer_command(name))
        .filter_map(|(name, &calls)| {
            let diff = calls - before.get(name).copied().unwrap_or(0);
            (diff > 0).then(|| (name.clone(), diff))
        })
        .collect()
}

fn one(name: &str) -> BTreeMap<String, u64> {
    BTreeMap::from([(name.to_owned(), 1)])
}

fn data(n: u64) -> SessionData {
    let mut data = SessionData::default();
    data.values_mut().insert("n".into(), json!(n));
    data
}

/// A server of the test's own that logs every command (its slowlog), a connection to read the
/// log, and a backend on it; the server comes along, to outlive them.
fn logged_server() -> (RedisServer, redis::Connection, RedisBackend) {
    let server =
        RedisServer::start(&["--slowlog-log-slower-than", "0", "--slowlog-max-len", "100"]);
    let conn = connect(&server.url());
    let backend = RedisBackend::from_url(&server.url())
        .unwrap()
        .with_prefix("rt:");
    (server, conn, backend)
}

#[tokio::test]
async fn every_operation_is_exactly_one_command() {
    let (server, mut conn, backend) = logged_server();

    // The first operation also sets the connection up (the client introduces itself); count
    // from the second on, as every request after the first one sees it.
    backend.exists("warm-up").await.unwrap();

    let (id, seen) = observe(&mut conn, backend.create(&data(1), HOUR)).await;
    let id = id.unwrap();
    assert_eq!(seen.counts, one("set"), "create");
    let key = format!("rt:{id}");
    let [create] = &seen.commands[..] else {
        panic!("create sent {:?}", seen.commands)
    };
    assert_eq!(create[..2], ["SET".to_owned(), key.clone()]);
    assert_eq!(create[3..], ["NX", "PX", "3600000"]);

    let (read, seen) = observe(&mut conn, backend.read(&id)).await;
    assert_eq!(read.unwrap().unwrap().values()["n"], json!(1));
    assert_eq!(seen.counts, one("get"), "read");
    assert_eq!(seen.commands, [vec!["GET".to_owned(), key.clone()]]);

    // An update runs the save's script (loaded by a first update, outside the count): it
    // stores the value unless the key holds nothing or an end marker.
    backend.update(&id, &data(2), HOUR).await.unwrap();
    let (updated, seen) = observe(&mut conn, backend.update(&id, &data(2), HOUR)).await;
    assert_eq!(updated.unwrap(), id);
    assert_eq!(sent(&seen), ["EVALSHA"], "update");
    assert_eq!(seen.commands[0][3], key);
    assert_eq!(seen.commands[0][5..6], ["put".to_owned()]);
    assert_eq!(seen.commands[0][7], "3600000");

    let (exists, seen) = observe(&mut conn, backend.exists(&id)).await;
    assert!(exists.unwrap());
    assert_eq!(seen.counts, one("get"), "exists");
    assert_eq!(seen.commands, [vec!["GET".to_owned(), key.clone()]]);

    // A removal makes the record the end marker for ENDED_GRACE, in one script (loaded by a
    // first removal, outside the count), and only where a session is.
    let warm = backend.create(&data(9), HOUR).await.unwrap();
    backend.remove(&warm).await.unwrap();
    let (removed, seen) = observe(&mut conn, backend.remove(&id)).await;
    removed.unwrap();
    assert_eq!(sent(&seen), ["EVALSHA"], "remove of an unbound session");
    assert_eq!(seen.commands[0][3], key);
    assert_eq!(
        seen.commands[0][4..],
        [
            String::from_utf8_lossy(ENDED_MARKER).into_owned(),
            ENDED_GRACE.as_millis().to_string(),
        ]
    );
    assert_holds_end_marker(&mut conn, &key);

    // The marker is no session: a read and `exists` say so, `lookup` tells it ended.
    let (missing, seen) = observe(&mut conn, backend.read(&id)).await;
    assert!(missing.unwrap().is_none());
    assert_eq!(seen.counts, one("get"), "read of a removed record");
    let (exists, seen) = observe(&mut conn, backend.exists(&id)).await;
    assert!(!exists.unwrap(), "an end marker exists as a session");
    assert_eq!(seen.counts, one("get"), "exists of a removed record");
    let (ended, seen) = observe(&mut conn, backend.lookup(&id)).await;
    assert!(matches!(ended, Ok(Lookup::Ended)), "{ended:?}");
    assert_eq!(seen.counts, one("get"), "lookup of a removed record");
    assert_eq!(seen.commands, [vec!["GET".to_owned(), key.clone()]]);
    let never = sessionkit_core::generate_id();
    let (missing, seen) = observe(&mut conn, backend.lookup(&never)).await;
    assert!(matches!(missing, Ok(Lookup::Missing)), "{missing:?}");
    assert_eq!(seen.counts, one("get"), "lookup of an id never stored");

    // Without any TTL: no PX, and no KEEPTTL either.
    let removed_id = id;
    let (id, seen) = observe(&mut conn, backend.create(&data(4), None)).await;
    let id = id.unwrap();
    assert_eq!(seen.counts, one("set"), "create without TTL");
    assert_eq!(seen.commands[0].len(), 4, "{:?}", seen.commands);
    assert_eq!(seen.commands[0][3], "NX");
    let (_, seen) = observe(&mut conn, backend.update(&id, &data(5), None)).await;
    assert_eq!(sent(&seen), ["EVALSHA"], "update without TTL");
    assert_eq!(seen.commands[0][7], "", "{:?}", seen.commands);

    // An update of a removed session: one EVALSHA, answered nil, and nothing stored: the
    // key keeps the end marker.
    let (gone, seen) = observe(&mut conn, backend.update(&removed_id, &data(3), HOUR)).await;
    assert!(matches!(gone, Err(Error::SessionGone)), "{gone:?}");
    assert_eq!(sent(&seen), ["EVALSHA"], "update of a removed session");
    assert_holds_end_marker(&mut conn, &key);
    assert!(backend.read(&removed_id).await.unwrap().is_none());

    server.stop();
}

/// What a key holds for [`ENDED_GRACE`] after its session ended.
const ENDED_MARKER: &[u8] = b"\0sessionkit:ended";

/// Fail unless `key` holds the end marker, expiring within [`ENDED_GRACE`].
fn assert_holds_end_marker(conn: &mut redis::Connection, key: &str) {
    let stored: Option<Vec<u8>> = redis::cmd("GET").arg(key).query(conn).unwrap();
    assert_eq!(stored.as_deref(), Some(ENDED_MARKER), "{key}");
    let pttl: i64 = redis::cmd("PTTL").arg(key).query(conn).unwrap();
    let grace = i64::try_from(ENDED_GRACE.as_millis()).unwrap();
    assert!(
        pttl > 0 && pttl <= grace,
        "{key}: the end marker's PTTL is {pttl} ms"
    );
}

/// Saves of sessions never bound to a user send what they always did; the save that binds one
/// sends one command more (the index entry), and later saves of the bound session none.
#[tokio::test]
async fn binding_a_user_costs_one_command_on_the_save_that_binds_it() {
    use sessionkit_core::Changes;
    let (server, mut conn, backend) = logged_server();
    let binding = |user: &str| {
        let mut changes = Changes::default();
        changes.set_user(Some(user.into()));
        changes
    };
    let save = |id: String, changes: Changes| {
        let backend = &backend;
        async move {
            let loaded = backend.read(&id).await.unwrap().unwrap();
            let session = changes.applied_to(&loaded, loaded.last_access_unix() + 1);
            let saved = backend.apply(&id, &session, &changes, HOUR).await.unwrap();
            assert_eq!(saved.as_deref(), Some(id.as_str()), "saved under its id");
            session
        }
    };
    // Warm up: the connection, and the scripts loaded (SCRIPT LOAD once each).
    let warm = backend.create(&data(0), HOUR).await.unwrap();
    save(warm.clone(), binding("warm")).await;
    let mut touch = Changes::default();
    touch.set("touched", json!(true));
    save(warm.clone(), touch).await;
    assert_eq!(backend.revoke_user_sessions("warm", None).await.unwrap(), 1);

    let id = backend.create(&data(1), HOUR).await.unwrap();
    let mut setting = Changes::default();
    setting.set("n", json!(2));
    let (_, seen) = observe(&mut conn, save(id.clone(), setting.clone())).await;
    let unbound = sent(&seen);
    assert_eq!(
        unbound,
        ["GET", "EVALSHA"],
        "an unbound save (the read, then the save)"
    );

    let (record, seen) = observe(&mut conn, save(id.clone(), binding("42"))).await;
    assert_eq!(record.user(), Some("42"));
    assert_eq!(
        sent(&seen),
        ["GET", "EVALSHA", "EVALSHA"],
        "the binding save: one command more"
    );
    let index = &seen.commands[2];
    assert_eq!(
        index[2..5],
        ["1".to_owned(), "rt:user:{42}".to_owned(), id.clone()]
    );

    // A later save of the bound session: the same, and its user's index extended alongside.
    let (_, seen) = observe(&mut conn, save(id.clone(), setting)).await;
    assert_eq!(
        sent(&seen),
        [unbound.as_slice(), &["EVALSHA".to_owned()]].concat(),
        "a later save of the bound session"
    );

    // A create already bound (a login that moves the session to a new id): SET and the index.
    let mut bound = data(3);
    bound.set_user(Some("42".into()));
    let (created, seen) = observe(&mut conn, backend.create(&bound, HOUR)).await;
    created.unwrap();
    assert_eq!(sent(&seen), ["SET", "EVALSHA"]);
    let (unbound_create, seen) = observe(&mut conn, backend.create(&data(4), HOUR)).await;
    unbound_create.unwrap();
    assert_eq!(sent(&seen), ["SET"], "an unbound create");

    // Listing: the index, then each session; revoking: each session read and deleted as read.
    let (listed, seen) = observe(&mut conn, backend.user_sessions("42")).await;
    assert_eq!(listed.unwrap().len(), 2);
    assert_eq!(sent(&seen), ["ZRANGE", "GET", "GET"]);
    let (revoked, seen) = observe(&mut conn, backend.revoke_user_sessions("42", None)).await;
    assert_eq!(revoked.unwrap(), 2);
    assert_eq!(
        sent(&seen),
        ["EVALSHA", "GET", "EVALSHA", "GET", "EVALSHA"],
        "the index taken in one script, then each session read and deleted as read"
    );
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg("rt:user:{42}")
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert!(left.is_empty(), "the index kept revoked sessions: {left:?}");
    server.stop();
}

/// The commands an operation sent, by name (`INFO commandstats` also counts those a script
/// ran).
fn sent(seen: &Observed) -> Vec<String> {
    seen.commands
        .iter()
        .map(|args| args[0].to_ascii_uppercase())
        .collect()
}

/// A session bound to a user is in the user's index or nowhere: when the index cannot be
/// written (here an ACL lets the backend touch session keys only), the save fails and no
/// bound session is left, so none escapes a "log out everywhere": a create's record is
/// deleted again (it never served a request: no end marker is left for it), and the session
/// a save tried to bind ends.
#[tokio::test]
async fn a_binding_the_index_refuses_fails_the_save_and_leaves_no_bound_session() {
    use sessionkit_core::Changes;
    use std::sync::Arc;
    let server = RedisServer::start(&[]);
    let mut admin = connect(&server.url());
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("on")
        .arg(">app-password")
        .arg("~ix:A*")
        .arg("+@all")
        .query(&mut admin)
        .unwrap();
    let url = format!("redis://app:app-password@127.0.0.1:{}", server.port());
    let backend = RedisBackend::from_url(&url)
        .unwrap()
        .with_prefix("ix:")
        .with_id_generator(Arc::new(|| format!("A{}", sessionkit_core::generate_id())));
    let keys = |admin: &mut redis::Connection| -> Vec<String> {
        redis::cmd("KEYS").arg("ix:*").query(admin).unwrap()
    };

    let unbound = backend.create(&data(1), HOUR).await.unwrap();
    let mut bound = data(2);
    bound.set_user(Some("42".into()));
    let refused = backend.create(&bound, HOUR).await;
    assert!(matches!(refused, Err(Error::Backend { .. })), "{refused:?}");
    assert_eq!(
        keys(&mut admin),
        [format!("ix:{unbound}")],
        "a bound create was left"
    );

    let loaded = backend.read(&unbound).await.unwrap().unwrap();
    let mut binding = Changes::default();
    binding.set_user(Some("42".into()));
    let session = binding.applied_to(&loaded, loaded.last_access_unix());
    let refused = backend.apply(&unbound, &session, &binding, HOUR).await;
    assert!(matches!(refused, Err(Error::Backend { .. })), "{refused:?}");
    assert!(
        backend.read(&unbound).await.unwrap().is_none(),
        "a session bound outside the index is still there"
    );
    // What is left under its key is no session: nothing, or the marker of a session that
    // ended.
    for key in keys(&mut admin) {
        assert_eq!(key, format!("ix:{unbound}"), "a key was left");
        assert_holds_end_marker(&mut admin, &key);
    }

    // Saves that bind no one are untouched by the index's troubles.
    let id = backend.create(&data(3), HOUR).await.unwrap();
    let loaded = backend.read(&id).await.unwrap().unwrap();
    let mut setting = Changes::default();
    setting.set("n", json!(4));
    let session = setting.applied_to(&loaded, loaded.last_access_unix());
    assert!(matches!(
        backend.apply(&id, &session, &setting, HOUR).await,
        Ok(Some(_))
    ));
    server.stop();
}

/// A Redis that no longer knows the scripts (restarted, or `SCRIPT FLUSH`) answers the save's
/// `EVALSHA` with `NOSCRIPT`: `redis::Script` loads the script and the save goes through,
/// costing `SCRIPT LOAD` and a second `EVALSHA` once, and nothing more after.
#[tokio::test]
async fn a_save_after_the_scripts_were_flushed_loads_them_and_succeeds() {
    use sessionkit_core::Changes;
    let (server, mut conn, backend) = logged_server();
    let save = |id: String, n: u64| {
        let backend = &backend;
        async move {
            let loaded = backend.read(&id).await.unwrap().unwrap();
            let mut changes = Changes::default();
            changes.set("n", json!(n));
            let session = changes.applied_to(&loaded, loaded.last_access_unix() + 1);
            backend.apply(&id, &session, &changes, HOUR).await
        }
    };
    let id = backend.create(&data(1), HOUR).await.unwrap();
    save(id.clone(), 2).await.unwrap();

    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    let (saved, seen) = observe(&mut conn, save(id.clone(), 3)).await;
    assert_eq!(saved.unwrap().as_deref(), Some(id.as_str()));
    assert_eq!(sent(&seen), ["GET", "EVALSHA", "SCRIPT", "EVALSHA"]);
    let (saved, seen) = observe(&mut conn, save(id.clone(), 4)).await;
    assert_eq!(saved.unwrap().as_deref(), Some(id.as_str()));
    assert_eq!(sent(&seen), ["GET", "EVALSHA"], "loaded once, known after");
    assert_eq!(
        backend.read(&id).await.unwrap().unwrap().values()["n"],
        json!(4)
    );
    server.stop();
}

/// A request of a locked route, as the session layer runs it: the lock, the read, then the
/// handler's change (if any) and the save. Returns what it sent.
async fn locked_request(
    conn: &mut redis::Connection,
    layer: &std::sync::Arc<dyn sessionkit_core::adapter::Context>,
    cookie: &str,
    locking: Option<&sessionkit_core::Locking>,
    change: bool,
) -> Observed {
    use sessionkit_core::adapter;
    let request = async {
        let lazy = adapter::session(std::sync::Arc::clone(layer), Some(cookie.into()));
        if let Some(locking) = locking {
            adapter::lock(&lazy, locking).await.unwrap();
        }
        let session = lazy.load().await.unwrap();
        if change {
            let n: u64 = session.get("n").unwrap().unwrap_or(0);
            session.insert("n", n + 1).unwrap();
        }
        adapter::commit(&lazy).await.unwrap()
    };
    observe(conn, request).await.1
}

#[tokio::test]
async fn a_locked_request_costs_the_lock_and_its_save_gives_it_back() {
    use sessionkit_core::adapter::{Context, Policy, Shared};
    let (server, mut conn, backend) = logged_server();
    let id = backend.create(&data(1), HOUR).await.unwrap();
    let layer: std::sync::Arc<dyn Context> = std::sync::Arc::new(Shared {
        backend,
        policy: Policy::default(),
    });
    let locking = sessionkit_core::Locking::new();
    // Warm up: the connection, and the scripts loaded.
    locked_request(&mut conn, &layer, &id, Some(&locking), true).await;
    locked_request(&mut conn, &layer, &id, Some(&locking), false).await;

    let write = locked_request(&mut conn, &layer, &id, None, true).await;
    assert_eq!(sent(&write), ["GET", "EVALSHA"], "an unlocked write");
    let write = locked_request(&mut conn, &layer, &id, Some(&locking), true).await;
    assert_eq!(
        sent(&write),
        ["EVALSHA", "GET", "EVALSHA"],
        "a locked write: the lock, the read, the save that gives the lock back"
    );
    assert_eq!(
        write.commands[0][3],
        format!("{{rt:{id}}}:lock"),
        "the lock script's key"
    );
    assert_eq!(
        write.commands[2][2], "2",
        "the save's script gets the lock's key too"
    );
    let read = locked_request(&mut conn, &layer, &id, None, false).await;
    assert_eq!(sent(&read), ["GET"], "an unlocked read");
    let read = locked_request(&mut conn, &layer, &id, Some(&locking), false).await;
    assert_eq!(
        sent(&read),
        ["EVALSHA", "GET", "EVALSHA"],
        "a locked read: the lock, the read, the unlock"
    );
    let lock: Option<String> = redis::cmd("GET")
        .arg(format!("{{rt:{id}}}:lock"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(lock, None, "the lock was given back");
    server.stop();
}
