//! Locked routes (`SessionLayer::lock`) on every backend that can lock: read-modify-write
//! of one key through a locked route never loses an update, across two app instances on one
//! store; a handler that outlives its lease has its save refused and the next holder's work
//! kept; a wait that runs out answers 503; a failed or panicking handler gives the lock back.
//! Requests go through the session layer in-process (`TestClient`): the lock lives in the
//! store, as it would for two servers.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sessionkit_core::SessionBackend;
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::testing::TestClient;
use sessionkit_tower::{Error, Session, SessionLayer, SessionLockLayer};
use std::time::{Duration, Instant};

/// How long `/inc` sleeps between reading the count and writing it: the window in which an
/// unlocked request would lose another's update.
#[derive(Clone, Copy)]
struct Pause(Duration);

async fn start(session: Session) -> Result<&'static str, Error> {
    session.insert("n", 0)?;
    Ok("started")
}

async fn increment(session: Session, State(Pause(pause)): State<Pause>) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0);
    tokio::time::sleep(pause).await;
    session.insert("n", n + 1)?;
    Ok((n + 1).to_string())
}

/// An increment that takes 600 ms.
async fn slow_increment(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    session.insert("n", n + 1)?;
    Ok((n + 1).to_string())
}

/// A login (a new session id, the count increased) that takes 600 ms.
async fn slow_login(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    session.regenerate_id()?;
    session.insert("n", n + 1)?;
    Ok((n + 1).to_string())
}

/// A logout that takes 600 ms.
async fn slow_logout(session: Session) -> Result<&'static str, Error> {
    tokio::time::sleep(Duration::from_millis(600)).await;
    session.delete().await?;
    Ok("bye")
}

async fn read(session: Session) -> Result<String, Error> {
    Ok(session.get::<u64>("n")?.unwrap_or(0).to_string())
}

/// Changes the count, then fails: nothing of it is saved.
async fn fail(session: Session) -> Result<StatusCode, Error> {
    session.insert("n", 1000)?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn boom(session: Session) -> Result<&'static str, Error> {
    session.insert("n", 2000)?;
    panic!("a handler that panics while it holds the session's lock");
}

fn app<B: SessionBackend>(
    layer: SessionLayer<B>,
    lock: Option<SessionLockLayer>,
    pause: Duration,
) -> Router {
    let routes = Router::new()
        .route("/inc", get(increment))
        .route("/slow", get(slow_increment))
        .route("/slow-login", get(slow_login))
        .route("/slow-logout", get(slow_logout))
        .route("/fail", get(fail))
        .route("/panic", get(boom));
    let routes = match lock {
        Some(lock) => routes.route_layer(lock),
        None => routes,
    };
    routes
        .route("/start", get(start))
        .route("/n", get(read))
        .with_state(Pause(pause))
        .layer(layer)
}

/// A client of a fresh session (count 0) of `app`, and the cookie it holds.
async fn started(app: &Router) -> (TestClient, String) {
    let client = TestClient::new(app.clone());
    assert_eq!(client.get("/start").await.body, "started");
    let cookie = client.cookie("session").expect("a session cookie");
    (client, cookie)
}

/// `n` increments of one session at once, spread over `apps` (each a client holding the
/// session's cookie); what the count reads after, and how long they took.
async fn concurrent_increments(apps: &[Router], cookie: &str, n: usize) -> (u64, Duration) {
    let began = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let client = TestClient::new(apps[i % apps.len()].clone());
            client.set_cookie("session", Some(cookie));
            tokio::spawn(async move { client.get("/inc").await })
        })
        .collect();
    for task in tasks {
        let answer = task.await.expect("an increment");
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "an increment failed: {answer:?}"
        );
    }
    let took = began.elapsed();
    let reader = TestClient::new(apps[0].clone());
    reader.set_cookie("session", Some(cookie));
    (reader.get("/n").await.body.parse().expect("a count"), took)
}

/// Every case, on backends `make` gives: each call a new backend value on the same store
/// (a second app instance).
async fn all_cases<B: SessionBackend>(store: &str, make: impl Fn() -> B) {
    // Two instances, each its own layer and lock queue, the second with autoload (its
    // session is read before the lock is taken, and read again under it).
    let first = SessionLayer::new(make());
    let second = SessionLayer::builder(make())
        .with_autoload(true)
        .build()
        .expect("a layer");
    let pause = Duration::from_millis(5);
    let apps = [
        app(first.clone(), Some(first.lock().expect("a lock")), pause),
        app(second.clone(), Some(second.lock().expect("a lock")), pause),
    ];
    let (_, cookie) = started(&apps[0]).await;
    let (count, took) = concurrent_increments(&apps, &cookie, 32).await;
    assert_eq!(count, 32, "{store}: locked increments lost updates");
    println!(
        "{store}: 32 locked increments on two instances took {took:?}, {:.2} times 32 handler \
         times of {pause:?} (each instance's waiters ask the store in turn, with pauses)",
        took.as_secs_f64() / (32.0 * pause.as_secs_f64())
    );

    // The same without the lock loses updates (what the lock is for).
    let unlocked = [app(SessionLayer::new(make()), None, pause)];
    let (_, cookie) = started(&unlocked[0]).await;
    let (count, _) = concurrent_increments(&unlocked, &cookie, 32).await;
    println!("{store}: 32 unlocked increments of one session counted {count}");

    // A queue of 32 waiters on one instance drains one handler after another.
    let handler = Duration::from_millis(20);
    let layer = SessionLayer::new(make());
    let timed = [app(layer.clone(), Some(layer.lock().unwrap()), handler)];
    let (_, cookie) = started(&timed[0]).await;
    let (count, took) = concurrent_increments(&timed, &cookie, 32).await;
    assert_eq!(count, 32, "{store}: the queue of 32 lost updates");
    println!(
        "{store}: 32 waiters drained in {took:?}, {:.2} times 32 handler times of {handler:?}",
        took.as_secs_f64() / (32.0 * handler.as_secs_f64())
    );

    a_handler_outliving_its_lease_is_refused(store, &make).await;
    a_change_made_before_the_lock_is_kept(store, &make).await;
    a_lease_and_wait_of_forever_work(store, &make).await;
    a_wait_that_runs_out_answers_503(store, &make).await;
    a_failed_or_panicking_handler_gives_the_lock_back(store, &make).await;
}

async fn a_handler_outliving_its_lease_is_refused<B: SessionBackend>(
    store: &str,
    make: &impl Fn() -> B,
) {
    // A save, a login's move and a logout's removal: none of them runs once the lease ran
    // out and another request took the lock, also under a fail-open policy.
    for (path, fail_open) in [
        ("/slow", false),
        ("/slow", true),
        ("/slow-login", false),
        ("/slow-logout", false),
    ] {
        let layer = SessionLayer::builder(make())
            .with_fail_open(fail_open)
            .build()
            .unwrap();
        let lock = layer.lock().unwrap().with_lease(Duration::from_millis(300));
        let app = app(layer, Some(lock), Duration::ZERO);
        let (client, cookie) = started(&app).await;
        let slow = tokio::spawn({
            let client = client.clone();
            async move { client.get(path).await }
        });
        // After the slow request's lease ran out, another takes the lock and saves.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let next = TestClient::new(app.clone());
        next.set_cookie("session", Some(&cookie));
        assert_eq!(
            next.get("/inc").await.body,
            "1",
            "{store} {path}: the next holder"
        );
        let slow = slow.await.unwrap();
        assert_eq!(
            slow.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{store} {path} (fail open: {fail_open}): a step after the lease ran out must be \
             refused"
        );
        assert_eq!(slow.body, "");
        assert!(slow.set_cookie("session").is_none(), "{store} {path}");
        assert_eq!(
            next.get("/n").await.body,
            "1",
            "{store} {path}: the next holder's save was undone"
        );
    }
}

/// A locked save sent a second time, as after its answer was lost with its connection (the
/// first one stored and gave the lock back): answered as stored, not as a lost lock. Remote
/// stores only (the memory store has no connection to lose).
async fn a_locked_save_sent_again_answers_stored<B: SessionBackend>(store: &str, b: B) {
    let mut record = sessionkit_core::SessionData::default();
    record.values_mut().insert("n".into(), serde_json::json!(1));
    let hour = Some(Duration::from_secs(3600));
    let id = b.create(&record, hour).await.unwrap();
    assert!(
        b.try_lock(&id, "token", Duration::from_secs(60))
            .await
            .unwrap()
    );
    let mut session = b.read(&id).await.unwrap().expect("the record");
    session
        .values_mut()
        .insert("n".into(), serde_json::json!(2));
    let mut changes = sessionkit_core::Changes::default();
    changes.set("n", serde_json::json!(2));
    let first = b.apply_locked(&id, &session, &changes, hour, "token").await;
    assert!(matches!(first, Ok(Some(_))), "{store}: {first:?}");
    let again = b.apply_locked(&id, &session, &changes, hour, "token").await;
    assert!(
        matches!(again, Ok(Some(_))),
        "{store}: sent again: {again:?}"
    );
    let stored = b.read(&id).await.unwrap().expect("the record");
    assert_eq!(stored.values()["n"], serde_json::json!(2), "{store}");
    // Another save in between makes a resend a lost lock again.
    assert!(
        b.try_lock(&id, "other", Duration::from_secs(60))
            .await
            .unwrap()
    );
    let mut other = stored.clone();
    other.values_mut().insert("n".into(), serde_json::json!(3));
    let mut three = sessionkit_core::Changes::default();
    three.set("n", serde_json::json!(3));
    b.apply_locked(&id, &other, &three, hour, "other")
        .await
        .unwrap();
    let late = b.apply_locked(&id, &session, &changes, hour, "token").await;
    assert!(matches!(late, Err(Error::LockLost)), "{store}: {late:?}");
}

/// A middleware outside the lock's layer reads the session and changes it before the lock
/// is taken: the session is read again under the lock, and the change is kept.
async fn a_change_made_before_the_lock_is_kept<B: SessionBackend>(
    store: &str,
    make: &impl Fn() -> B,
) {
    async fn mark(
        session: sessionkit_tower::LazySession,
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> Result<axum::response::Response, Error> {
        session.load().await?.insert("mark", true)?;
        Ok(next.run(request).await)
    }
    let layer = SessionLayer::new(make());
    let lock = layer.lock().unwrap();
    let app = Router::new()
        .route("/inc", get(increment))
        .route_layer(lock)
        .layer(axum::middleware::from_fn(mark))
        .route("/start", get(start))
        .with_state(Pause(Duration::ZERO))
        .layer(layer.clone());
    let (client, cookie) = started(&app).await;
    assert_eq!(client.get("/inc").await.body, "1");
    let session = layer.open(&cookie).await.unwrap();
    assert_eq!(session.get::<u64>("n").unwrap(), Some(1), "{store}");
    assert_eq!(
        session.get::<bool>("mark").unwrap(),
        Some(true),
        "{store}: the change made before the lock was lost"
    );
}

/// A lease or a wait asked for as "forever" is cut to a day, not an overflow or a refusal.
async fn a_lease_and_wait_of_forever_work<B: SessionBackend>(store: &str, make: &impl Fn() -> B) {
    let layer = SessionLayer::new(make());
    let lock = layer
        .lock()
        .unwrap()
        .with_lease(Duration::MAX)
        .with_wait(Duration::MAX);
    assert_eq!(lock.locking().lease(), sessionkit_core::lock::LONGEST);
    let app = app(layer, Some(lock), Duration::ZERO);
    let (client, _) = started(&app).await;
    assert_eq!(client.get("/inc").await.body, "1", "{store}");
    assert_eq!(
        client.get("/inc").await.body,
        "2",
        "{store}: the lock was given back"
    );
}

async fn a_wait_that_runs_out_answers_503<B: SessionBackend>(store: &str, make: &impl Fn() -> B) {
    let layer = SessionLayer::new(make());
    let lock = layer.lock().unwrap().with_wait(Duration::from_millis(150));
    let app = app(layer, Some(lock), Duration::ZERO);
    let (client, cookie) = started(&app).await;
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.get("/slow").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = TestClient::new(app.clone());
    waiting.set_cookie("session", Some(&cookie));
    let refused = waiting.get("/inc").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{store}");
    assert_eq!(
        refused
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(refused.body, "");
    assert_eq!(slow.await.unwrap().body, "1");
    assert_eq!(
        waiting.get("/n").await.body,
        "1",
        "{store}: the refused request ran"
    );
}

async fn a_failed_or_panicking_handler_gives_the_lock_back<B: SessionBackend>(
    store: &str,
    make: &impl Fn() -> B,
) {
    // A lease far longer than the wait: only a lock given back lets the next request in.
    let layer = SessionLayer::new(make());
    let lock = layer
        .lock()
        .unwrap()
        .with_lease(Duration::from_secs(60))
        .with_wait(Duration::from_secs(2));
    let app = app(layer, Some(lock), Duration::ZERO);
    let (client, _) = started(&app).await;
    assert_eq!(
        client.get("/fail").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let after_failure = client.get("/inc").await;
    assert_eq!(
        after_failure.body, "1",
        "{store}: after a 500: {after_failure:?}"
    );
    let panicked = tokio::spawn({
        let client = client.clone();
        async move { client.get("/panic").await }
    })
    .await;
    assert!(
        panicked.is_err_and(|e| e.is_panic()),
        "{store}: the handler panics"
    );
    let after_panic = client.get("/inc").await;
    assert_eq!(
        after_panic.body, "2",
        "{store}: after a panic: {after_panic:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory() {
    let backend = InMemoryBackend::new();
    // Clones share the store: two instances of one process.
    all_cases("memory", || backend.clone()).await;
}

#[test]
fn the_cookie_backend_cannot_lock() {
    let layer = SessionLayer::with_secret_key([7u8; 32]).unwrap();
    match layer.lock() {
        Err(Error::Unsupported(why)) => assert!(why.contains("cannot lock"), "{why}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("sessions-locking:{}:", sessionkit_core::generate_id());
    // Each call a backend of its own (its own connection): another app instance.
    let make = || {
        sessionkit_redis::RedisBackend::from_url(&url)
            .expect("a Redis URL")
            .with_prefix(prefix.as_str())
    };
    a_locked_save_sent_again_answers_stored("redis", make()).await;
    all_cases("redis", make).await;
}

/// A table of the test's own, dropped at the end; each `make` a backend of its own, with its
/// own pool, on it: another app instance.
async fn sql<DB: sessionkit_sql::SqlDatabase>(store: &str, url: &str, quote: char)
where
    for<'c> &'c mut DB::Connection: sessionkit_sql::sqlx::Executor<'c, Database = DB>,
{
    let table = common::own_table("locking");
    let make = || {
        sessionkit_sql::SqlBackend::<DB>::builder_from_url(url)
            .with_table(&table)
            .with_max_connections(5)
            .build()
            .expect("a valid backend")
    };
    let backend = make();
    backend.migrate().await.expect("migrate");
    a_locked_save_sent_again_answers_stored(store, make()).await;
    all_cases(store, make).await;
    common::drop_table(&backend, &table, quote).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    let file = common::ScratchSqlite::new("locking");
    sql::<sessionkit_sql::sqlx::Sqlite>("sqlite", &file.url(), '"').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    sql::<sessionkit_sql::sqlx::Postgres>("postgres", &url, '"').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb() {
    let url =
        std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    sql::<sessionkit_sql::sqlx::MySql>("mariadb", &url, '`').await;
}

/// The memory backend, answering `try_lock` 100 ms after it took the lock: a request can be
/// dropped between the two.
#[derive(Clone)]
struct SlowToLock(InMemoryBackend);

#[sessionkit_core::async_trait]
impl SessionBackend for SlowToLock {
    async fn read(&self, id: &str) -> Result<Option<sessionkit_core::SessionData>, Error> {
        self.0.read(id).await
    }
    async fn create(
        &self,
        data: &sessionkit_core::SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        self.0.create(data, ttl).await
    }
    async fn apply(
        &self,
        id: &str,
        session: &sessionkit_core::SessionData,
        changes: &sessionkit_core::Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        self.0.apply(id, session, changes, ttl).await
    }
    async fn remove(&self, id: &str) -> Result<(), Error> {
        self.0.remove(id).await
    }
    fn check_locking(&self) -> Result<(), Error> {
        Ok(())
    }
    async fn try_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        let taken = self.0.try_lock(id, token, lease).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        taken
    }
    async fn renew_lock(&self, id: &str, token: &str, lease: Duration) -> Result<bool, Error> {
        self.0.renew_lock(id, token, lease).await
    }
    async fn unlock(&self, id: &str, token: &str) -> Result<(), Error> {
        self.0.unlock(id, token).await
    }
    async fn apply_locked(
        &self,
        id: &str,
        session: &sessionkit_core::SessionData,
        changes: &sessionkit_core::Changes,
        ttl: Option<Duration>,
        token: &str,
    ) -> Result<Option<String>, Error> {
        self.0.apply_locked(id, session, changes, ttl, token).await
    }
}

/// A request dropped while the backend takes its lock (the client went away) gives the lock
/// back: the next request does not wait out the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dropped_while_it_takes_the_lock_gives_it_back() {
    let layer = SessionLayer::new(SlowToLock(InMemoryBackend::new()));
    let lock = layer
        .lock()
        .unwrap()
        .with_lease(Duration::from_secs(60))
        .with_wait(Duration::from_secs(1));
    let app = app(layer, Some(lock), Duration::ZERO);
    let (client, _) = started(&app).await;
    let dropped = tokio::time::timeout(Duration::from_millis(50), client.get("/inc")).await;
    assert!(
        dropped.is_err(),
        "the request was meant to be dropped while it took the lock"
    );
    let next = client.get("/inc").await;
    assert_eq!(
        next.status,
        StatusCode::OK,
        "the lock was left to its lease: {next:?}"
    );
    assert_eq!(next.body, "1");
}
